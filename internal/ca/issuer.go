package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"

	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// Issuer signs for one CA: its row, its certificate, and an internal/issuer Issuer whose signer is the CA's own
// guard, so every certificate goes through Prepare (lint) and Issue (sign the exact linted bytes, verify). It is
// safe for concurrent use.
type Issuer struct {
	c     *Custodian
	ca    *store.CA
	cert  *x509.Certificate
	guard *guard
	iss   *issuer.Issuer
	// statusOnly: a handle from StatusIssuer, which signs CRLs and certifies OCSP responders and filter signers
	// only: never a certificate for a subject.
	statusOnly bool
}

// ErrStatusOnly: the CA no longer issues (a superseded generation, a revoked CA); it only signs the status of
// what it issued.
var ErrStatusOnly = errors.New("CA signs only the status of what it issued")

// CA returns the CA's row as it was when the handle was opened. The caller must not modify it.
func (i *Issuer) CA() *store.CA { return i.ca }

// Certificate returns the CA certificate. The caller must not modify it.
func (i *Issuer) Certificate() *x509.Certificate { return i.cert }

// Usable reports nil while the CA may sign, else why it may not (wrapping ErrRetired).
func (i *Issuer) Usable() error {
	if why := i.guard.dead.Load(); why != nil {
		return fmt.Errorf("CA %s: %w: %s", i.ca.ID, ErrRetired, *why)
	}
	return nil
}

// Prepare builds and lints the certificate tmpl describes for pub (issuer.Issuer.Prepare).
func (i *Issuer) Prepare(tmpl *x509.Certificate, pub crypto.PublicKey, opts ...issuer.PrepareOption) (*issuer.Prepared, error) {
	if err := i.issues(); err != nil {
		return nil, err
	}
	return i.iss.Prepare(tmpl, pub, opts...)
}

// issues reports nil while the CA may issue certificates to subjects.
func (i *Issuer) issues() error {
	if i.statusOnly {
		return fmt.Errorf("CA %s: %w: it is %s", i.ca.ID, ErrStatusOnly, i.ca.Status)
	}
	return i.Usable()
}

// Issue signs a prepared certificate (issuer.Issuer.Issue): refused once the CA or its key is no longer usable.
func (i *Issuer) Issue(ctx context.Context, p *issuer.Prepared) ([]byte, error) {
	return i.iss.Issue(ctx, p)
}

// IssueCertificate is Issue returning the parsed certificate (issuer.Issuer.IssueCertificate).
func (i *Issuer) IssueCertificate(ctx context.Context, p *issuer.Prepared) (*x509.Certificate, error) {
	return i.iss.IssueCertificate(ctx, p)
}

// NewStamp returns a stamp of the linted certificate p, already issued as issued (issuer.Issuer.NewStamp); its
// signatures go through the CA's guard too, so that they stop when the CA or its key is retired. It is refused,
// as Prepare is, once the CA no longer issues.
func (i *Issuer) NewStamp(p *issuer.Prepared, issued []byte, cfg issuer.StampConfig) (*issuer.Stamp, error) {
	if err := i.issues(); err != nil {
		return nil, err
	}
	return i.iss.NewStamp(p, issued, cfg)
}

// IssueCA signs a subordinate CA certificate from tmpl (which must describe a CA and carry its serial) for pub,
// through the same Prepare and Issue steps as every certificate, and returns it with its lint warnings.
func (i *Issuer) IssueCA(ctx context.Context, tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, []issuer.Finding, error) {
	if err := i.issues(); err != nil {
		return nil, nil, err
	}
	return issuer.SignCA(ctx, tmpl, i.cert, i.guard, pub)
}

// IssueCredential generates a P-256 key pair for a credential this CA hands out and never keeps (a factory
// station's TLS client identity), issues tmpl for it through Prepare and Issue, and returns the certificate and
// the private key (PKCS #8 DER) for the caller to deliver. Keyward keeps only the public half. A template
// without a subject key identifier gets the key's (RFC 5280 4.2.1.2).
func (i *Issuer) IssueCredential(ctx context.Context, tmpl *x509.Certificate) (certDER, keyPKCS8 []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	t := *tmpl
	if len(t.SubjectKeyId) == 0 {
		if t.SubjectKeyId, err = profile.SubjectKeyID(&key.PublicKey); err != nil {
			return nil, nil, err
		}
	}
	p, err := i.Prepare(&t, &key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	if certDER, err = i.Issue(ctx, p); err != nil {
		return nil, nil, err
	}
	if keyPKCS8, err = x509.MarshalPKCS8PrivateKey(key); err != nil {
		return nil, nil, err
	}
	return certDER, keyPKCS8, nil
}

// IssuerOf returns a signing handle for a CA that is not recorded yet: one being created or imported, whose
// certificate is signed and whose key (for an import, still pending activation) must sign another certificate
// (its export signer) in the same change. The handle is not cached; ca.KeyURI names the key, ca.CertDER the
// certificate.
func (c *Custodian) IssuerOf(ctx context.Context, ca *store.CA) (*Issuer, error) {
	cert, err := x509.ParseCertificate(ca.CertDER)
	if err != nil {
		return nil, fmt.Errorf("CA %s certificate: %w", ca.ID, err)
	}
	g, err := c.signer(ctx, ca.KeyURI, PurposeOf(ca), true)
	if err != nil {
		return nil, fmt.Errorf("CA %s key: %w", ca.ID, err)
	}
	is, err := issuer.New(cert, g)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", ca.ID, err)
	}
	return &Issuer{c: c, ca: ca, cert: cert, guard: g, iss: is}, nil
}

