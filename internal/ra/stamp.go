package ra

// Stamped issuance on the online path (issuer.Stamp). A request whose certificate depends only on its serial,
// common name, key and issuance time (a CSR without SANs: profile.Template copies DNS, IP and URI names from
// the CSR) has a shape: the issuing CA handle, the profile (pointer and version), the requesting role, the key
// type and the encoding of the common name. The first request of a shape goes through the full path (template,
// lint, signature) and its certificate is kept as the head; the first later request of the shape with another
// common name goes through the full path too, and issuer.NewStamp makes a stamp from the head with a probe named
// as that request and built at another issuance time, which it compares byte for byte, lint included, with the
// full path. From then on the shape's certificates are stamped, each with its own serial, name, key and
// validity, until the stamp's lifetime (Config.StampLifetime, from the head's issuance) ends: the next request
// goes through the full path and becomes the head of a new stamp, so that zlint's effective dates and any change
// of configuration are proven again. A request the stamp cannot carry (issuer.ErrNotStampable) takes the full
// path.
//
// A stamp signs through the CA handle's guard, like the full path: a CA retired or a key destroyed stops
// stamped issuance at once, and a new CA generation or a reloaded handle is another shape.

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/profile"
)

// DefaultStampLifetime is the StampLifetime a node gives its RA.
const DefaultStampLifetime = 10 * time.Minute

// IssuanceCounts says how the online path (Issue, IssueStream, EST enrollment and renewal) issued since the RA
// started.
type IssuanceCounts struct {
	// Stamped certificates were stamped from a fully linted certificate of their shape (issuer.Stamp).
	Stamped int64 `json:"stamped"`
	// Full certificates went through the full path: template, lint, signature.
	Full int64 `json:"full"`
	// StampRefused is the first reason a shape or a request could not be stamped, if any.
	StampRefused string `json:"stamp_refused,omitempty"`
}

// IssuanceCounts returns how the online path has issued so far.
func (r *RA) IssuanceCounts() IssuanceCounts {
	c := IssuanceCounts{Stamped: r.stamps.stamped.Load(), Full: r.stamps.full.Load()}
	if why := r.stamps.refused.Load(); why != nil {
		c.StampRefused = *why
	}
	return c
}

// stampCache holds a stamp, or the certificates to make one from, per shape. Its zero value is ready.
type stampCache struct {
	shapes  sync.Map // shape -> *shapeStamps
	stamped atomic.Int64
	full    atomic.Int64
	refused atomic.Pointer[string]
}

// shape is what a certificate of a request without SANs depends on besides its serial, common name, key and
// issuance time: whatever profile.Template reads.
type shape struct {
	ca      *ca.Issuer // the CA generation and the handle of its key
	profile *profile.Profile
	version int
	role    string // CheckRequest's allowed_principals
	key     string // the key type and size (profile.KeyName) and its SubjectPublicKeyInfo's length
	spkiLen int
	cnTag   byte // the common name's string type and length, which a stamp keeps
	cnLen   int
}

// shapeOf returns the shape of a request by role for csr (whose key is key) under prof from iss, or false for a
// request whose certificate would carry more of the CSR than its common name and key.
func shapeOf(iss *ca.Issuer, prof *profile.Profile, role string, csr *x509.CertificateRequest, key *issuer.SubjectKey) (shape, bool) {
	// profile.Template copies the DNS, IP and URI SANs of the CSR (CheckRequest refuses e-mail and other SANs).
	if len(csr.DNSNames) > 0 || len(csr.IPAddresses) > 0 || len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return shape{}, false
	}
	cn := csr.Subject.CommonName
	if cn == "" {
		return shape{}, false
	}
	// The common name is written as pkix.Name writes it (asn1.Marshal: PrintableString or UTF8String).
	der, err := asn1.Marshal(cn)
	if err != nil {
		return shape{}, false
	}
	return shape{ca: iss, profile: prof, version: prof.Version, role: role, key: profile.KeyName(key.Public()), spkiLen: len(key.SPKI()),
		cnTag: der[0], cnLen: len(der)}, true
}

// shapeStamps is the state of one shape: the current stamp, or the full-path certificate a stamp will be made
// from once another request of the shape comes.
type shapeStamps struct {
	cur atomic.Pointer[stampState] // read on every request without the lock

	mu     sync.Mutex
	head   *fullCert // a full-path certificate of the shape, the next stamp's origin
	making bool      // a stamp is being made from head
	// refusedUntil: NewStamp refused the shape; it is not tried again before then.
	refusedUntil time.Time
}

