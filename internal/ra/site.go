package ra

// Site mode ('keyward factory serve'): at a contract manufacturer's site, without any connection to
// headquarters, factory stations enroll devices over the same EST interface, and the RA issues every
// certificate with the site's constrained subordinate CA instead of the product line's issuing CA. On top of
// the station's own scope, each enrollment is checked against the site CA's record (factory.go): the issuing
// window, the quota and the subject rule, before signing and again on the locked site row in the recording
// transaction, which also counts the certificate against the quota and appends it to the site's issuance log.
// 'keyward factory export' signs that log for headquarters, which reconciles it (reconcile.go).

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// SiteScope makes an RA a factory site's: it issues only for Environment/ProductLine, only with the site CA
// CAID, only to stations registered for Site, and only through EST enrollment.
type SiteScope struct {
	CAID        string
	Environment string
	ProductLine string
	Site        string
}

// Site returns the RA's site scope, or nil at headquarters.
func (r *RA) Site() *SiteScope { return r.cfg.Site }

// checkSiteScope refuses a request outside the site's one environment and product line.
func (r *RA) checkSiteScope(env, product string) error {
	s := r.cfg.Site
	if s == nil || (env == s.Environment && product == s.ProductLine) {
		return nil
	}
	return errorf(KindNotFound, "this is factory site %s: it enrolls devices of %s/%s only, not of %s/%s", s.Site, s.Environment, s.ProductLine, env, product)
}

// errSiteIssue refuses issuance outside EST enrollment at a site: every certificate of a site CA must be
// counted against its quota and appear in its issuance log.
func (r *RA) errSiteIssue() error {
	return errorf(KindForbidden, "factory site %s issues certificates only by EST enrollment of factory stations ('keyward factory serve'), so that each is counted against site CA %s's quota and logged for headquarters",
		r.cfg.Site.Site, r.cfg.Site.CAID)
}

// checkSite applies the site CA's record to an enrollment of device cn by station st: the station must be
// registered for this site, the issuing window open, the quota not spent, and cn inside the subject rule (cn
// "": not checked yet). It runs before the request is prepared, before signing and again, on the locked site
// row, in the recording transaction.
func (r *RA) checkSite(fs *store.FactorySite, st *store.Station, cn string, now time.Time) error {
	scope := r.cfg.Site
	if st.Site != scope.Site {
		return errorf(KindForbidden, "station %s is registered for site %q, not for this site %q; headquarters registers a site's stations with 'keyward station add --site %s' before packaging the site",
			st.ID, st.Site, scope.Site, scope.Site)
	}
	if now.After(fs.IssueUntil) {
		return errorf(KindForbidden, "site CA %s's issuing window ended at %s; headquarters must create a new site CA", fs.CAID, fs.IssueUntil.Format(time.RFC3339))
	}
	if fs.Reserved >= fs.Quota {
		return errorf(KindForbidden, "site CA %s has used its quota of %d certificates; headquarters must create a new site CA", fs.CAID, fs.Quota)
	}
	if cn == "" {
		return nil // the subject rule is checked once the CSR is parsed
	}
	// The subject rule is the product line's serial pattern recorded with the site CA (X.509 name
	// constraints cannot express it; see factory.go).
	rule, err := r.siteRule(fs.CNPattern)
	if err != nil {
		return wrap(KindInternal, fmt.Errorf("site CA %s: recorded subject rule %q: %w", fs.CAID, fs.CNPattern, err))
	}
	if !rule.MatchString(cn) {
		return errorf(KindForbidden, "device serial %q is outside site CA %s's subject rule %s", cn, fs.CAID, fs.CNPattern)
	}
	return nil
}

// siteRule compiles a site's subject rule once: it is checked two or three times per enrollment.
func (r *RA) siteRule(pattern string) (*regexp.Regexp, error) {
	if re, ok := r.siteRules.Load(pattern); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	r.siteRules.Store(pattern, re)
	return re, nil
}

// siteRecord counts an enrollment's certificate against the locked site row and appends it to the site log,
// inside the recording transaction (after the certificate row, which the log refers to).
func siteRecord(ctx context.Context, tx store.Tx, scope *SiteScope, fs *store.FactorySite, st *store.Station, certSerial, cn string, at time.Time) error {
	if err := tx.SetFactorySiteReserved(ctx, fs.CAID, fs.Reserved+1); err != nil {
		return err
	}
	return tx.AppendFactorySiteLog(ctx, &store.FactorySiteLogEntry{CAID: scope.CAID, CertSerial: certSerial, Device: cn, StationID: st.ID, CreatedAt: at})
}
