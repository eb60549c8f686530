package revocation

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"strings"
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
	// RevokedCAs are the ids of the revoked CAs the filter lists (by key), full filter or delta.
	RevokedCAs []string `json:"revoked_cas,omitempty"`
}

// Scope names a filter's coverage: "dev" or "dev/demo-implant".
func Scope(env, product string) string {
	if product == "" {
		return env
	}
	return env + "/" + product
}

// BuildFilter builds a filter from the registry (every issuing and factory site CA of the scope, whatever
// its generation or state), lists every revoked CA of the environment below the root, signs it with the
// scope's crl-signing delegate (certified by the product line's active issuing CA, or by the environment's
// active root for a whole-environment filter; see filterSignerCA) and stores it.
func (s *Service) BuildFilter(ctx context.Context, p ra.Principal, req FilterRequest) (*FilterResult, error) {
	hier := s.ra.Hierarchy()
	env := hier.Environments[req.Environment]
	if env == nil {
		return nil, ra.Errorf(ra.KindBadRequest, "unknown environment %q (configured: %v)", req.Environment, hier.EnvironmentNames())
	}
	if req.Product != "" && env.ProductLines[req.Product] == nil {
		return nil, ra.Errorf(ra.KindBadRequest, "unknown product line %q in %q (configured: %v)", req.Product, req.Environment, hier.ProductLineNames(req.Environment))
	}
	if req.Product == "" && env.Root.Offline {
		return nil, ra.Errorf(ra.KindBadRequest, "environment %q has an offline root, which cannot certify a filter signer here: build one filter per product line", req.Environment)
	}
	cas, err := s.rs.ListCAs(ctx)
	if err != nil {
		return nil, err
	}
	issuers := scopeIssuers(cas, req.Environment, req.Product)
	if len(issuers) == 0 {
		// An empty issuer list would put no condition on the walk below, which would cover every certificate.
		return nil, ra.Errorf(ra.KindNotFound, "%s has no issuing or site CA yet: there is nothing to build a filter of", Scope(req.Environment, req.Product))
	}
	revokedCAs, revokedKeys, err := revokedIssuers(cas, req.Environment)
	if err != nil {
		return nil, err
	}
	signerCA, err := filterSignerCA(cas, req.Environment, req.Product, env.Root.Offline)
	if err != nil {
		return nil, err
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
		Signer: d.Signer(), Chain: d.Chain, RevokedIssuers: revokedKeys}
	q := store.CertQuery{IssuerIDs: issuers}
	res := &FilterResult{Scope: scope, Version: version, RevokedCAs: revokedCAs}
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
		base, err := filter.Verify(baseRow.Data, filter.VerifyOptions{Roots: rootPool(cas, req.Environment), Environment: req.Environment, Scope: req.Product, Now: baseRow.IssuedAt})
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
	details := map[string]string{"signer": d.Cert.Subject.CommonName, "signer_ca": signerCA}
	if len(revokedCAs) > 0 {
		details["revoked_cas"] = strings.Join(revokedCAs, ",")
	}
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

// scopeIssuers are the ids of the CAs whose certificates a filter covers: every issuing and factory site CA
// of the environment (and product line, for a product filter), found from the CA rows rather than from the
// hierarchy's one id per product line, so that every generation of a product line's issuing CA (rollover) is
// covered, and a revoked or retired one too: certificates it issued are still answered for.
func scopeIssuers(cas []*store.CA, env, product string) []string {
	var ids []string
	for _, ca := range cas {
		if (ca.Kind == store.CAKindIssuing || ca.Kind == store.CAKindSite) && ca.Environment == env && (product == "" || ca.ProductLine == product) {
			ids = append(ids, ca.ID)
		}
	}
	return ids
}

// revokedIssuers lists every revoked CA of the environment below the root, with the SHA-256 of its
// certificate's SubjectPublicKeyInfo, whatever the filter's product line: issuing and site CAs of every
// product line, station CAs, OCSP-signer CAs. A device verifies more than its own product line's chains (a
// programmer's or a station's certificate, a peer of another line), a listed key refuses only chains that
// carry it, so listing too many costs 32 bytes each and never a wrong refusal, while listing too few lets a
// revoked subtree through. Roots are never listed: they are replaced by rollover, and the filter is signed
// under the root.
func revokedIssuers(cas []*store.CA, env string) (ids []string, keys [][32]byte, err error) {
	seen := map[[32]byte]bool{}
	for _, ca := range cas {
		if ca.Environment != env || ca.Status != store.CAStatusRevoked || ca.Kind == store.CAKindRoot || ca.Kind == store.CAKindService {
			continue
		}
		if len(ca.CertDER) == 0 {
			continue // never certified: nothing can chain to it
		}
		c, err := x509.ParseCertificate(ca.CertDER)
		if err != nil {
			// Leaving a revoked CA out would let its subtree pass: refuse to build instead.
			return nil, nil, fmt.Errorf("revoked CA %s: stored certificate does not parse: %w", ca.ID, err)
		}
		ids = append(ids, ca.ID)
		if h := sha256.Sum256(c.RawSubjectPublicKeyInfo); !seen[h] {
			seen[h] = true
			keys = append(keys, h)
		}
	}
	return ids, keys, nil
}

// filterSignerCA picks the CA that certifies the scope's filter signer: the environment's active root (its
// newest active generation) for a whole-environment filter; for a product line, the line's active issuing CA
// (after a rollover, the new generation). Verifiers refuse a filter whose signer chain passes through a revoked
// CA (a revoked key may be anyone's, and must not vouch for revocation data), and a CA that is not active
// certifies nothing new, so a product line without an active issuing CA (revoked, no new generation yet) gets
// its signer from the root if it is online, else from another product line's active issuing CA. Verifiers
// accept a filter signer certified by any CA under the environment's root (the scope is in the signed
// header), so each of these is trusted alike; the audit event names the one used.
func filterSignerCA(cas []*store.CA, env, product string, rootOffline bool) (string, error) {
	var root, line, other *store.CA
	for _, ca := range cas {
		if ca.Environment != env || ca.Status != store.CAStatusActive {
			continue
		}
		switch {
		case ca.Kind == store.CAKindRoot:
			root = newer(root, ca)
		case ca.Kind != store.CAKindIssuing:
		case ca.ProductLine == product:
			line = newer(line, ca)
		default:
			other = newer(other, ca)
		}
	}
	rootID := hierarchy.RootID(env)
	if root != nil {
		rootID = root.ID
	}
	switch {
	case product == "":
		return rootID, nil
	case line != nil:
		return line.ID, nil
	case !rootOffline:
		return rootID, nil
	case other != nil:
		return other.ID, nil
	}
	return "", ra.Errorf(ra.KindConflict, "no CA of %q can certify a filter signer for %s: no issuing CA of %s is active, the root is offline and no other product line's issuing CA is active; create a new issuing CA for %s", env, product, product, product)
}

// newer returns the later generation of a and b (a may be nil).
func newer(a, b *store.CA) *store.CA {
	if a == nil || b.Generation > a.Generation || b.Generation == a.Generation && b.CreatedAt.After(a.CreatedAt) {
		return b
	}
	return a
}

// rootPool holds every generation of env's root: a stored filter may have been signed under one that a
// rollover has since superseded.
func rootPool(cas []*store.CA, env string) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		if ca.Kind == store.CAKindRoot && ca.Environment == env && len(ca.CertDER) > 0 {
			if c, err := x509.ParseCertificate(ca.CertDER); err == nil {
				pool.AddCert(c)
			}
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
