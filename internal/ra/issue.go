package ra

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/hygiene"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// IssueRequest asks for a certificate under a profile from a CSR.
type IssueRequest struct {
	Profile     string
	Environment string // default "dev"
	ProductLine string // may be empty when exactly one product line of the environment uses the profile
	CSR         []byte // DER or PEM
}

// Issue checks req for principal p and, if every rule passes, issues and stores the certificate. A request for
// a device serial the registry holds as decommissioned or suspended is refused: the registry is consulted on
// every path that issues for a device.
func (r *RA) Issue(ctx context.Context, p Principal, req IssueRequest) (*store.Certificate, error) {
	if r.cfg.Site != nil {
		err := r.errSiteIssue()
		r.refuseIssue(ctx, p, req, nil, err)
		return nil, err
	}
	tk := r.group.expect()
	defer tk.done()
	prep, err := r.prepare(ctx, p, req, nil, true)
	if err != nil {
		tk.done()
		r.refuseIssue(ctx, p, req, prep, err)
		return nil, err
	}
	cert, err := r.sign(ctx, prep)
	if err != nil {
		return nil, err
	}
	err = r.txFor(ctx, tk, func(tx store.Tx) error {
		// The record is the whole of this change, and any failure of it is its failure: its writes may go
		// together (PostgreSQL: one round trip).
		tx.Pipeline()
		return r.record(ctx, tx, p, cert, ActionIssue, nil)
	})
	if err != nil {
		err = recordError(err, cert)
		if KindOf(err) == KindConflict {
			r.refuseIssue(ctx, p, req, prep, err)
		}
		return nil, err
	}
	return cert.row, nil
}

// prepared is a request that passed every check and whose certificate was linted (token) or stamped from a
// linted one of its shape (stamped), ready to sign.
type prepared struct {
	profile *profile.Profile
	product string
	env     string
	ca      *ca.Issuer
	csr     *x509.CertificateRequest
	key     *issuer.SubjectKey
	spki    []byte // SHA-256 of key's SubjectPublicKeyInfo
	reissue bool   // the key was certified before (for the same subject)
	at      time.Time
	token   *issuer.Prepared

	shape     shape // with stampable, the request's profile shape (stamp.go)
	stampable bool
	stamp     *stampState
	stamped   *issuer.Stamped
	serial    *big.Int
	notBefore time.Time
	notAfter  time.Time
}

type signed struct {
	prepared *prepared
	row      *store.Certificate
}

func (r *RA) resolve(req IssueRequest) (*profile.Profile, string, string, string, error) {
	prof := r.Profiles()[req.Profile]
	if prof == nil {
		return nil, "", "", "", FieldErrorf(KindBadRequest, "profile", "unknown profile %q (known: %s)", req.Profile, strings.Join(r.profileNames(), ", "))
	}
	env := req.Environment
	if env == "" {
		env = "dev"
	}
	envSpec := r.Hierarchy().Environments[env]
	if envSpec == nil {
		return nil, "", "", "", FieldErrorf(KindBadRequest, "environment", "unknown environment %q (configured: %s)", env, strings.Join(r.Hierarchy().EnvironmentNames(), ", "))
	}
	product := req.ProductLine
	if product == "" {
		var users []string
		for _, pl := range r.Hierarchy().ProductLineNames(env) {
			if contains(envSpec.ProductLines[pl].Profiles, req.Profile) {
				users = append(users, pl)
			}
		}
		if len(users) != 1 {
			return nil, "", "", "", FieldErrorf(KindBadRequest, "product_line", "profile %q is used by %d product lines of %q (%s): name one", req.Profile, len(users), env, strings.Join(users, ", "))
		}
		product = users[0]
	}
	spec := envSpec.ProductLines[product]
	if spec == nil {
		return nil, "", "", "", FieldErrorf(KindBadRequest, "product_line", "unknown product line %q in environment %q (configured: %s)", product, env, strings.Join(r.Hierarchy().ProductLineNames(env), ", "))
	}
	if !contains(spec.Profiles, req.Profile) {
		return nil, "", "", "", FieldErrorf(KindBadRequest, "profile", "product line %q of %q does not issue under profile %q (it allows: %s)", product, env, req.Profile, strings.Join(spec.Profiles, ", "))
	}
	if r.cfg.Site != nil {
		if err := r.checkSiteScope(env, product); err != nil {
			return nil, "", "", "", err
		}
		return prof, env, product, r.cfg.Site.CAID, nil
	}
	return prof, env, product, hierarchy.IssuingID(env, product), nil
}