// stampState is a stamp and what the rows of its certificates need.
type stampState struct {
	stamp *issuer.Stamp
	// subject is the parsed subject of the certificate stamped from: a stamped certificate's is the same
	// with its own common name.
	subject  pkix.Name
	warnings []issuer.Finding
	until    time.Time // the stamp issues before this time
}

// fullCert is a certificate of a shape issued through the full path.
type fullCert struct {
	token *issuer.Prepared
	cert  *x509.Certificate
	csr   *x509.CertificateRequest
	at    time.Time // the issuance time its template was built at
}

func (c *stampCache) entry(sh shape, now time.Time, lifetime time.Duration) *shapeStamps {
	if v, ok := c.shapes.Load(sh); ok {
		return v.(*shapeStamps)
	}
	v, loaded := c.shapes.LoadOrStore(sh, &shapeStamps{})
	if !loaded {
		c.sweep(sh, now, lifetime)
	}
	return v.(*shapeStamps)
}

// sweep forgets the shapes other than keep that hold nothing usable any more (a CA handle replaced, a profile
// reloaded, a shape no longer requested), when a new shape appears.
func (c *stampCache) sweep(keep shape, now time.Time, lifetime time.Duration) {
	c.shapes.Range(func(k, v any) bool {
		if k == keep {
			return true
		}
		e := v.(*shapeStamps)
		e.mu.Lock()
		idle := !e.making && (e.head == nil || !now.Before(e.head.at.Add(lifetime))) && !now.Before(e.refusedUntil)
		e.mu.Unlock()
		if st := e.cur.Load(); idle && (st == nil || !now.Before(st.until)) {
			c.shapes.CompareAndDelete(k, v)
		}
		return true
	})
}

// currentStamp returns the stamp of shape sh that may issue at now, or nil.
func (r *RA) currentStamp(sh shape, now time.Time) *stampState {
	if r.cfg.StampLifetime <= 0 {
		return nil
	}
	v, ok := r.stamps.shapes.Load(sh)
	if !ok {
		return nil
	}
	st := v.(*shapeStamps).cur.Load()
	if st == nil || !now.Before(st.until) {
		return nil
	}
	return st
}

// noteRefusal keeps the first reason a certificate could not be stamped, and logs it once.
func (r *RA) noteRefusal(ctx context.Context, err error) {
	why := err.Error()
	if r.stamps.refused.CompareAndSwap(nil, &why) {
		r.cfg.Logger.InfoContext(ctx, "a certificate could not be stamped and took the full path; later ones of the kind do too", "reason", why)
	}
}

// stampPrepare stamps out's certificate, requested by role, when its shape has a stamp: serial, the request's
// common name and key, and the validity the profile gives at out.at. It reports false when the full path must
// issue it: a shape without a stamp yet (out.shape then says which, for offerHead), a request that does not fit
// the stamp (noted).
func (r *RA) stampPrepare(ctx context.Context, out *prepared, role string, serial *big.Int) (bool, error) {
	if out.shape, out.stampable = shapeOf(out.ca, out.profile, role, out.csr, out.key); !out.stampable {
		return false, nil
	}
	st := r.currentStamp(out.shape, out.at)
	if st == nil {
		return false, nil
	}
	cn := out.csr.Subject.CommonName
	nb, na, err := out.profile.ValidityAt(out.at, out.ca.Certificate())
	if err != nil {
		return false, profileError(err)
	}
	tok, err := st.stamp.Prepare(issuer.StampInput{Serial: serial, CommonName: cn, Key: out.key, NotBefore: nb, NotAfter: na})
	switch {
	case errors.Is(err, issuer.ErrNotStampable):
		r.noteRefusal(ctx, err)
		return false, nil
	case err != nil:
		return false, errorf(KindBadRequest, "certificate for %q under profile %q refused before signing: %w", cn, out.profile.Name, err)
	}
	out.stamp, out.stamped, out.serial, out.notBefore, out.notAfter = st, tok, serial, nb, na
	return true, nil
}

