// Package factory is offline manufacturing (issue 4): a factory site's constrained subordinate CA, and batches
// of pre-issued device credentials (key and implant-identity certificate) that a site generates without any
// connection to headquarters and hands out, one per device, at injection.
//
// Site CA constraints. A site CA is a CA of kind "site" under its environment's root, with
//
//   - path length 0 (RFC 5280 4.2.1.9): it signs end entities only;
//   - a critical name-constraints extension (RFC 5280 4.2.1.10) that excludes every DNS name, IP address,
//     e-mail address and URI, so no certificate it signs can pass as a TLS server, mail or web identity in
//     any verifier that enforces name constraints (Go's crypto/x509 does, and zlint's RFC 5280 lints accept
//     it; URIs are confined to keyward.invalid, a reserved name, as zlint refuses an empty URI subtree). Implant certificates carry no SANs, so they pass;
//   - a recorded subject rule: the product line's serial pattern (the profile's common-name regex at creation)
//     is stored with the site and checked before every signature. X.509 cannot say "CN matches ^DEMO-[0-9]{8}$":
//     directoryName subtrees match whole RDN prefixes, and Go's verifier does not enforce them at all, so the
//     rule lives in Keyward (and reconciliation at headquarters will check it again);
//   - a quota and an issuing window (--valid-for), recorded with the site and enforced before signing.
//
// Why the certificate outlives the window: RFC 5280 path validation (and Go's verifier) checks the validity of
// every certificate of the path at verification time, so a site CA certificate that expired after 30 days
// would invalidate every 15-year implant certificate it signed. The certificate's NotAfter is therefore the
// end of the issuing window plus the profile's validity; "short validity" is the issuing window, which
// Keyward enforces and records in the audit trail.
package factory

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// Errors a caller must tell apart (CLI exit codes).
var (
	// ErrBadRequest: the input breaks a rule (unknown environment or product, bad site name, quota, window).
	ErrBadRequest = errors.New("bad factory request")
	// ErrConflict: the request conflicts with existing state (site CA exists, batch file for another job,
	// device serial injected already, credentials exhausted).
	ErrConflict = errors.New("factory conflict")
	// ErrNotFound: no such site CA.
	ErrNotFound = errors.New("factory site not found")
	// ErrRefused: the site CA may not issue this (quota spent, issuing window over, subject outside its rule).
	ErrRefused = errors.New("site CA refuses to issue")
)

// MaxWindow is the longest issuing window of a site CA: a site CA is short-lived by design (issue 4).
const MaxWindow = 366 * 24 * time.Hour

// DefaultProfile is the profile a site CA issues when none is named.
const DefaultProfile = "implant-identity"

// Factory creates site CAs and runs credential batches against one data directory.
type Factory struct {
	Store    store.Store
	Keys     keystore.Keystore // finds signers by key URI (the node's router)
	Config   *hierarchy.Config
	Profiles map[string]*profile.Profile
	Actor    string
	Now      func() time.Time
}

func (f *Factory) now() time.Time {
	if f.Now != nil {
		return f.Now().UTC()
	}
	return time.Now().UTC()
}

// SiteID is the CA id of the site CA of (env, product, site).
func SiteID(env, product, site string) string { return env + "/" + product + "/" + site }

// SiteSubject is the subject of a site CA: common name only, as short as the issuing CA's (the issuer name is
// repeated in every implant certificate, whose profile allows 400 bytes).
func SiteSubject(env, product, site string) pkix.Name {
	return pkix.Name{CommonName: fmt.Sprintf("%s %s %s", product, site, env)}
}