// issuingCA returns the CA that issues for (env, product) now: the site CA in a site's RA, else the active
// generation of the product line's issuing CA.
func (r *RA) issuingCA(ctx context.Context, caID string) (string, error) {
	if r.cfg.Site != nil {
		return caID, nil
	}
	return r.currentID(ctx, caID)
}

// parsedCSR is a request's CSR, parsed once however many steps read it: strictly (profile.ParseCSR: the
// signature verified, the key checked) and, only when that fails, without checks, for the device name the audit
// record of the refusal gives.
type parsedCSR struct {
	csr   *x509.CertificateRequest
	err   error
	loose *x509.CertificateRequest
}

func parseCSR(der []byte) *parsedCSR {
	csr, err := profile.ParseCSR(der)
	if err == nil {
		return &parsedCSR{csr: csr}
	}
	loose, _ := x509.ParseCertificateRequest(der)
	return &parsedCSR{err: err, loose: loose}
}

// readable returns the CSR as parsed, strictly if it could be, else without checks; nil if it does not parse.
func (c *parsedCSR) readable() *x509.CertificateRequest {
	if c.csr != nil {
		return c.csr
	}
	return c.loose
}

// prepare checks req for p and lints its certificate, or stamps it from a linted one of its shape, ready to
// sign. pc is req.CSR already parsed, or nil. With checkRegistry, a device serial the registry holds as
// decommissioned or suspended is refused (enrollment makes its own, stricter registry checks).
func (r *RA) prepare(ctx context.Context, p Principal, req IssueRequest, pc *parsedCSR, checkRegistry bool) (*prepared, error) {
	prof, env, product, caID, err := r.resolve(req)
	if err != nil {
		return nil, err
	}
	out := &prepared{profile: prof, env: env, product: product}
	var csr *x509.CertificateRequest
	if pc != nil {
		csr, err = pc.csr, pc.err
	} else {
		csr, err = profile.ParseCSR(req.CSR)
	}
	if err != nil {
		return out, wrap(KindBadRequest, err)
	}
	out.csr = csr
	// ParseCSR checked the key with goodkey; CheckRequest checks it again, with the profile's algorithms.
	if err := prof.CheckRequest(&profile.Request{CSR: csr, Role: p.Role}); err != nil {
		return out, profileError(err)
	}
	// The SubjectPublicKeyInfo is encoded once, for the key's SHA-256 and for a stamped certificate.
	out.key, err = issuer.NewSubjectKey(csr.PublicKey)
	if err != nil {
		return out, wrap(KindBadRequest, fmt.Errorf("spki hash of %T: %w", csr.PublicKey, err))
	}
	h := sha256.Sum256(out.key.SPKI())
	out.spki = h[:]
	// One read for the registry and the key: a decommissioned or suspended serial is refused, and so is a key
	// already certified for another subject, before anything is signed; the store enforces the key rule again
	// at insert, which closes the race between two concurrent requests.
	owners, device, err := r.cfg.Store.IssuanceFacts(ctx, out.spki, env, product, csr.Subject.CommonName)
	if err != nil {
		return out, wrap(KindUnavailable, err)
	}
	if checkRegistry {
		if err := registryRefusal(device, env, product); err != nil {
			return out, err
		}
	}
	if err := duplicateKey(owners, out.spki, csr.Subject.String()); err != nil {
		return out, err
	}
	out.reissue = len(owners) > 0
	if caID, err = r.issuingCA(ctx, caID); err != nil {
		return out, err
	}
	iss, err := r.issuer(ctx, caID)
	if err != nil {
		return out, err
	}
	out.ca = iss
	out.at = r.now()
	serial, err := issuer.NewSerial(out.at)
	if err != nil {
		return out, wrap(KindInternal, err)
	}
	if ok, err := r.stampPrepare(ctx, out, p.Role, serial); ok || err != nil {
		return out, err
	}
	tmpl, err := prof.Template(&profile.Request{CSR: csr, Role: p.Role}, serial, out.at, iss.Certificate())
	if err != nil {
		return out, profileError(err)
	}
	out.token, err = iss.Prepare(tmpl, csr.PublicKey, issuer.MaxDERSize(prof.MaxDERSize))
	if err != nil {
		return out, errorf(KindBadRequest, "certificate for %q under profile %q refused before signing: %w", csr.Subject.CommonName, prof.Name, err)
	}
	return out, nil
}