// stampedSubject is the subject a stamped certificate's row records, as x509 would parse it: the subject of
// the certificate stamped from with the request's common name. The rows of stamped certificates are built
// from the values they were stamped with, without parsing them (TestStampedRowsAreParsedRows compares the two).
func (p *prepared) stampedSubject() string {
	name := p.stamp.subject
	name.CommonName = p.csr.Subject.CommonName
	return name.String()
}

// lintWarnings are the lint warnings of the prepared certificate: the stamp's for a stamped one.
func (p *prepared) lintWarnings() []issuer.Finding {
	if p.stamp != nil {
		return p.stamp.warnings
	}
	return p.token.Warnings()
}

// offerHead hands a certificate of shape prep.shape issued through the full path to the shape's stamp: it
// becomes the head when the shape has no fresh one; with another common name than the head's, the stamp is
// made from the head, with this request as the probe.
func (r *RA) offerHead(ctx context.Context, prep *prepared, cert *x509.Certificate) {
	lifetime := r.cfg.StampLifetime
	if lifetime <= 0 || !prep.stampable {
		return
	}
	now := r.now()
	e := r.stamps.entry(prep.shape, now, lifetime)
	h := &fullCert{token: prep.token, cert: cert, csr: prep.csr, at: prep.at}
	e.mu.Lock()
	if st := e.cur.Load(); st != nil && now.Before(st.until) || e.making || now.Before(e.refusedUntil) {
		e.mu.Unlock()
		return
	}
	head := e.head
	if head == nil || !now.Before(head.at.Add(lifetime)) {
		e.head = h
		e.mu.Unlock()
		return
	}
	if head.cert.Subject.CommonName == cert.Subject.CommonName {
		e.mu.Unlock()
		return
	}
	e.head, e.making = nil, true
	e.mu.Unlock()

	st, err := r.newStamp(prep, head, h)

	e.mu.Lock()
	defer e.mu.Unlock()
	e.making = false
	switch {
	case err == nil:
		e.cur.Store(st)
	case errors.Is(err, issuer.ErrNotStampable):
		e.refusedUntil = now.Add(lifetime)
		r.noteRefusal(ctx, err)
	default:
		r.cfg.Logger.WarnContext(ctx, "stamp not made; certificates of its kind take the full path", "profile", prep.profile.Name, "ca", prep.ca.CA().ID, "err", err)
	}
}

// newStamp makes the stamp of prep's shape from head. The probe is built from probe's request (its name, the
// rest of its CSR) with a fresh key, at another issuance time than head's: probe's own, or a second after
// head's when they share it.
func (r *RA) newStamp(prep *prepared, head, probe *fullCert) (*stampState, error) {
	prof, iss, role := prep.profile, prep.ca, prep.shape.role
	probeAt := probe.at
	if probeAt.Truncate(time.Second).Equal(head.at.Truncate(time.Second)) {
		probeAt = head.at.Add(time.Second)
	}
	probeCN := probe.cert.Subject.CommonName
	template := func(serial *big.Int, cn string, pub crypto.PublicKey) (*x509.Certificate, error) {
		if cn != probeCN {
			return nil, fmt.Errorf("the probe is named %q, not %q", probeCN, cn)
		}
		csr := *probe.csr
		csr.PublicKey = pub
		return prof.Template(&profile.Request{CSR: &csr, Role: role}, serial, probeAt, iss.Certificate())
	}
	// As Template applies CheckRequest on the full path, every stamped name and key is checked again.
	check := func(cn string, pub crypto.PublicKey) error {
		return prof.CheckRequest(&profile.Request{CSR: subjectCSR(cn, pub), Role: role})
	}
	s, err := iss.NewStamp(head.token, head.cert.Raw, issuer.StampConfig{Template: template, VaryValidity: true, Check: check,
		ProbeCN: probeCN, MaxDERSize: prof.MaxDERSize})
	if err != nil {
		return nil, err
	}
	return &stampState{stamp: s, subject: head.cert.Subject, warnings: s.Warnings(), until: head.at.Add(r.cfg.StampLifetime)}, nil
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// subjectCSR is a request of a common name and a key, nothing else: what the subject check of a stamp sees.
func subjectCSR(cn string, pub crypto.PublicKey) *x509.CertificateRequest {
	return &x509.CertificateRequest{PublicKey: pub, Subject: pkix.Name{CommonName: cn, Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: cn}}}}
}