// SelfSign creates a self-signed CA certificate from tmpl with the key at keyURI (purpose root-signing for a
// root, ca-signing for the service CA), linted before the signature (issuer.SelfSign).
func (c *Custodian) SelfSign(ctx context.Context, keyURI string, purpose keystore.Purpose, tmpl *x509.Certificate) ([]byte, []issuer.Finding, error) {
	g, err := c.signer(ctx, keyURI, purpose, false)
	if err != nil {
		return nil, nil, err
	}
	return issuer.SelfSign(ctx, tmpl, g)
}

// IssueUnder signs tmpl for pub with the key at keyURI (purpose) under parent, a CA certificate that is not a CA
// row of the hierarchy (a firmware root certifying a firmware-signing key), through Prepare and Issue.
func (c *Custodian) IssueUnder(ctx context.Context, parent *x509.Certificate, keyURI string, purpose keystore.Purpose, tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	g, err := c.signer(ctx, keyURI, purpose, false)
	if err != nil {
		return nil, err
	}
	is, err := issuer.New(parent, g)
	if err != nil {
		return nil, err
	}
	p, err := is.Prepare(tmpl, pub)
	if err != nil {
		return nil, err
	}
	return is.Issue(ctx, p)
}

// CreateCSR signs a PKCS #10 request for subject with the key at keyURI (purpose), which may still be pending
// activation: the request is how a CA under an offline root gets its certificate in a ceremony.
func (c *Custodian) CreateCSR(ctx context.Context, keyURI string, purpose keystore.Purpose, subject pkix.Name) ([]byte, error) {
	g, err := c.signer(ctx, keyURI, purpose, true)
	if err != nil {
		return nil, err
	}
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, g)
}

// TLSSigner returns the signer of the server's TLS key at uri (purpose tls-server), for the listener's
// certificate. It stops signing if the key is destroyed.
func (c *Custodian) TLSSigner(ctx context.Context, uri string) (crypto.Signer, error) {
	return c.signer(ctx, uri, keystore.PurposeTLSServer, false)
}

// SignExport signs the SHA-256 digest of a factory export with the site's export signer at uri (purpose
// audit-signing): ECDSA signs the digest (ASN.1 signature), Ed25519 the digest as its message.
func (c *Custodian) SignExport(ctx context.Context, uri string, digest []byte) ([]byte, error) {
	g, err := c.signer(ctx, uri, keystore.PurposeAuditSigning, false)
	if err != nil {
		return nil, err
	}
	if len(digest) != 32 {
		return nil, errors.New("export digest must be 32 bytes (SHA-256)")
	}
	var opts crypto.SignerOpts = crypto.SHA256
	if _, ok := g.Public().(ed25519.PublicKey); ok {
		opts = crypto.Hash(0) // pure Ed25519 signs the message itself
	}
	return g.Sign(rand.Reader, digest, opts)
}

// SignCheckpoint signs msg, the text of an audit log checkpoint (c2sp.org/tlog-checkpoint) or of an evidence
// pack's manifest (which the RA starts with a line no checkpoint has), with the Ed25519 audit-signing key at uri: a pure Ed25519 signature (RFC 8032), which signed notes require.
func (c *Custodian) SignCheckpoint(ctx context.Context, uri string, msg []byte) ([]byte, error) {
	g, err := c.signer(ctx, uri, keystore.PurposeAuditSigning, false)
	if err != nil {
		return nil, err
	}
	if _, ok := g.Public().(ed25519.PublicKey); !ok {
		return nil, fmt.Errorf("audit key %s is %T: checkpoints are signed with Ed25519 only", uri, g.Public())
	}
	return g.Sign(rand.Reader, msg, crypto.Hash(0))
}