// checkRegistry refuses a certificate for a device serial that the registry of (env, product) holds as
// decommissioned (final: the serial is never certified again) or suspended. A serial the registry does not
// hold is not refused: API issuance does not provision devices.
func (r *RA) checkRegistry(ctx context.Context, env, product, serial string) error {
	if serial == "" {
		return nil
	}
	d, err := r.cfg.Store.GetDevice(ctx, env, product, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return wrap(KindUnavailable, err)
	}
	return registryRefusal(d, env, product)
}

// registryRefusal is the refusal of an issuance for device d (nil: not in the registry), or nil.
func registryRefusal(d *store.Device, env, product string) error {
	switch {
	case d == nil:
		return nil
	case d.State == store.DeviceDecommissioned:
		return errorf(KindConflict, "device %s of %s/%s was decommissioned at %s: its serial is never certified again", d.Serial, env, product, d.UpdatedAt.UTC().Format(time.RFC3339))
	case d.State == store.DeviceSuspended:
		return errorf(KindForbidden, "device %s of %s/%s is suspended: nothing is issued for it until an operator resumes it", d.Serial, env, product)
	}
	return nil
}

// duplicateKey refuses a key that existing (the certificates of its SPKI) certify for another subject.
func duplicateKey(existing []*store.Certificate, spki []byte, subject string) error {
	for _, c := range existing {
		if c.Subject != subject {
			return errorf(KindConflict, "CSR public key (SPKI SHA-256 %x) is already certified for %q (certificate %s): a key is never shared between devices", spki, c.Subject, c.Serial)
		}
	}
	return nil
}

func (r *RA) sign(ctx context.Context, prep *prepared) (*signed, error) {
	if prep.stamped != nil {
		der, err := prep.stamp.stamp.Sign(ctx, prep.stamped)
		if err != nil {
			return nil, signError(prep.ca.CA().ID, err)
		}
		r.stamps.stamped.Add(1)
		return &signed{prepared: prep, row: &store.Certificate{
			Serial: prep.serial.Text(16), IssuerID: prep.ca.CA().ID, Profile: prep.profile.Name, ProfileVersion: prep.profile.Version,
			Subject: prep.stampedSubject(), NotBefore: prep.notBefore, NotAfter: prep.notAfter, SPKISHA256: prep.spki, DER: der,
			Status: store.CertStatusValid, CreatedAt: r.now(),
		}}, nil
	}
	cert, err := prep.ca.IssueCertificate(ctx, prep.token)
	if err != nil {
		return nil, signError(prep.ca.CA().ID, err)
	}
	r.stamps.full.Add(1)
	r.offerHead(ctx, prep, cert)
	der := cert.Raw
	now := r.now()
	return &signed{prepared: prep, row: &store.Certificate{
		Serial: SerialString(cert), IssuerID: prep.ca.CA().ID, Profile: prep.profile.Name, ProfileVersion: prep.profile.Version,
		Subject: cert.Subject.String(), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, SPKISHA256: prep.spki, DER: der,
		Status: store.CertStatusValid, CreatedAt: now,
	}}, nil
}

