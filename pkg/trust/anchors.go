package trust

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/veraison/go-cose"
)

// Errors of Apply, NewAnchors and ParseAnchorsPEM. Each refusal wraps exactly one of them, so a caller tells
// them apart with errors.Is.
var (
	// ErrMalformed: an update or an anchors file does not decode, breaks a size limit, or lacks a required
	// field.
	ErrMalformed = errors.New("malformed trust-anchor data")
	// ErrInvalidAnchor: a certificate listed as an anchor is not a self-signed CA certificate.
	ErrInvalidAnchor = errors.New("not a trust anchor")
	// ErrWrongEnvironment: the update is for another environment than the held anchors, or an anchors file
	// names another environment than its reader expects.
	ErrWrongEnvironment = errors.New("trust anchors of another environment")
	// ErrNotNewer: the update's version is not higher than the held one (a replay or a rollback).
	ErrNotNewer = errors.New("trust-anchor update is not newer than the held anchors")
	// ErrNotYetValid: the device's clock is before the update's validity begins.
	ErrNotYetValid = errors.New("trust-anchor update is not valid yet")
	// ErrExpired: the device's clock is after the update's validity ends.
	ErrExpired = errors.New("trust-anchor update has expired")
	// ErrNotSignedByHeld: no anchor the device holds signed the update.
	ErrNotSignedByHeld = errors.New("trust-anchor update is not signed by a held anchor")
	// ErrNotSignedByNew: an anchor the update introduces did not sign it (signed by only one of the two roots).
	ErrNotSignedByNew = errors.New("trust-anchor update is not signed by an anchor it introduces")
	// ErrBadSignature: a signature on the update does not verify, names an unknown key or a wrong algorithm,
	// or is not well formed.
	ErrBadSignature = errors.New("trust-anchor update carries a signature that does not verify")
)

// Anchors are the trust anchors a device holds for one environment: the environment's root CA certificates and
// the version of the update that installed them. A value is immutable: Apply returns new Anchors.
type Anchors struct {
	// Environment is the environment the anchors belong to. It is empty only for a factory's initial set read
	// without one, which accepts no update.
	Environment string
	// Version is the version of the update that installed the anchors; 0 is the factory's initial set.
	Version uint64

	certs []*x509.Certificate
}

// NewAnchors returns the anchors certs of environment at version. Each certificate must be a self-signed CA
// certificate (ErrInvalidAnchor); there must be 1 to MaxAnchors of them, none twice, and an environment unless
// version is 0 (ErrMalformed).
func NewAnchors(environment string, version uint64, certs ...*x509.Certificate) (*Anchors, error) {
	if environment != "" && !envRule.MatchString(environment) {
		return nil, fmt.Errorf("%w: environment %q must be 1 to 63 lower-case letters, digits and hyphens", ErrMalformed, environment)
	}
	if environment == "" && version != 0 {
		return nil, fmt.Errorf("%w: anchors at version %d must name their environment", ErrMalformed, version)
	}
	if len(certs) == 0 || len(certs) > MaxAnchors {
		return nil, fmt.Errorf("%w: %d anchor certificates; hold 1 to %d", ErrMalformed, len(certs), MaxAnchors)
	}
	for i, c := range certs {
		if c == nil {
			return nil, fmt.Errorf("%w: anchor %d is nil", ErrMalformed, i+1)
		}
	}
	if err := checkAnchors(certs, "anchor"); err != nil {
		return nil, err
	}
	return &Anchors{Environment: environment, Version: version, certs: append([]*x509.Certificate(nil), certs...)}, nil
}

// checkAnchors requires each of certs to be a self-signed CA certificate, and none to be listed twice. what
// names them in errors ("update anchor").
func checkAnchors(certs []*x509.Certificate, what string) error {
	for i, c := range certs {
		// RFC 5280 section 6.1.1 (d): a trust anchor is a name and a key; Keyward's anchors are the roots'
		// self-signed certificates (RFC 5280 section 3.2), marked CA in basic constraints (section 4.2.1.9)
		// so crypto/x509 takes them as issuers.
		switch {
		case !c.BasicConstraintsValid || !c.IsCA:
			return fmt.Errorf("%w: %s %d (%s) is not a CA certificate (basic constraints cA is not true)", ErrInvalidAnchor, what, i+1, c.Subject)
		case !bytes.Equal(c.RawIssuer, c.RawSubject):
			return fmt.Errorf("%w: %s %d (%s) is issued by %s, not self-issued; list the root itself, and give link certificates as intermediates", ErrInvalidAnchor, what, i+1, c.Subject, c.Issuer)
		}
		if err := c.CheckSignatureFrom(c); err != nil {
			return fmt.Errorf("%w: %s %d (%s) is not self-signed: %v", ErrInvalidAnchor, what, i+1, c.Subject, err)
		}
		if _, err := algorithmOf(c.PublicKey); err != nil {
			return fmt.Errorf("%w: %s %d (%s): %v", ErrInvalidAnchor, what, i+1, c.Subject, err)
		}
		for j := range i {
			if bytes.Equal(certs[j].Raw, c.Raw) {
				return fmt.Errorf("%w: %s %d (%s) is listed twice", ErrMalformed, what, i+1, c.Subject)
			}
		}
	}
	return nil
}

