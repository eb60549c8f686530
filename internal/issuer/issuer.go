package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Errors a caller must tell apart (with errors.Is). ErrLint is in lint.go.
var (
	// ErrTooLarge: the certificate could exceed the caller's MaxDERSize; nothing was signed.
	ErrTooLarge = errors.New("certificate too large")
	// ErrRedeemed: the *Prepared was already passed to Issue. Prepare again.
	ErrRedeemed = errors.New("issuance token already redeemed")
	// ErrBadSignature: the CA signer returned a signature that does not verify, or the assembled certificate
	// does not parse. The signer (HSM, keystore) is faulty; the certificate was not returned.
	ErrBadSignature = errors.New("CA signer produced an invalid certificate")
)

// Issuer signs certificates under one CA certificate. It is safe for concurrent use.
type Issuer struct {
	cert   *x509.Certificate
	signer crypto.Signer
	alg    sigAlg
	// lintParent is cert with the throwaway public key, so that x509.CreateCertificate accepts the throwaway
	// signer while writing cert's own subject (issuer name) and key identifier into the TBSCertificate.
	lintParent *x509.Certificate
	throwaway  crypto.Signer
	linter     *linter
}

// Option configures an Issuer.
type Option func(*options)

type options struct {
	ignoreLints []string
}

// IgnoreLints skips the named RFC 5280 lints for this issuer, for a deliberate and documented deviation. New
// fails if a name is not an RFC 5280 certificate lint, so a renamed lint does not silently come back.
func IgnoreLints(names ...string) Option {
	return func(o *options) { o.ignoreLints = append(o.ignoreLints, names...) }
}

// New returns an Issuer for the CA certificate cert whose private key signer holds. The certificate must be a
// CA (RFC 5280 4.2.1.9), allowed to sign certificates (4.2.1.3), and carry a subject key identifier, which
// becomes the authority key identifier of everything it issues (4.2.1.1). New generates the throwaway key
// used for linting; for an RSA CA that takes as long as generating any RSA key of that size.
func New(cert *x509.Certificate, signer crypto.Signer, opts ...Option) (*Issuer, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if cert == nil || signer == nil {
		return nil, errors.New("new issuer: certificate and signer are required")
	}
	name := cert.Subject.String()
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("new issuer %q: certificate is not a CA certificate (RFC 5280 4.2.1.9)", name)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("new issuer %q: certificate's key usage lacks keyCertSign (RFC 5280 4.2.1.3)", name)
	}
	if len(cert.SubjectKeyId) == 0 {
		return nil, fmt.Errorf("new issuer %q: certificate has no subject key identifier, needed for the authority key identifier of issued certificates (RFC 5280 4.2.1.1)", name)
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("new issuer %q: signer's public key does not match the certificate", name)
	}
	alg, err := sigAlgFor(cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("new issuer %q: %w", name, err)
	}
	throwaway, err := throwawayKey(cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("new issuer %q: throwaway key: %w", name, err)
	}
	base, err := rfc5280Linter()
	if err != nil {
		return nil, fmt.Errorf("new issuer %q: %w", name, err)
	}
	l, err := base.without(o.ignoreLints)
	if err != nil {
		return nil, fmt.Errorf("new issuer %q: %w", name, err)
	}
	parent := *cert
	parent.PublicKey = throwaway.Public()
	return &Issuer{cert: cert, signer: signer, alg: alg, lintParent: &parent, throwaway: throwaway, linter: l}, nil
}

// Certificate returns the CA certificate. The caller must not modify it.
func (i *Issuer) Certificate() *x509.Certificate { return i.cert }

// Prepared is a linted certificate awaiting its real signature: an issuance token that Issue redeems once.
type Prepared struct {
	issuer   *Issuer
	tbs      []byte
	algID    []byte
	lintDER  []byte
	warnings []Finding
	maxSize  int

	mu       sync.Mutex
	redeemed bool
}

// TBS returns a copy of the TBSCertificate bytes that were linted and that Issue will sign.
func (p *Prepared) TBS() []byte { return bytes.Clone(p.tbs) }

// Warnings returns the lint warnings (zlint status Warn) on the certificate. They do not stop issuance: a
// profile may deviate from a SHOULD on purpose (implant certificates omit the subject key identifier). The
// caller records them in the audit event of the issuance.
func (p *Prepared) Warnings() []Finding { return append([]Finding(nil), p.warnings...) }

// MaxSize returns the largest DER size the issued certificate can have: the linted TBSCertificate with the
// longest signature the CA's algorithm can produce (see MaxSignatureSize).
func (p *Prepared) MaxSize() int { return p.maxSize }

// PrepareOption configures one Prepare call.
type PrepareOption func(*prepareOptions)

type prepareOptions struct {
	maxDERSize int
}

