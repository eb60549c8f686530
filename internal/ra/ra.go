// Package ra is Keyward's registration authority: it decides. It authorises the caller, checks a request against
// its profile and key-quality rules, has the issuer (which holds keys and knows no policy) prepare, lint and sign,
// and records the certificate, the key glossary row and the audit event in one transaction. Refusals are
// audited too, and change nothing else.
package ra

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// Roles of principals.
const (
	RoleAdmin          = "admin"
	RoleCAOfficer      = "ca-officer"
	RoleAuditor        = "auditor"
	RoleReleaseSigner  = "release-signer"
	RoleFactoryStation = "factory-station"
	RoleDevice         = "device"
)

// Principal is an authenticated caller.
type Principal struct {
	ID   string // e.g. "operator:admin", "station:site-a/01", "cli:root"
	Role string
}

// Config wires an RA.
type Config struct {
	Store     store.Store
	Keys      keystore.Keystore
	Hierarchy *hierarchy.Config
	Profiles  map[string]*profile.Profile
	Now       func() time.Time
	Logger    *slog.Logger
	// Site, if set, makes this a factory site's RA (site.go): every certificate is issued by the site CA,
	// through EST enrollment only.
	Site *SiteScope
}

// RA is the registration authority. It is safe for concurrent use.
type RA struct {
	cfg Config

	mu      sync.Mutex
	issuers map[string]*caIssuer
	// siteRules caches compiled site subject rules (site.go).
	siteRules sync.Map
}

type caIssuer struct {
	ca     *store.CA
	cert   *x509.Certificate
	issuer *issuer.Issuer
}