// Certificates returns the anchor certificates, in the order the update or file listed them.
func (a *Anchors) Certificates() []*x509.Certificate {
	return append([]*x509.Certificate(nil), a.certs...)
}

// CertPool returns a pool of the anchors, for crypto/tls (Config.RootCAs) or crypto/x509.
func (a *Anchors) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range a.certs {
		p.AddCert(c)
	}
	return p
}

// Verify verifies leaf's chain under the anchors at time now (the zero time: the current time), with
// intermediates as untrusted certificates that may complete it: the issuing CA, and during a root overlap the
// link certificates (RFC 4210 section 4.4) that let a device holding only one root reach CAs under the other.
// usages are the extended key usages the leaf must allow; as in crypto/x509, none means
// x509.ExtKeyUsageServerAuth, and x509.ExtKeyUsageAny accepts any. It returns the chains crypto/x509 built.
func (a *Anchors) Verify(leaf *x509.Certificate, intermediates []*x509.Certificate, now time.Time, usages ...x509.ExtKeyUsage) ([][]*x509.Certificate, error) {
	if leaf == nil {
		return nil, errors.New("verify: no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: a.CertPool(), Intermediates: inter, CurrentTime: now, KeyUsages: usages})
	if err != nil {
		return nil, fmt.Errorf("verify %s under the %s anchors (version %d): %w", leaf.Subject, a.Environment, a.Version, err)
	}
	return chains, nil
}

// Apply verifies the signed trust-anchor update data against a at the device's time now (the zero time: the
// current time) and returns the anchors it installs. The checks, and the error each refusal wraps, are listed in
// the package documentation. a is never modified.
func (a *Anchors) Apply(data []byte, now time.Time) (*Anchors, error) {
	if now.IsZero() {
		now = time.Now()
	}
	msg, u, certs, err := decode(data)
	if err != nil {
		return nil, err
	}
	switch {
	case a.Environment == "":
		return nil, fmt.Errorf("%w: the held anchors name no environment (a factory set read without one); the update is for %q", ErrWrongEnvironment, u.Environment)
	case u.Environment != a.Environment:
		return nil, fmt.Errorf("%w: the update is for %q, this device holds %q anchors", ErrWrongEnvironment, u.Environment, a.Environment)
	case u.Version <= a.Version:
		return nil, fmt.Errorf("%w: the update is version %d and the held anchors are version %d; only a higher version is applied (a replay or a rollback)", ErrNotNewer, u.Version, a.Version)
	}
	if nb := time.Unix(u.NotBefore, 0); now.Before(nb.Add(-ClockSkew)) {
		return nil, fmt.Errorf("%w: version %d is valid from %s; the device clock reads %s", ErrNotYetValid, u.Version, unix(u.NotBefore), now.UTC().Format(time.RFC3339))
	}
	if na := time.Unix(u.NotAfter, 0); now.After(na.Add(ClockSkew)) {
		return nil, fmt.Errorf("%w: version %d was valid until %s; the device clock reads %s", ErrExpired, u.Version, unix(u.NotAfter), now.UTC().Format(time.RFC3339))
	}
	if err := a.checkSignatures(msg, u, certs); err != nil {
		return nil, err
	}
	return &Anchors{Environment: u.Environment, Version: u.Version, certs: certs}, nil
}

// signer is a key that may sign an update: a held anchor's or a listed one's.
type signer struct {
	cert   *x509.Certificate
	held   bool
	listed bool
	signed bool
}

// checkSignatures verifies every signature on msg and then requires one by a held anchor and one by each anchor
// the update introduces. Anchors are told apart by key (KeyID), so a root re-certified under the same key is
// not new.
func (a *Anchors) checkSignatures(msg *cose.SignMessage, u *Update, certs []*x509.Certificate) error {
	keys := map[string]*signer{}
	var order []string // listed anchors' key ids, in the update's order
	add := func(c *x509.Certificate, held bool) error {
		kid, err := KeyID(c.PublicKey)
		if err != nil {
			return fmt.Errorf("%w: anchor %s: %v", ErrInvalidAnchor, c.Subject, err)
		}
		s := keys[string(kid)]
		if s == nil {
			s = &signer{cert: c}
			keys[string(kid)] = s
		}
		if held {
			s.held = true
		} else if !s.listed {
			s.listed = true
			order = append(order, string(kid))
		}
		return nil
	}
	for _, c := range a.certs {
		if err := add(c, true); err != nil {
			return err
		}
	}
	for _, c := range certs {
		if err := add(c, false); err != nil {
			return err
		}
	}

	protected, err := msg.Headers.MarshalProtected()
	if err != nil {
		return fmt.Errorf("%w: protected header: %v", ErrMalformed, err)
	}
	for i, sig := range msg.Signatures {
		kid, alg, err := signatureHeader(sig)
		if err != nil {
			return fmt.Errorf("%w: signature %d: %v", ErrBadSignature, i+1, err)
		}
		s := keys[string(kid)]
		if s == nil {
			return fmt.Errorf("%w: signature %d is by key %s, which is neither a held anchor nor one the update lists", ErrBadSignature, i+1, short(kid))
		}
		if s.signed {
			return fmt.Errorf("%w: signature %d: key %s (%s) signs twice", ErrBadSignature, i+1, short(kid), s.cert.Subject)
		}
		want, err := algorithmOf(s.cert.PublicKey)
		if err != nil {
			return fmt.Errorf("%w: signature %d: %v", ErrBadSignature, i+1, err)
		}
		if alg != want {
			return fmt.Errorf("%w: signature %d by %s claims algorithm %s; its key signs with %s", ErrBadSignature, i+1, s.cert.Subject, alg, want)
		}
		v, err := cose.NewVerifier(want, s.cert.PublicKey)
		if err != nil {
			return fmt.Errorf("%w: signature %d by %s: %v", ErrBadSignature, i+1, s.cert.Subject, err)
		}
		if err := sig.Verify(v, protected, msg.Payload, nil); err != nil {
			return fmt.Errorf("%w: signature %d by %s (key %s): %v", ErrBadSignature, i+1, s.cert.Subject, short(kid), err)
		}
		s.signed = true
	}

	held := false
	for _, s := range keys {
		held = held || (s.held && s.signed)
	}
	if len(a.certs) == 0 {
		return fmt.Errorf("%w: this device holds no anchors to check version %d with", ErrNotSignedByHeld, u.Version)
	}
	if !held {
		return fmt.Errorf("%w: version %d carries no valid signature by any of the %d anchors this device holds (%s)", ErrNotSignedByHeld, u.Version, len(a.certs), subjects(a.certs))
	}
	for _, kid := range order {
		if s := keys[kid]; !s.held && !s.signed {
			return fmt.Errorf("%w: version %d introduces %s (key %s) but carries no signature by it; a new root must sign the update that installs it", ErrNotSignedByNew, u.Version, s.cert.Subject, short([]byte(kid)))
		}
	}
	return nil
}

// signatureHeader returns the key id and algorithm of sig's protected header, which must hold exactly those two
// parameters.
func signatureHeader(sig *cose.Signature) ([]byte, cose.Algorithm, error) {
	h := sig.Headers.Protected
	if len(h) != 2 {
		return nil, 0, fmt.Errorf("protected header has %d parameters; want exactly alg (1) and kid (4)", len(h))
	}
	kid, ok := h[cose.HeaderLabelKeyID].([]byte)
	if !ok || len(kid) != 32 {
		return nil, 0, errors.New("protected header has no 32-byte kid (4)")
	}
	alg, err := h.Algorithm()
	if err != nil {
		return nil, 0, fmt.Errorf("protected header alg (1): %v", err)
	}
	return kid, alg, nil
}

// decode reads a signed update: the COSE_Sign envelope, its content type and the payload, validated.
func decode(data []byte) (*cose.SignMessage, *Update, []*x509.Certificate, error) {
	if len(data) > MaxUpdateSize {
		return nil, nil, nil, fmt.Errorf("%w: update is %d bytes, limit %d", ErrMalformed, len(data), MaxUpdateSize)
	}
	var msg cose.SignMessage
	if err := msg.UnmarshalCBOR(data); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: update is not a COSE_Sign (tag 98): %v", ErrMalformed, err)
	}
	if n := len(msg.Signatures); n > MaxSignatures {
		return nil, nil, nil, fmt.Errorf("%w: update carries %d signatures, limit %d", ErrMalformed, n, MaxSignatures)
	}
	switch ct := msg.Headers.Protected[cose.HeaderLabelContentType].(type) {
	case string:
		if ct != ContentType {
			return nil, nil, nil, fmt.Errorf("%w: content type %q, want %q (a trust-anchor update)", ErrMalformed, ct, ContentType)
		}
	case nil:
		return nil, nil, nil, fmt.Errorf("%w: no content type in the protected header, want %q (a trust-anchor update)", ErrMalformed, ContentType)
	default:
		return nil, nil, nil, fmt.Errorf("%w: content type %v, want %q (a trust-anchor update)", ErrMalformed, ct, ContentType)
	}
	if len(msg.Headers.Protected) != 1 {
		return nil, nil, nil, fmt.Errorf("%w: protected header has %d parameters; want only the content type (3)", ErrMalformed, len(msg.Headers.Protected))
	}
	var u Update
	if err := unmarshalStrict(msg.Payload, &u); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: update payload: %v", ErrMalformed, err)
	}
	certs, err := u.certificates()
	if err != nil {
		return nil, nil, nil, err
	}
	return &msg, &u, certs, nil
}

// short abbreviates a key id for messages.
func short(kid []byte) string {
	if len(kid) > 8 {
		kid = kid[:8]
	}
	return hex.EncodeToString(kid)
}

func subjects(certs []*x509.Certificate) string {
	var b bytes.Buffer
	for i, c := range certs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(c.Subject.String())
	}
	return b.String()
}
