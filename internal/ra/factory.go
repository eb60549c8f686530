package ra

// Offline manufacturing (docs/manufacturing.md): a factory site's constrained subordinate CA, the batches of
// pre-issued credentials a site generates with it, the exports a site signs of what it issued, and their
// reconciliation at headquarters. The file formats, the batch pipeline and injection are internal/factory's;
// every decision and every record is here (this file: the site CA; batch.go: batches and exports;
// reconcile.go: reconciliation; sitepackage.go: the site data directory's records).
//
// Site CA constraints. A site CA is a CA of kind "site" under its environment's root, with
//
//   - path length 0 (RFC 5280 4.2.1.9): it signs end entities only;
//   - a critical name-constraints extension (RFC 5280 4.2.1.10) that excludes every DNS name, IP address,
//     e-mail address and URI, so no certificate it signs can pass as a TLS server, mail or web identity in
//     any verifier that enforces name constraints (Go's crypto/x509 does, and zlint's RFC 5280 lints accept
//     it; URIs are confined to keyward.invalid, a reserved name, as zlint refuses an empty URI subtree).
//     Implant certificates carry no SANs, so they pass;
//   - a recorded subject rule: the product line's serial pattern (the profile's common-name regex at creation)
//     is stored with the site and checked before every signature. X.509 cannot say "CN matches ^DEMO-[0-9]{8}$":
//     directoryName subtrees match whole RDN prefixes, and Go's verifier does not enforce them at all, so the
//     rule lives in Keyward, and reconciliation at headquarters checks it again;
//   - a quota and an issuing window (--valid-for), recorded with the site and enforced before signing.
//
// Why the certificate outlives the window: RFC 5280 path validation (and Go's verifier) checks the validity of
// every certificate of the path at verification time, so a site CA certificate that expired after 30 days
// would invalidate every 15-year implant certificate it signed. The certificate's NotAfter is therefore the
// end of the issuing window plus the profile's validity; "short validity" is the issuing window, which
// Keyward enforces and records in the audit trail.

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// Errors of offline manufacturing that callers tell apart with errors.Is (internal/factory re-exports them
// under its own names); the faces map only their kinds. A refusal of the site CA's rules is a bad request, as
// the request breaks a rule recorded with the site, not a right of the caller.
var (
	// ErrFactoryBadRequest: the input breaks a rule (unknown environment or product, bad site name, quota,
	// window, a malformed file).
	ErrFactoryBadRequest = Sentinel(KindBadRequest, "bad factory request")
	// ErrFactoryConflict: the request conflicts with existing state (site CA exists, batch file of another
	// job, device or certificate recorded already, export sequence number taken).
	ErrFactoryConflict = Sentinel(KindConflict, "factory conflict")
	// ErrFactoryNotFound: no such site CA.
	ErrFactoryNotFound = Sentinel(KindNotFound, "factory site not found")
	// ErrSiteRefused: the site CA may not issue this (quota spent, issuing window over, subject outside its
	// rule), or an export breaks the site's rules.
	ErrSiteRefused = Sentinel(KindBadRequest, "site CA refuses to issue")
	// ErrExportTampered: an export fails verification (altered, reordered, removed or appended record,
	// truncated file, signature that does not verify).
	ErrExportTampered = Sentinel(KindBadRequest, "export fails verification")
	// ErrExportForeign: an export belongs to another site, environment or data directory.
	ErrExportForeign = Sentinel(KindBadRequest, "export is foreign")
	// ErrExportReplay: the export (its log and sequence number) was reconciled already, or its batch is closed.
	ErrExportReplay = Sentinel(KindConflict, "export already reconciled")
)