// MaxDERSize refuses, with ErrTooLarge and before anything is signed, a certificate that could be longer
// than n bytes DER. The check uses the longest possible signature: an ECDSA signature's DER length varies
// (two INTEGERs, each one byte shorter when its top bits are zero, one byte longer when its top bit is set),
// so a P-256 certificate is checked as if its signature were the maximal 72 bytes, though it is usually
// 70 to 72.
func MaxDERSize(n int) PrepareOption {
	return func(o *prepareOptions) { o.maxDERSize = n }
}

// Prepare builds the certificate described by tmpl for pub, signed by a throwaway key with the CA's name and
// algorithm, checks its size and lints it. tmpl must carry its serial number (NewSerial); its signature
// algorithm, if set, must be the one the CA's key uses. Any Error or Fatal lint result refuses issuance with a
// *LintError naming the lints; Warn results are kept on the *Prepared.
func (i *Issuer) Prepare(tmpl *x509.Certificate, pub crypto.PublicKey, opts ...PrepareOption) (*Prepared, error) {
	var o prepareOptions
	for _, opt := range opts {
		opt(&o)
	}
	p, err := prepare(tmpl, pub, i.lintParent, i.throwaway, i.alg, i.linter, o.maxDERSize, false)
	if err != nil {
		return nil, fmt.Errorf("prepare certificate under %q: %w", i.cert.Subject.String(), err)
	}
	p.issuer = i
	return p, nil
}

func prepare(tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, throwaway crypto.Signer, alg sigAlg, l *linter, maxDERSize int, selfSigned bool) (*Prepared, error) {
	if tmpl == nil || pub == nil {
		return nil, errors.New("template and public key are required")
	}
	// RFC 5280 4.1.2.2: the issuer picks the serial. x509.CreateCertificate would invent one for a nil
	// serial; refuse instead, so the caller always knows (and stores) what it issued.
	if tmpl.SerialNumber == nil {
		return nil, errors.New("template has no serial number (use NewSerial)")
	}
	if tmpl.SignatureAlgorithm != x509.UnknownSignatureAlgorithm && tmpl.SignatureAlgorithm != alg.x509 {
		return nil, fmt.Errorf("template asks for signature algorithm %v; the CA key signs with %v", tmpl.SignatureAlgorithm, alg.x509)
	}
	t := *tmpl
	t.SignatureAlgorithm = alg.x509
	der, err := x509.CreateCertificate(rand.Reader, &t, parent, pub, throwaway)
	if err != nil {
		return nil, fmt.Errorf("build certificate: %w", err)
	}
	tbs, algID, err := splitCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("split throwaway certificate: %w", err)
	}
	maxSize := derLen(len(tbs) + len(algID) + derLen(1+alg.maxSig))
	if maxDERSize > 0 && maxSize > maxDERSize {
		return nil, fmt.Errorf("%w: the certificate is up to %d bytes DER (TBSCertificate %d bytes, of which the issuer name is %d; signature up to %d); the limit is %d",
			ErrTooLarge, maxSize, len(tbs), len(parent.RawSubject), alg.maxSig, maxDERSize)
	}
	warnings, err := l.check(der, selfSigned)
	if err != nil {
		return nil, err
	}
	return &Prepared{tbs: tbs, algID: algID, lintDER: der, warnings: warnings, maxSize: maxSize}, nil
}

// Issue signs p's TBSCertificate with the CA key and returns the DER certificate. p is redeemed even if
// signing fails; a second call returns ErrRedeemed. The certificate is parsed and its signature verified
// against the CA certificate before it is returned (ErrBadSignature otherwise), which catches a faulty
// signer or HSM.
func (i *Issuer) Issue(ctx context.Context, p *Prepared) ([]byte, error) {
	cert, err := i.IssueCertificate(ctx, p)
	if err != nil {
		return nil, err
	}
	return cert.Raw, nil
}

// IssueCertificate is Issue returning the certificate it parsed to verify the signature (Raw is the DER), so
// that a caller needing its fields does not parse it a second time.
func (i *Issuer) IssueCertificate(ctx context.Context, p *Prepared) (*x509.Certificate, error) {
	if p == nil {
		return nil, errors.New("issue: no prepared certificate")
	}
	if p.issuer != i {
		return nil, fmt.Errorf("issue under %q: the certificate was prepared by another issuer", i.cert.Subject.String())
	}
	cert, err := issue(ctx, p, i.signer, i.alg, i.cert)
	if err != nil {
		return nil, fmt.Errorf("issue under %q: %w", i.cert.Subject.String(), err)
	}
	return cert, nil
}