// New returns an RA.
func New(cfg Config) (*RA, error) {
	if cfg.Store == nil || cfg.Keys == nil || cfg.Hierarchy == nil || cfg.Profiles == nil {
		return nil, errors.New("ra: store, keystore, hierarchy and profiles are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &RA{cfg: cfg, issuers: map[string]*caIssuer{}}, nil
}

// Store returns the RA's store (for read-only front-end queries).
func (r *RA) Store() store.Store { return r.cfg.Store }

func (r *RA) now() time.Time { return r.cfg.Now().UTC() }

// IssueRequest asks for a certificate under a profile from a CSR.
type IssueRequest struct {
	Profile     string
	Environment string // default "dev"
	ProductLine string // may be empty when exactly one product line of the environment uses the profile
	CSR         []byte // DER or PEM
}

// Issue checks req for principal p and, if every rule passes, issues and stores the certificate.
func (r *RA) Issue(ctx context.Context, p Principal, req IssueRequest) (*store.Certificate, error) {
	if r.cfg.Site != nil {
		err := r.errSiteIssue()
		r.refuse(ctx, p, req, nil, err)
		return nil, err
	}
	prep, err := r.prepare(ctx, p, req)
	if err != nil {
		r.refuse(ctx, p, req, prep, err)
		return nil, err
	}
	cert, err := r.sign(ctx, prep)
	if err != nil {
		return nil, err
	}
	err = r.cfg.Store.Tx(ctx, func(tx store.Tx) error { return r.record(ctx, tx, p, cert) })
	if err != nil {
		err = storeError(err, cert)
		if KindOf(err) == KindConflict {
			r.refuse(ctx, p, req, prep, err)
		}
		return nil, err
	}
	return cert.row, nil
}

// prepared is a request that passed every check and whose certificate was linted, ready to sign.
type prepared struct {
	profile *profile.Profile
	ca      *caIssuer
	csr     *x509.CertificateRequest
	spki    []byte
	token   *issuer.Prepared
}

type signed struct {
	prepared *prepared
	row      *store.Certificate
}

func (r *RA) resolve(req IssueRequest) (*profile.Profile, string, error) {
	prof := r.cfg.Profiles[req.Profile]
	if prof == nil {
		return nil, "", errorf(KindBadRequest, "unknown profile %q (known: %s)", req.Profile, strings.Join(r.profileNames(), ", "))
	}
	env := req.Environment
	if env == "" {
		env = "dev"
	}
	envSpec := r.cfg.Hierarchy.Environments[env]
	if envSpec == nil {
		return nil, "", errorf(KindBadRequest, "unknown environment %q (configured: %s)", env, strings.Join(r.cfg.Hierarchy.EnvironmentNames(), ", "))
	}
	product := req.ProductLine
	if product == "" {
		var users []string
		for _, pl := range r.cfg.Hierarchy.ProductLineNames(env) {
			if contains(envSpec.ProductLines[pl].Profiles, req.Profile) {
				users = append(users, pl)
			}
		}
		if len(users) != 1 {
			return nil, "", errorf(KindBadRequest, "profile %q is used by %d product lines of %q (%s): name one with --product", req.Profile, len(users), env, strings.Join(users, ", "))
		}
		product = users[0]
	}
	spec := envSpec.ProductLines[product]
	if spec == nil {
		return nil, "", errorf(KindBadRequest, "unknown product line %q in environment %q (configured: %s)", product, env, strings.Join(r.cfg.Hierarchy.ProductLineNames(env), ", "))
	}
	if !contains(spec.Profiles, req.Profile) {
		return nil, "", errorf(KindBadRequest, "product line %q of %q does not issue under profile %q (it allows: %s)", product, env, req.Profile, strings.Join(spec.Profiles, ", "))
	}
	if r.cfg.Site != nil {
		if err := r.checkSiteScope(env, product); err != nil {
			return nil, "", err
		}
		return prof, r.cfg.Site.CAID, nil
	}
	return prof, hierarchy.IssuingID(env, product), nil
}

func (r *RA) prepare(ctx context.Context, p Principal, req IssueRequest) (*prepared, error) {
	prof, caID, err := r.resolve(req)
	if err != nil {
		return nil, err
	}
	out := &prepared{profile: prof}
	csr, err := profile.ParseCSR(req.CSR)
	if err != nil {
		return out, wrap(KindBadRequest, err)
	}
	out.csr = csr
	if err := prof.CheckRequest(&profile.Request{CSR: csr, Role: p.Role}); err != nil {
		return out, profileError(err)
	}
	if err := goodkey.Check(csr.PublicKey); err != nil {
		return out, errorf(KindBadRequest, "CSR key refused: %w", err)
	}
	out.spki, err = goodkey.SPKIHash(csr.PublicKey)
	if err != nil {
		return out, wrap(KindBadRequest, err)
	}
	// A key already certified for another subject is refused before anything is signed; the store enforces the
	// same rule again at insert, which closes the race between two concurrent requests.
	if err := r.checkDuplicateKey(ctx, out.spki, csr.Subject.String()); err != nil {
		return out, err
	}
	ca, err := r.issuerFor(ctx, caID)
	if err != nil {
		return out, err
	}
	out.ca = ca
	serial, err := issuer.RandomSerial()
	if err != nil {
		return out, wrap(KindInternal, err)
	}
	tmpl, err := prof.Template(&profile.Request{CSR: csr, Role: p.Role}, serial, r.now(), ca.cert)
	if err != nil {
		return out, profileError(err)
	}
	out.token, err = ca.issuer.Prepare(tmpl, csr.PublicKey, issuer.MaxDERSize(prof.MaxDERSize))
	if err != nil {
		return out, errorf(KindBadRequest, "certificate for %q under profile %q refused before signing: %w", csr.Subject.CommonName, prof.Name, err)
	}
	return out, nil
}

func (r *RA) checkDuplicateKey(ctx context.Context, spki []byte, subject string) error {
	existing, err := r.cfg.Store.CertificatesBySPKI(ctx, spki)
	if err != nil {
		return wrap(KindUnavailable, err)
	}
	for _, c := range existing {
		if c.Subject != subject {
			return errorf(KindConflict, "CSR public key (SPKI SHA-256 %x) is already certified for %q (certificate %s): a key is never shared between devices", spki, c.Subject, c.Serial)
		}
	}
	return nil
}

func (r *RA) sign(ctx context.Context, prep *prepared) (*signed, error) {
	der, err := prep.ca.issuer.Issue(ctx, prep.token)
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("sign with %s: %w", prep.ca.ca.ID, err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, wrap(KindInternal, err)
	}
	now := r.now()
	return &signed{prepared: prep, row: &store.Certificate{
		Serial: SerialString(cert), IssuerID: prep.ca.ca.ID, Profile: prep.profile.Name, ProfileVersion: prep.profile.Version,
		Subject: cert.Subject.String(), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, SPKISHA256: prep.spki, DER: der,
		Status: store.CertStatusValid, CreatedAt: now,
	}}, nil
}

// record writes a signed certificate, its key's glossary row and the audit event in tx.
func (r *RA) record(ctx context.Context, tx store.Tx, p Principal, s *signed) error {
	c := s.row
	if err := tx.InsertCertificate(ctx, c); err != nil {
		return err
	}
	alg, _ := keystore.AlgorithmOf(s.prepared.csr.PublicKey)
	if err := tx.InsertKey(ctx, &store.Key{
		URI: DeviceKeyURI(c.SPKISHA256), Purpose: string(keystore.PurposeDeviceIdentity), Algorithm: string(alg),
		Location: string(keystore.LocationDevice), State: store.KeyActive, Owner: c.Serial, SPKISHA256: c.SPKISHA256,
		CreatedAt: c.CreatedAt, StateChangedAt: c.CreatedAt,
	}); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	details := map[string]string{"profile": c.Profile, "issuer": c.IssuerID, "subject": c.Subject, "role": p.Role,
		"spki_sha256": hex.EncodeToString(c.SPKISHA256), "not_after": c.NotAfter.Format(time.RFC3339)}
	// Lint warnings do not stop issuance (errors do, in Prepare); they are kept with the issuance record.
	if w := s.prepared.token.Warnings(); len(w) > 0 {
		names := make([]string, len(w))
		for i, f := range w {
			names[i] = f.Lint
		}
		details["lint_warnings"] = strings.Join(names, ",")
	}
	return tx.AppendAudit(ctx, &audit.Event{Time: c.CreatedAt, Actor: p.ID, Action: "cert.issue", Subject: c.Serial, Outcome: audit.OutcomeSuccess, Details: details})
}

// refuse records a refused issuance in its own transaction; nothing else is stored.
func (r *RA) refuse(ctx context.Context, p Principal, req IssueRequest, prep *prepared, cause error) {
	subject := "-"
	if prep != nil && prep.csr != nil {
		subject = prep.csr.Subject.String()
	}
	details := map[string]string{"profile": req.Profile, "role": p.Role, "reason": cause.Error()}
	if req.Environment != "" {
		details["environment"] = req.Environment
	}
	if req.ProductLine != "" {
		details["product_line"] = req.ProductLine
	}
	err := r.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, &audit.Event{Time: r.now(), Actor: p.ID, Action: "cert.issue", Subject: subject, Outcome: audit.OutcomeRefused, Details: details})
	})
	if err != nil {
		r.cfg.Logger.ErrorContext(ctx, "audit of refusal failed", "actor", p.ID, "err", err)
	}
}