// siteRule keeps site names short: they are part of the issuer name of every implant certificate.
var siteRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,15}$`)

// SiteCARequest describes a site CA to create.
type SiteCARequest struct {
	Env, Product, Site string
	Profile            string        // default DefaultProfile
	Quota              int64         // certificates the CA may issue in total
	ValidFor           time.Duration // issuing window
	Keys               keystore.Keystore
}

// SiteCA is a created site CA.
type SiteCA struct {
	CA   *store.CA
	Site *store.FactorySite
	Cert *x509.Certificate
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// CreateSiteCA creates the constrained site CA of (env, product, site) under env's root, with its key in
// req.Keys (purpose ca-signing), and records the CA, its key, its constraints and their audit events in one
// transaction. The environment's root must be online: a site CA under an offline root needs a ceremony.
func (f *Factory) CreateSiteCA(ctx context.Context, req SiteCARequest) (*SiteCA, error) {
	if req.Profile == "" {
		req.Profile = DefaultProfile
	}
	spec := f.Config.Environments[req.Env]
	if spec == nil {
		return nil, badRequest("environment %q is not declared in keyward.yaml (declared: %v)", req.Env, f.Config.EnvironmentNames())
	}
	if spec.Root.Offline {
		return nil, fmt.Errorf("environment %q: %w; a site CA under an offline root must be signed in a ceremony, which 'keyward factory site-ca' does not do yet", req.Env, hierarchy.ErrOffline)
	}
	pl := spec.ProductLines[req.Product]
	if pl == nil {
		return nil, badRequest("product line %q is not declared for environment %q (declared: %v)", req.Product, req.Env, f.Config.ProductLineNames(req.Env))
	}
	if !slices.Contains(pl.Profiles, req.Profile) {
		return nil, badRequest("product line %s/%s does not use profile %q (it uses %v)", req.Env, req.Product, req.Profile, pl.Profiles)
	}
	prof := f.Profiles[req.Profile]
	if prof == nil || prof.Subject.CommonName == nil || !prof.Subject.CommonNameRequired {
		return nil, badRequest("profile %q has no required common-name pattern, so a site CA cannot be bound to the product line's serials", req.Profile)
	}
	if !siteRule.MatchString(req.Site) {
		return nil, badRequest("site %q: use 1 to 16 lower-case letters, digits and hyphens, starting with a letter or digit (the name is in every certificate the site issues)", req.Site)
	}
	if req.Quota <= 0 {
		return nil, badRequest("--quota %d: a site CA needs a positive quota of certificates", req.Quota)
	}
	if req.ValidFor <= 0 || req.ValidFor > MaxWindow {
		return nil, badRequest("--valid-for %s: the issuing window of a site CA must be positive and at most 366d", req.ValidFor)
	}
	if req.Keys == nil {
		return nil, badRequest("no keystore for the site CA key")
	}
	id := SiteID(req.Env, req.Product, req.Site)
	if _, err := f.Store.GetCA(ctx, id); err == nil {
		return nil, fmt.Errorf("%w: site CA %s exists already", ErrConflict, id)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	root, err := f.Store.GetCA(ctx, hierarchy.RootID(req.Env))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: environment %q has no root CA yet (run 'keyward ca create --env %s')", ErrNotFound, req.Env, req.Env)
	} else if err != nil {
		return nil, err
	}
	rootCert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, fmt.Errorf("parse root %s: %w", root.ID, err)
	}
	rootSigner, err := f.Keys.Signer(ctx, root.KeyURI, keystore.PurposeRootSigning)
	if err != nil {
		return nil, fmt.Errorf("root %s signer: %w", root.ID, err)
	}

	alg, err := keystore.ParseAlgorithm(pl.Algorithm)
	if err != nil {
		return nil, err
	}
	now := f.now()
	key, err := req.Keys.Generate(ctx, keystore.PurposeCASigning, alg, id)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", id, err)
	}
	abandon := func(cause error) error {
		if err := req.Keys.Destroy(ctx, key.URI); err != nil {
			return fmt.Errorf("%w (and destroying the unused key %s failed: %v)", cause, key.URI, err)
		}
		return cause
	}
	issueUntil := now.Add(req.ValidFor).Truncate(time.Second)
	tmpl, err := hierarchy.IssuingTemplate(SiteSubject(req.Env, req.Product, req.Site), key.Public, now, req.ValidFor+prof.Validity, rootCert)
	if err != nil {
		return nil, abandon(err)
	}
	constrain(tmpl)
	der, warnings, err := issuer.SignCA(ctx, tmpl, rootCert, rootSigner, key.Public)
	if err != nil {
		return nil, abandon(fmt.Errorf("sign %s: %w", id, err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, abandon(fmt.Errorf("parse %s certificate: %w", id, err))
	}
	spki, err := goodkey.SPKIHash(key.Public)
	if err != nil {
		return nil, abandon(err)
	}
	// The export signer: a key of its own (purpose audit-signing) certified by the site CA. See exportSigner.
	auditKey, auditDER, err := f.exportSigner(ctx, req, cert, key.URI, now)
	if err != nil {
		return nil, abandon(err)
	}
	auditSPKI, err := goodkey.SPKIHash(auditKey.Public)
	if err != nil {
		return nil, abandon(err)
	}
	abandonSite := abandon
	abandon = func(cause error) error {
		if err := req.Keys.Destroy(ctx, auditKey.URI); err != nil {
			cause = fmt.Errorf("%w (and destroying the unused key %s failed: %v)", cause, auditKey.URI, err)
		}
		return abandonSite(cause)
	}
	ca := &store.CA{ID: id, Environment: req.Env, ProductLine: req.Product, Kind: store.CAKindSite, ParentID: root.ID, KeyURI: key.URI,
		CertDER: der, Subject: cert.Subject.String(), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Status: store.CAStatusActive, CreatedAt: now}
	site := &store.FactorySite{CAID: id, Environment: req.Env, ProductLine: req.Product, Site: req.Site, Profile: req.Profile,
		CNPattern: prof.Subject.CommonName.String(), Quota: req.Quota, IssueUntil: issueUntil, CreatedAt: now,
		AuditKeyURI: auditKey.URI, AuditCertDER: auditDER}
	loc := req.Keys.Location()
	err = f.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(ctx, &store.Key{URI: key.URI, Purpose: string(key.Purpose), Algorithm: string(key.Algorithm), Location: string(loc),
			State: store.KeyActive, Owner: id, SPKISHA256: spki, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "key.generate", Subject: key.URI, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"purpose": string(key.Purpose), "algorithm": string(key.Algorithm), "location": string(loc), "owner": id}}); err != nil {
			return err
		}
		if err := tx.InsertKey(ctx, &store.Key{URI: auditKey.URI, Purpose: string(auditKey.Purpose), Algorithm: string(auditKey.Algorithm), Location: string(loc),
			State: store.KeyActive, Owner: id + " export signer", SPKISHA256: auditSPKI, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "key.generate", Subject: auditKey.URI, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"purpose": string(auditKey.Purpose), "algorithm": string(auditKey.Algorithm), "location": string(loc), "owner": id + " export signer"}}); err != nil {
			return err
		}
		if err := tx.InsertCA(ctx, ca); err != nil {
			return err
		}
		details := map[string]string{"kind": ca.Kind, "environment": ca.Environment, "product_line": ca.ProductLine, "key": key.URI,
			"serial": fmt.Sprintf("%x", cert.SerialNumber), "not_after": ca.NotAfter.Format(time.RFC3339)}
		if len(warnings) > 0 {
			details["lint_warnings"] = fmt.Sprint(warnings)
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "ca.create", Subject: id, Outcome: audit.OutcomeSuccess, Details: details}); err != nil {
			return err
		}
		if err := tx.InsertFactorySite(ctx, site); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "factory.site.create", Subject: id, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"site": req.Site, "profile": req.Profile, "cn_pattern": site.CNPattern,
				"quota": fmt.Sprint(req.Quota), "issue_until": issueUntil.Format(time.RFC3339), "export_signer": auditKey.URI}})
	})
	if err != nil {
		return nil, abandon(fmt.Errorf("record %s: %w", id, err))
	}
	return &SiteCA{CA: ca, Site: site, Cert: cert}, nil
}

// constrain adds the site CA's name constraints (RFC 5280 4.2.1.10, critical): every DNS name, IP address,
// e-mail address and URI is excluded. An empty DNS, e-mail or URI-host constraint matches every name (Go's
// crypto/x509 and RFC 5280's "any name in the subtree" reading); 0.0.0.0/0 and ::/0 cover every address.
func constrain(t *x509.Certificate) {
	t.PermittedDNSDomainsCritical = true
	t.ExcludedDNSDomains = []string{""}
	t.ExcludedEmailAddresses = []string{""}
	// zlint (e_name_constraint_not_fqdn) refuses an empty URI subtree, so URIs are confined to the reserved
	// name keyward.invalid (RFC 6761 6.4) instead: no real URI can match it.
	t.PermittedURIDomains = []string{"keyward.invalid"}
	t.ExcludedIPRanges = []*net.IPNet{
		{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
	}
}

// loadSite returns the site CA of (env, product, site): its CA row, certificate and constraints.
func (f *Factory) loadSite(ctx context.Context, env, product, site string) (*SiteCA, error) {
	id := SiteID(env, product, site)
	ca, err := f.Store.GetCA(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: no site CA %s (create it with 'keyward factory site-ca --env %s --product %s --site %s')", ErrNotFound, id, env, product, site)
	} else if err != nil {
		return nil, err
	}
	if ca.Kind != store.CAKindSite {
		return nil, fmt.Errorf("%w: CA %s is a %s CA, not a site CA", ErrBadRequest, id, ca.Kind)
	}
	s, err := f.Store.GetFactorySite(ctx, id)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(ca.CertDER)
	if err != nil {
		return nil, fmt.Errorf("parse %s certificate: %w", id, err)
	}
	return &SiteCA{CA: ca, Site: s, Cert: cert}, nil
}