func issue(ctx context.Context, p *Prepared, signer crypto.Signer, alg sigAlg, parent *x509.Certificate) (*x509.Certificate, error) {
	p.mu.Lock()
	redeemed := p.redeemed
	p.redeemed = true
	p.mu.Unlock()
	if redeemed {
		return nil, ErrRedeemed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// crypto.SignMessage hashes for signers that expect a digest and passes the message to those that hash
	// themselves (Ed25519, crypto.MessageSigner HSM keys), as x509.CreateCertificate does.
	sig, err := crypto.SignMessage(signer, rand.Reader, p.tbs, alg.opts)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	// RFC 5280 4.1: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }.
	// signatureAlgorithm is copied from the throwaway certificate, whose algorithm is the CA key's, so it is
	// identical to the signature field inside the TBSCertificate, as 4.1.1.2 requires.
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(p.tbs)
		b.AddBytes(p.algID)
		b.AddASN1BitString(sig)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("assemble certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: the certificate does not parse: %v", ErrBadSignature, err)
	}
	if !bytes.Equal(cert.RawTBSCertificate, p.tbs) {
		return nil, fmt.Errorf("%w: the certificate's TBSCertificate differs from the linted one", ErrBadSignature)
	}
	if parent == nil {
		parent = cert // self-signed
	}
	if err := cert.CheckSignatureFrom(parent); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return cert, nil
}

// splitCertificate returns the TBSCertificate and signatureAlgorithm elements (with their tags) of a DER
// certificate.
func splitCertificate(der []byte) (tbs, algID []byte, err error) {
	s := cryptobyte.String(der)
	var cert, t, a cryptobyte.String
	if !s.ReadASN1(&cert, cbasn1.SEQUENCE) || !s.Empty() ||
		!cert.ReadASN1Element(&t, cbasn1.SEQUENCE) ||
		!cert.ReadASN1Element(&a, cbasn1.SEQUENCE) {
		return nil, nil, errors.New("malformed certificate")
	}
	return []byte(t), []byte(a), nil
}

// derLen is the length of a DER TLV whose content is n bytes (tag numbers below 31).
func derLen(n int) int {
	switch {
	case n < 0x80:
		return 2 + n
	case n < 0x100:
		return 3 + n
	case n < 0x10000:
		return 4 + n
	case n < 0x1000000:
		return 5 + n
	}
	return 6 + n
}

// sigAlg is how a CA key signs.
type sigAlg struct {
	x509   x509.SignatureAlgorithm
	opts   crypto.SignerOpts
	maxSig int // longest DER signature value, in bytes
}

// MaxSignatureSize returns the longest signature, in bytes, that a key like pub produces in a certificate:
// for ECDSA the DER Ecdsa-Sig-Value (RFC 5480 appendix A, two INTEGERs of up to the field size plus a sign
// octet: 72 bytes for P-256, 104 for P-384, 141 for P-521), 64 for Ed25519 (RFC 8410), the modulus size for
// RSA.
func MaxSignatureSize(pub crypto.PublicKey) (int, error) {
	a, err := sigAlgFor(pub)
	if err != nil {
		return 0, err
	}
	return a.maxSig, nil
}

// sigAlgFor picks the signature algorithm for a CA key, as x509.CreateCertificate would: SHA-256 with P-256
// and RSA, SHA-384 with P-384, SHA-512 with P-521 (RFC 5480 4 pairs hash and curve strength).
func sigAlgFor(pub crypto.PublicKey) (sigAlg, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		n := (k.Curve.Params().BitSize + 7) / 8
		maxSig := derLen(2 * derLen(n+1))
		switch k.Curve {
		case elliptic.P256():
			return sigAlg{x509.ECDSAWithSHA256, crypto.SHA256, maxSig}, nil
		case elliptic.P384():
			return sigAlg{x509.ECDSAWithSHA384, crypto.SHA384, maxSig}, nil
		case elliptic.P521():
			return sigAlg{x509.ECDSAWithSHA512, crypto.SHA512, maxSig}, nil
		}
		return sigAlg{}, fmt.Errorf("unsupported CA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return sigAlg{x509.PureEd25519, crypto.Hash(0), ed25519.SignatureSize}, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return sigAlg{}, fmt.Errorf("CA RSA key of %d bits is too short", k.N.BitLen())
		}
		return sigAlg{x509.SHA256WithRSA, crypto.SHA256, k.Size()}, nil
	}
	return sigAlg{}, fmt.Errorf("unsupported CA key type %T", pub)
}

// throwawayKey generates a key of the same type and size as pub, used only to sign certificates for linting.
func throwawayKey(pub crypto.PublicKey) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.GenerateKey(k.Curve, rand.Reader)
	case ed25519.PublicKey:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case *rsa.PublicKey:
		return rsa.GenerateKey(rand.Reader, k.N.BitLen())
	}
	return nil, fmt.Errorf("unsupported key type %T", pub)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