// signError maps a failure to sign with CA id: a CA or key retired since the check is a conflict with its new
// state, anything else a backend that is not available.
func signError(id string, err error) error {
	if errors.Is(err, ca.ErrRetired) {
		return errorf(KindConflict, "issuing CA %s can no longer sign: %w", id, err)
	}
	return wrap(KindUnavailable, fmt.Errorf("sign with %s: %w", id, err))
}

// record writes a signed certificate, its key's glossary row and the audit event (action, with extra details)
// in tx.
func (r *RA) record(ctx context.Context, tx store.Tx, p Principal, s *signed, action string, extra map[string]string) error {
	c := s.row
	// What the fleet scan needs of the CSR's signature (its nonce's trace) goes in with the certificate.
	if sig, ok := hygiene.CSRSignature(s.prepared.csr); ok && c.CSR == nil {
		c.CSR = &store.CSRSignature{Algorithm: int(sig.Algorithm), Digest: sig.Digest, R: sig.R, S: sig.S}
	}
	if err := tx.InsertCertificate(ctx, c); err != nil {
		return err
	}
	// A re-issue for a key already certified (for this subject: prepare refused any other) leaves the key's
	// glossary row as it is.
	if !s.prepared.reissue {
		alg, _ := keystore.AlgorithmOf(s.prepared.csr.PublicKey)
		if err := tx.InsertCertificateKey(ctx, c, string(alg)); err != nil {
			return err
		}
	}
	details := map[string]string{"profile": c.Profile, "issuer": c.IssuerID, "subject": c.Subject, "role": p.Role,
		"spki_sha256": hex.EncodeToString(c.SPKISHA256), "not_after": c.NotAfter.Format(time.RFC3339)}
	// Lint warnings do not stop issuance (errors do, in Prepare); they are kept with the issuance record.
	if w := s.prepared.lintWarnings(); len(w) > 0 {
		names := make([]string, len(w))
		for i, f := range w {
			names[i] = f.Lint
		}
		details["lint_warnings"] = strings.Join(names, ",")
	}
	subject := c.Serial
	if device, ok := extra["device"]; ok {
		details["serial"] = c.Serial
		subject = device
	}
	for k, v := range extra {
		details[k] = v
	}
	if rec, ok := tx.(*recorder); ok && rec.issued != nil {
		*rec.issued = append(*rec.issued, issuance{action: action, profile: c.Profile, ca: c.IssuerID})
	}
	return r.success(ctx, tx, p, action, subject, c.CreatedAt, details)
}

// refuseIssue records a refused issuance in its own transaction; nothing else is stored.
func (r *RA) refuseIssue(ctx context.Context, p Principal, req IssueRequest, prep *prepared, cause error) {
	subject := "-"
	if prep != nil && prep.csr != nil {
		subject = prep.csr.Subject.String()
	}
	r.refuse(ctx, p, ActionIssue, subject, map[string]string{"profile": req.Profile, "environment": req.Environment, "product_line": req.ProductLine}, cause)
}

// issuer returns the signing handle of CA caID from the custodian, refusing a CA that does not exist, is not
// active or whose key is not held here.
func (r *RA) issuer(ctx context.Context, caID string) (*ca.Issuer, error) {
	iss, err := r.cfg.CA.Issuer(ctx, caID)
	switch {
	case err == nil:
		return iss, nil
	case errors.Is(err, ca.ErrUnknownCA):
		return nil, errorf(KindNotFound, "issuing CA %s does not exist yet (create it with 'keyward ca create')", caID)
	case errors.Is(err, ca.ErrRetired), errors.Is(err, ca.ErrOffline):
		return nil, errorf(KindConflict, "issuing CA %s cannot issue: %w", caID, err)
	}
	return nil, wrap(KindUnavailable, fmt.Errorf("issuing CA %s: %w", caID, err))
}

