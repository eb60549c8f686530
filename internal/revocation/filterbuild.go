package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/revocation/filter"
)

// FilterRequest asks for a revocation filter of one environment, or of one product line in it.
type FilterRequest struct {
	Environment string
	Product     string // "" for every issuing CA of the environment
	// Validity is the span from issuance to next update (default 7 days).
	Validity time.Duration
	// DeltaFrom, if not 0, builds a delta from that stored full filter version instead of a full filter.
	DeltaFrom int64
}

// FilterResult is a built and stored filter.
type FilterResult struct {
	Scope   string        `json:"scope"`
	Version int64         `json:"version"`
	Base    int64         `json:"base_version,omitempty"`
	Data    []byte        `json:"-"`
	Stats   *filter.Stats `json:"stats,omitempty"`
	Entries int           `json:"delta_entries,omitempty"`
}

// Scope names a filter's coverage: "dev" or "dev/demo-implant".
func Scope(env, product string) string {
	if product == "" {
		return env
	}
	return env + "/" + product
}

// BuildFilter builds a filter from the registry (the scope's issuing CAs and factory site CAs), signs it with the scope's crl-signing delegate (certified by
// the product's issuing CA, or by the environment's root for a whole-environment filter) and stores it.
func (s *Service) BuildFilter(ctx context.Context, p ra.Principal, req FilterRequest) (*FilterResult, error) {
	hier := s.ra.Hierarchy()
	env := hier.Environments[req.Environment]
	if env == nil {
		return nil, ra.Errorf(ra.KindBadRequest, "unknown environment %q (configured: %v)", req.Environment, hier.EnvironmentNames())
	}
	var issuers []string
	signerCA := hierarchy.RootID(req.Environment)
	if req.Product != "" {
		if env.ProductLines[req.Product] == nil {
			return nil, ra.Errorf(ra.KindBadRequest, "unknown product line %q in %q (configured: %v)", req.Product, req.Environment, hier.ProductLineNames(req.Environment))
		}
		signerCA = hierarchy.IssuingID(req.Environment, req.Product)
		issuers = []string{signerCA}
	} else {
		if env.Root.Offline {
			return nil, ra.Errorf(ra.KindBadRequest, "environment %q has an offline root, which cannot certify a filter signer here: build one filter per product line", req.Environment)
		}
		for _, pl := range hier.ProductLineNames(req.Environment) {
			issuers = append(issuers, hierarchy.IssuingID(req.Environment, pl))
		}
	}
	// Credentials pre-issued at a factory site come from the site's constrained CA, not the product line's
	// issuing CA; the filter must cover them too, or a verifier would get no answer for exactly the implants
	// that were provisioned offline.
	cas, err := s.rs.ListCAs(ctx)
	if err != nil {
		return nil, err
	}
	for _, ca := range cas {
		if ca.Kind == store.CAKindSite && ca.Environment == req.Environment && (req.Product == "" || ca.ProductLine == req.Product) {
			issuers = append(issuers, ca.ID)
		}
	}
	if req.Validity <= 0 {
		req.Validity = 7 * 24 * time.Hour
	}
	scope := Scope(req.Environment, req.Product)
	if err := s.ra.AuthorizeFilter(ctx, p, scope); err != nil {
		return nil, err
	}
	d, err := s.ra.Delegate(ctx, signerCA, keystore.PurposeCRLSigning)
	if err != nil {
		return nil, ra.Wrap(ra.KindUnavailable, fmt.Errorf("filter signer for %s: %w", scope, err))
	}
	version, err := s.ra.NextFilterVersion(ctx, scope)
	if err != nil {
		return nil, err
	}
	now := s.now().Truncate(time.Second)
	opts := filter.BuildOptions{Environment: req.Environment, Scope: req.Product, Version: uint64(version), IssuedAt: now, NextUpdate: now.Add(req.Validity),
		Signer: d.Signer(), Chain: d.Chain}
	q := store.CertQuery{IssuerIDs: issuers}
	res := &FilterResult{Scope: scope, Version: version}
	if req.DeltaFrom == 0 {
		// Pass 1: the revoked set and the count of the others. Pass 2 streams the others against that set, so
		// the filter is one consistent snapshot even if revocations happen between the passes.
		var revoked [][]byte
		revokedSet := map[string]bool{}
		var valid uint64
		err := s.rs.WalkCertStatus(ctx, q, func(c *store.CertStatus) error {
			if c.Status == store.CertStatusRevoked {
				b, err := serialBytes(c.Serial)
				if err != nil {
					return err
				}
				revoked = append(revoked, b)
				revokedSet[c.Serial] = true
			} else {
				valid++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		src := filter.Source{Revoked: revoked, ValidCount: valid, Valid: func(yield func([]byte) error) error {
			return s.rs.WalkCertStatus(ctx, q, func(c *store.CertStatus) error {
				if revokedSet[c.Serial] {
					return nil
				}
				b, err := serialBytes(c.Serial)
				if err != nil {
					return err
				}
				return yield(b)
			})
		}}
		res.Data, res.Stats, err = filter.Build(src, opts)
		if err != nil {
			return nil, fmt.Errorf("build filter %s v%d: %w", scope, version, err)
		}
	} else {
		baseRow, err := s.rs.GetFilter(ctx, scope, req.DeltaFrom, 0)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ra.Errorf(ra.KindNotFound, "no full filter version %d of %s to build a delta from", req.DeltaFrom, scope)
		} else if err != nil {
			return nil, err
		}
		base, err := filter.Verify(baseRow.Data, filter.VerifyOptions{Roots: s.rootPool(ctx, req.Environment), Environment: req.Environment, Scope: req.Product, Now: baseRow.IssuedAt})
		if err != nil {
			return nil, fmt.Errorf("stored base filter %s v%d: %w", scope, req.DeltaFrom, err)
		}
		var corr []filter.Correction
		err = s.rs.WalkCertStatus(ctx, q, func(c *store.CertStatus) error {
			b, err := serialBytes(c.Serial)
			if err != nil {
				return err
			}
			if truth := c.Status == store.CertStatusRevoked; base.RevokedBytes(b) != truth {
				corr = append(corr, filter.Correction{Serial: b, Revoked: truth})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		res.Base, res.Entries = req.DeltaFrom, len(corr)
		if res.Data, err = filter.BuildDelta(base, corr, opts); err != nil {
			return nil, err
		}
	}
	row := &store.PublishedFilter{Scope: scope, Version: version, BaseVersion: res.Base, IssuedAt: now, NextUpdate: now.Add(req.Validity), Data: res.Data}
	details := map[string]string{"signer": d.Cert.Subject.CommonName}
	if res.Base != 0 {
		details["base_version"], details["corrections"] = fmt.Sprint(res.Base), fmt.Sprint(res.Entries)
	} else {
		details["certificates"], details["revoked"] = fmt.Sprint(res.Stats.Certificates), fmt.Sprint(res.Stats.Revoked)
	}
	if err := s.ra.RecordFilter(ctx, p, row, details); err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) rootPool(ctx context.Context, env string) *x509.CertPool {
	pool := x509.NewCertPool()
	if ca, err := s.rs.GetCA(ctx, hierarchy.RootID(env)); err == nil {
		if c, err := x509.ParseCertificate(ca.CertDER); err == nil {
			pool.AddCert(c)
		}
	}
	return pool
}

// serialBytes converts a stored serial (lower-case hex) to the filter's canonical form.
func serialBytes(hexSerial string) ([]byte, error) {
	v, ok := new(big.Int).SetString(hexSerial, 16)
	if !ok || v.Sign() <= 0 {
		return nil, fmt.Errorf("stored serial %q is not a positive hexadecimal number", hexSerial)
	}
	return v.Bytes(), nil
}