func (r *RA) issuerFor(ctx context.Context, caID string) (*caIssuer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ci := r.issuers[caID]; ci != nil {
		return ci, nil
	}
	ca, err := r.cfg.Store.GetCA(ctx, caID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(KindNotFound, "issuing CA %s does not exist yet (run 'keyward ca create')", caID)
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if ca.Status != store.CAStatusActive {
		return nil, errorf(KindBadRequest, "issuing CA %s is %s", caID, ca.Status)
	}
	cert, err := x509.ParseCertificate(ca.CertDER)
	if err != nil {
		return nil, wrap(KindInternal, fmt.Errorf("parse %s certificate: %w", caID, err))
	}
	signer, err := r.cfg.Keys.Signer(ctx, ca.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("issuing CA %s key: %w", caID, err))
	}
	iss, err := issuer.New(cert, signer)
	if err != nil {
		return nil, wrap(KindInternal, err)
	}
	ci := &caIssuer{ca: ca, cert: cert, issuer: iss}
	r.issuers[caID] = ci
	return ci, nil
}

// Chain returns the DER certificates from the issuing CA of (env, product) up to and including the root.
func (r *RA) Chain(ctx context.Context, env, product string) ([][]byte, error) {
	id := hierarchy.RootID(env)
	if product != "" {
		id = hierarchy.IssuingID(env, product)
		if r.cfg.Site != nil {
			if err := r.checkSiteScope(env, product); err != nil {
				return nil, err
			}
			id = r.cfg.Site.CAID
		}
	}
	var chain [][]byte
	for id != "" {
		ca, err := r.cfg.Store.GetCA(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errorf(KindNotFound, "no CA %s", id)
		} else if err != nil {
			return nil, wrap(KindUnavailable, err)
		}
		chain = append(chain, ca.CertDER)
		id = ca.ParentID
	}
	return chain, nil
}

// DeviceKeyURI names a key Keyward does not hold, by the SHA-256 of its SubjectPublicKeyInfo.
func DeviceKeyURI(spki []byte) string { return "spki:sha256:" + hex.EncodeToString(spki) }

// SerialString is the canonical form of a certificate serial: lower-case hex without leading zeros.
func SerialString(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

func (r *RA) profileNames() []string {
	names := make([]string, 0, len(r.cfg.Profiles))
	for n := range r.cfg.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// profileError maps a profile error to an RA error of the matching kind.
func profileError(err error) error {
	switch {
	case errors.Is(err, profile.ErrForbidden):
		return &Error{Kind: KindForbidden, Err: err}
	case errors.Is(err, profile.ErrIssuer), errors.Is(err, profile.ErrInvalidProfile):
		return &Error{Kind: KindInternal, Err: err}
	}
	return &Error{Kind: KindBadRequest, Err: err}
}

// storeError maps store errors of an insert to RA errors.
func storeError(err error, s *signed) error {
	switch {
	case errors.Is(err, store.ErrDuplicateKey):
		return errorf(KindConflict, "CSR public key (SPKI SHA-256 %x) is already certified for another subject: %w", s.row.SPKISHA256, err)
	case errors.Is(err, store.ErrDuplicateSerial):
		return errorf(KindConflict, "serial %s collided; retry the request: %w", s.row.Serial, err)
	}
	return wrap(KindUnavailable, err)
}
