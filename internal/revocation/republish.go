package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// tailSize is how much of the end of a complete CRL holds its extensions: they close the tbsCertList, and only
// the signature algorithm and the signature (at most a few hundred octets) follow them.
const tailSize = 8 << 10

// Republished says what RepublishForURL published anew.
type Republished struct {
	// CRLs are the CAs whose complete CRL named another public URL (or could not be read) and was issued again.
	CRLs []string
	// Filters are the filter scopes built again.
	Filters []string
}

// RepublishForURL makes what relying parties fetch name the publisher's public URL (CRLConfig.BaseURL): every
// online CA whose newest complete CRL points its freshestCRL elsewhere gets a new complete CRL (and delta) at
// once, rather than at its next due time, and if any did, every revocation filter scope that has a filter is
// built again, so that a relying party that follows the new URL finds current objects there. It runs under the
// publisher lock; a node that does not get the lock leaves the work to the one that does, and reports nothing.
func (p *Publisher) RepublishForURL(ctx context.Context) (*Republished, error) {
	release, ok, err := p.s.lock.TryPublisherLock(ctx, p.holder)
	if err != nil || !ok {
		return &Republished{}, err
	}
	defer release()
	cas, err := p.s.rs.ListCAs(ctx)
	if err != nil {
		return nil, err
	}
	out := &Republished{}
	var errs []error
	for _, c := range cas {
		if (c.Kind != store.CAKindRoot && c.Kind != store.CAKindIssuing) || !SignsStatus(c.Status) || c.KeyURI == "" {
			continue
		}
		if k, err := p.s.rs.GetKey(ctx, c.KeyURI); err == nil && k.State == store.KeyDestroyed {
			continue
		}
		full, err := p.s.rs.LatestCRL(ctx, c.ID, false)
		if errors.Is(err, store.ErrNotFound) {
			continue // never published: the first round publishes it with the current URL
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		cert, err := x509.ParseCertificate(c.CertDER)
		if err != nil {
			errs = append(errs, fmt.Errorf("CA %s: %w", c.ID, err))
			continue
		}
		if current, err := p.namesURL(ctx, full, cert); err == nil && current {
			continue
		}
		row, err := p.s.PublishCRLs(ctx, c.ID, p.cfg)
		if err != nil {
			errs = append(errs, fmt.Errorf("republish the CRLs of %s: %w", c.ID, err))
			continue
		}
		p.observe(row)
		out.CRLs = append(out.CRLs, c.ID)
	}
	if len(out.CRLs) > 0 {
		hier := p.s.ra.Hierarchy()
		for _, env := range hier.EnvironmentNames() {
			for _, product := range append([]string{""}, hier.ProductLineNames(env)...) {
				scope := Scope(env, product)
				if _, err := p.s.rs.LatestFilter(ctx, scope); errors.Is(err, store.ErrNotFound) {
					continue
				} else if err != nil {
					errs = append(errs, err)
					continue
				}
				// The operator who started the server with the new URL asked for this: the server acts for them.
				who := ra.Principal{ID: "server:public-url", Role: ra.RoleAdmin}
				if _, err := p.s.BuildFilter(ctx, who, FilterRequest{Environment: env, Product: product}); err != nil {
					// A filter that cannot be built now (its signer's CA retired, say) keeps the last one; the
					// CRLs, which carry the URL, are what must not wait.
					p.s.log.WarnContext(ctx, "filter not rebuilt for the new public URL", "scope", scope, "err", err)
					continue
				}
				out.Filters = append(out.Filters, scope)
			}
		}
		if p.Published != nil {
			p.Published()
		}
	}
	return out, errors.Join(errs...)
}

// namesURL reports whether the complete CRL row's freshestCRL extension is the one the publisher's base URL
// gives for the CA cert: the extension's exact encoding is looked for in the CRL's tail, which holds its
// extensions, so that a CRL of millions of entries is not read whole.
func (p *Publisher) namesURL(ctx context.Context, row *store.PublishedCRL, cert *x509.Certificate) (bool, error) {
	want, err := distributionPoints(p.cfg.BaseURL + DeltaCRLPath(cert))
	if err != nil {
		return false, err
	}
	r := p.s.OpenCRL(ctx, row)
	if _, err := r.Seek(-min(tailSize, r.Size()), io.SeekEnd); err != nil {
		return false, err
	}
	tail, err := io.ReadAll(r)
	if err != nil {
		return false, err
	}
	return bytes.Contains(tail, want), nil
}