// factoryErr wraps sentinel with a message: the sentinel's text, then the reason.
func factoryErr(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// MaxSiteWindow is the longest issuing window of a site CA: a site CA is short-lived by design, so that a lost
// site HSM can issue for a bounded time at most.
const MaxSiteWindow = 366 * 24 * time.Hour

// DefaultSiteProfile is the profile a site CA issues when none is named.
const DefaultSiteProfile = "implant-identity"

// SiteCAID is the CA id of the site CA of (env, product, site).
func SiteCAID(env, product, site string) string { return env + "/" + product + "/" + site }

// SiteSubject is the subject of a site CA: common name only, as short as the issuing CA's (the issuer name is
// repeated in every implant certificate, whose profile allows 400 bytes).
func SiteSubject(env, product, site string) pkix.Name {
	return pkix.Name{CommonName: fmt.Sprintf("%s %s %s", product, site, env)}
}

// siteNameRule keeps site names short: they are part of the issuer name of every implant certificate.
var siteNameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,15}$`)

// SiteCARequest describes a site CA to create.
type SiteCARequest struct {
	Environment, ProductLine, Site string
	Profile                        string        // default DefaultSiteProfile
	Quota                          int64         // certificates the CA may issue in total
	ValidFor                       time.Duration // issuing window
	// Keys is where the site CA key and its export signer are generated: the site HSM (in dev, possibly the
	// software keystore). It must be one of the keystores the custodian reaches.
	Keys keystore.Keystore
}

// SiteCA is a site CA as recorded: its CA row, its record of constraints and its certificate.
type SiteCA struct {
	CA   *store.CA
	Site *store.FactorySite
	Cert *x509.Certificate
}

// CreateSiteCA creates the constrained site CA of req under its environment's root, with its key (purpose
// ca-signing) and its export signer (purpose audit-signing, certified by the site CA) in req.Keys, and records
// both keys, the CA, its constraints and their audit events in one transaction. The environment's root must be
// online: a site CA under an offline root needs a ceremony.
func (r *RA) CreateSiteCA(ctx context.Context, p Principal, req SiteCARequest) (*SiteCA, error) {
	id := SiteCAID(req.Environment, req.ProductLine, req.Site)
	if err := r.authorize(ctx, p, audit.ActionSiteCreate, id, "create site CAs", RoleAdmin); err != nil {
		return nil, err
	}
	if spec := r.Hierarchy().Environments[req.Environment]; spec != nil && spec.Root.Offline {
		return nil, errorf(KindForbidden, "environment %q: %w; a site CA under an offline root is made in a ceremony: "+
			"'keyward ca csr --kind site --env %s --product %s --site %s --quota N --valid-for D --keystore SITE-HSM', "+
			"'keyward ca ceremony sign' with the root, then 'keyward ca import'", req.Environment, hierarchy.ErrOffline, req.Environment, req.ProductLine, req.Site)
	}
	prof, alg, err := r.checkSiteRequest(&req)
	if err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error { return factoryErr(ErrFactoryBadRequest, format, args...) }
	if req.Keys == nil {
		return nil, bad("no keystore for the site CA key")
	}
	if _, err := r.cfg.Store.GetCA(ctx, id); err == nil {
		return nil, factoryErr(ErrFactoryConflict, "site CA %s exists already", id)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, wrap(KindUnavailable, err)
	}
	rootID := hierarchy.RootID(req.Environment)
	if _, err := r.cfg.Store.GetCA(ctx, rootID); errors.Is(err, store.ErrNotFound) {
		return nil, factoryErr(ErrFactoryNotFound, "environment %q has no root CA yet (run 'keyward ca create --env %s')", req.Environment, req.Environment)
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	root, err := r.issuer(ctx, rootID)
	if err != nil {
		return nil, err
	}
	pc, err := r.newSubordinate(ctx, subordinate{id: id, env: req.Environment, product: req.ProductLine, kind: store.CAKindSite, parent: root,
		subject: SiteSubject(req.Environment, req.ProductLine, req.Site), validity: req.ValidFor + prof.Validity, keys: req.Keys, alg: alg, edit: constrain})
	if err != nil {
		return nil, err
	}
	return r.recordSite(ctx, p, pc, req, prof, nil)
}

// recordSite completes a site CA whose certificate is signed: it has the site CA certify its export signer
// (generated in req.Keys) and records both keys, the CA, its constraints and their audit events in one
// transaction, with extra, if set, running in that transaction too (an imported CA's request is closed).
func (r *RA) recordSite(ctx context.Context, p Principal, pc *pendingCA, req SiteCARequest, prof *profile.Profile, extra func(store.Tx) error) (*SiteCA, error) {
	id := pc.row.ID
	// The export signer: the site CA key has purpose ca-signing, which signs certificates and CRLs only, so the
	// site's exports are signed by a key of its own, certified by the site CA in the same change, for as long
	// as the site CA: headquarters reconciles the last exports after the issuing window.
	siteIss, err := r.cfg.CA.IssuerOf(ctx, pc.row)
	if err != nil {
		return nil, r.abandonCA(ctx, signError(id, err), pc)
	}
	d, err := siteIss.NewDelegate(ctx, req.Keys, keystore.PurposeAuditSigning, pc.cert.NotAfter)
	if err != nil {
		return nil, r.abandonCA(ctx, signError(id, fmt.Errorf("export signer of %s: %w", id, err)), pc)
	}
	auditSPKI, err := goodkey.SPKIHash(d.Key.Public)
	if err != nil {
		return nil, r.abandonCA(ctx, err, pc, d.Key.URI)
	}
	now := pc.row.CreatedAt
	site := &store.FactorySite{CAID: id, Environment: req.Environment, ProductLine: req.ProductLine, Site: req.Site, Profile: req.Profile,
		CNPattern: prof.Subject.CommonName.String(), Quota: req.Quota, IssueUntil: now.Add(req.ValidFor).Truncate(time.Second), CreatedAt: now,
		AuditKeyURI: d.Key.URI, AuditCertDER: d.CertDER}
	err = r.tx(ctx, func(tx store.Tx) error {
		if extra != nil {
			if err := extra(tx); err != nil {
				return err
			}
		}
		if err := r.recordKey(ctx, tx, p, d.Key, d.Location, id+" export signer", store.KeyActive, auditSPKI, now); err != nil {
			return err
		}
		if err := r.recordCA(ctx, tx, p, pc); err != nil {
			return err
		}
		if err := tx.InsertFactorySite(ctx, site); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionSiteCreate, id, now, map[string]string{"site": req.Site, "profile": req.Profile,
			"cn_pattern": site.CNPattern, "quota": fmt.Sprint(req.Quota), "issue_until": site.IssueUntil.Format(time.RFC3339), "export_signer": d.Key.URI})
	})
	if err != nil {
		return nil, r.abandonCA(ctx, fmt.Errorf("record %s: %w", id, err), pc, d.Key.URI)
	}
	return &SiteCA{CA: pc.row, Site: site, Cert: pc.cert}, nil
}

// checkSiteRequest checks what a site CA request names (environment, product line, profile, site name, quota,
// window), completes its profile, and returns the profile and the key algorithm of the product line.
func (r *RA) checkSiteRequest(req *SiteCARequest) (*profile.Profile, keystore.Algorithm, error) {
	if req.Profile == "" {
		req.Profile = DefaultSiteProfile
	}
	bad := func(format string, args ...any) error { return factoryErr(ErrFactoryBadRequest, format, args...) }
	cfg := r.Hierarchy()
	spec := cfg.Environments[req.Environment]
	if spec == nil {
		return nil, "", bad("environment %q is not declared in keyward.yaml (declared: %v)", req.Environment, cfg.EnvironmentNames())
	}
	pl := spec.ProductLines[req.ProductLine]
	if pl == nil {
		return nil, "", bad("product line %q is not declared for environment %q (declared: %v)", req.ProductLine, req.Environment, cfg.ProductLineNames(req.Environment))
	}
	if !slices.Contains(pl.Profiles, req.Profile) {
		return nil, "", bad("product line %s/%s does not use profile %q (it uses %v)", req.Environment, req.ProductLine, req.Profile, pl.Profiles)
	}
	prof := r.Profiles()[req.Profile]
	if prof == nil || prof.Subject.CommonName == nil || !prof.Subject.CommonNameRequired {
		return nil, "", bad("profile %q has no required common-name pattern, so a site CA cannot be bound to the product line's serials", req.Profile)
	}
	if !siteNameRule.MatchString(req.Site) {
		return nil, "", bad("site %q: use 1 to 16 lower-case letters, digits and hyphens, starting with a letter or digit (the name is in every certificate the site issues)", req.Site)
	}
	if req.Quota <= 0 {
		return nil, "", bad("--quota %d: a site CA needs a positive quota of certificates", req.Quota)
	}
	if req.ValidFor <= 0 || req.ValidFor > MaxSiteWindow {
		return nil, "", bad("--valid-for %s: the issuing window of a site CA must be positive and at most 366d", req.ValidFor)
	}
	alg, err := keystore.ParseAlgorithm(pl.Algorithm)
	if err != nil {
		return nil, "", wrap(KindBadRequest, err)
	}
	return prof, alg, nil
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

// FactorySite returns the site CA of (env, product, site) as recorded here: its CA row, certificate and
// constraints.
func (r *RA) FactorySite(ctx context.Context, env, product, site string) (*SiteCA, error) {
	return r.siteCA(ctx, SiteCAID(env, product, site), fmt.Sprintf(" --env %s --product %s --site %s", env, product, site))
}

// siteCA loads site CA id; hint completes the command that creates it.
func (r *RA) siteCA(ctx context.Context, id, hint string) (*SiteCA, error) {
	row, err := r.cfg.Store.GetCA(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, factoryErr(ErrFactoryNotFound, "no site CA %s (create it with 'keyward factory site-ca%s')", id, hint)
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if row.Kind != store.CAKindSite {
		return nil, factoryErr(ErrFactoryBadRequest, "CA %s is a %s CA, not a site CA", id, row.Kind)
	}
	s, err := r.cfg.Store.GetFactorySite(ctx, id)
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("site CA %s record: %w", id, err))
	}
	cert, err := x509.ParseCertificate(row.CertDER)
	if err != nil {
		return nil, fmt.Errorf("parse %s certificate: %w", id, err)
	}
	return &SiteCA{CA: row, Site: s, Cert: cert}, nil
}

// siteIssuer returns the signing handle of site CA id.
func (r *RA) siteIssuer(ctx context.Context, id string) (*ca.Issuer, error) {
	iss, err := r.cfg.CA.Issuer(ctx, id)
	if err != nil {
		return nil, signError(id, fmt.Errorf("site CA %s: %w", id, err))
	}
	return iss, nil
}

// SerialRange is a batch's device serials: credential i of a batch is named by its first serial with i added to
// the serial's trailing decimal digits, keeping their width (DEMO-00000001, DEMO-00000002, ...). The names are
// distinct by construction, and reconciliation knows each credential's name from its index.
type SerialRange struct {
	prefix string
	first  uint64
	width  int
}

// ParseSerialRange returns the range of count serials from first.
func ParseSerialRange(first string, count int64) (SerialRange, error) {
	i := len(first)
	for i > 0 && first[i-1] >= '0' && first[i-1] <= '9' {
		i--
	}
	digits := first[i:]
	if digits == "" || len(digits) > 18 {
		return SerialRange{}, factoryErr(ErrFactoryBadRequest, "--first-serial %q must end in 1 to 18 decimal digits, which are counted up for each credential", first)
	}
	n, _ := strconv.ParseUint(digits, 10, 64)
	r := SerialRange{prefix: first[:i], first: n, width: len(digits)}
	if last := n + uint64(count) - 1; len(strconv.FormatUint(last, 10)) > r.width {
		return SerialRange{}, factoryErr(ErrFactoryBadRequest, "--first-serial %q with --count %d runs past %d digits", first, count, r.width)
	}
	return r, nil
}

// At returns the serial of credential i.
func (r SerialRange) At(i int64) string {
	s := strconv.FormatUint(r.first+uint64(i), 10)
	return r.prefix + strings.Repeat("0", r.width-len(s)) + s
}

// Index returns the index i with r.At(i) == s, if there is one (the range's count is not checked).
func (r SerialRange) Index(s string) (int64, bool) {
	digits, ok := strings.CutPrefix(s, r.prefix)
	if !ok || len(digits) != r.width {
		return 0, false
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(digits, 10, 64) // at most 18 digits: no overflow
	if err != nil || v < r.first {
		return 0, false
	}
	return int64(v - r.first), true
}