// Chain returns the DER certificates from the current issuing CA of (env, product) up to and including the
// root (the root alone if product is empty), then what verifiers need beside it during a rollover: the earlier
// generations of the issuing CA that still answer for certificates they issued, and earlier roots that still
// anchor some.
func (r *RA) Chain(ctx context.Context, env, product string) ([][]byte, error) {
	rootRole := hierarchy.RootID(env)
	id, err := r.currentID(ctx, rootRole)
	if err != nil {
		return nil, err
	}
	var extra [][]byte
	if product != "" {
		role := hierarchy.IssuingID(env, product)
		if id, err = r.currentID(ctx, role); err != nil {
			return nil, err
		}
		if r.cfg.Site != nil {
			if err := r.checkSiteScope(env, product); err != nil {
				return nil, err
			}
			id = r.cfg.Site.CAID
		} else if extra, err = r.overlap(ctx, role, id); err != nil {
			return nil, err
		}
	}
	var chain [][]byte
	root := ""
	for id != "" {
		ca, err := r.cfg.Store.GetCA(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errorf(KindNotFound, "no CA %s", id)
		} else if err != nil {
			return nil, wrap(KindUnavailable, err)
		}
		chain = append(chain, ca.CertDER)
		root, id = ca.ID, ca.ParentID
	}
	roots, err := r.rootOverlap(ctx, env, root)
	if err != nil {
		return nil, err
	}
	links, err := r.links(ctx, env)
	if err != nil {
		return nil, err
	}
	chain = append(chain, extra...)
	chain = append(chain, roots...)
	return append(chain, links...), nil
}

// DeviceKeyURI names a key Keyward does not hold, by the SHA-256 of its SubjectPublicKeyInfo.
func DeviceKeyURI(spki []byte) string { return store.DeviceKeyURI(spki) }

// SerialOf returns the canonical serial of a DER certificate, or "" if it does not parse.
func SerialOf(der []byte) string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	return SerialString(c)
}

// SerialString is the canonical form of a certificate serial: lower-case hex without leading zeros.
func SerialString(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

func (r *RA) profileNames() []string {
	names := make([]string, 0, len(r.Profiles()))
	for n := range r.Profiles() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }

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

// recordError maps an error of a recording transaction: RA errors (a re-check refused) pass through, store
// conflicts become RA conflicts.
func recordError(err error, s *signed) error {
	var re *Error
	switch {
	case errors.As(err, &re):
		return err
	case errors.Is(err, store.ErrDuplicateKey):
		return errorf(KindConflict, "CSR public key (SPKI SHA-256 %x) is already certified for another subject: %w", s.row.SPKISHA256, err)
	case errors.Is(err, store.ErrDuplicateSerial):
		return errorf(KindConflict, "serial %s collided; retry the request: %w", s.row.Serial, err)
	}
	return wrap(KindUnavailable, err)
}

// NormalizeSerial accepts a serial in hex, with or without colons and leading zeros, and returns its canonical
// form (lower-case hex without leading zeros).
func NormalizeSerial(s string) (string, error) {
	clean := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(s), "0x"), ":", ""))
	v, ok := new(big.Int).SetString(clean, 16)
	if !ok || v.Sign() <= 0 || len(clean) > 40 {
		return "", FieldErrorf(KindBadRequest, "serial", "serial %q is not a positive hexadecimal number of at most 20 bytes", s)
	}
	return v.Text(16), nil
}

// GetCertificate looks a certificate up by serial (in any form NormalizeSerial accepts).
func (r *RA) GetCertificate(ctx context.Context, serial string) (*store.Certificate, error) {
	s, err := NormalizeSerial(serial)
	if err != nil {
		return nil, err
	}
	c, err := r.cfg.Store.GetCertificate(ctx, s)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(KindNotFound, "no certificate with serial %s", s)
	}
	return c, wrap(KindUnavailable, err)
}
