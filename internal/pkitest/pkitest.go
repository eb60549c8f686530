package pkitest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// Key returns a new P-256 key, the algorithm of implant identities.
func Key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	return ECKey(t, elliptic.P256())
}

// ECKey returns a new ECDSA key on curve c.
func ECKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Ed25519Key returns a new Ed25519 key.
func Ed25519Key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// KeyOf returns a new key of kind: "P-256", "P-384", "P-521", "Ed25519" or "RSA-<bits>" (RSA-2048, RSA-3072).
func KeyOf(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	switch kind {
	case "P-256":
		return ECKey(t, elliptic.P256())
	case "P-384":
		return ECKey(t, elliptic.P384())
	case "P-521":
		return ECKey(t, elliptic.P521())
	case "Ed25519":
		return Ed25519Key(t)
	}
	var bits int
	for _, b := range []int{1024, 2048, 3072, 4096} {
		if kind == "RSA-"+itoa(b) {
			bits = b
		}
	}
	if bits == 0 {
		t.Fatalf("pkitest: unknown key kind %q", kind)
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// CSR returns a DER PKCS #10 request signed by key for common name cn and the given DNS names.
func CSR(t testing.TB, key crypto.Signer, cn string, dns ...string) []byte {
	t.Helper()
	return CSRFor(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns})
}

// CSRFor returns a DER PKCS #10 request for tmpl signed by key.
func CSRFor(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// CSRPEM returns CSR(t, key, cn) as PEM.
func CSRPEM(t testing.TB, key crypto.Signer, cn string) string {
	t.Helper()
	return string(PEM("CERTIFICATE REQUEST", CSR(t, key, cn)))
}

// PEM encodes der as one PEM block of type typ.
func PEM(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }

// Serial returns a random positive 16-byte serial number.
func Serial(t testing.TB) *big.Int {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[0] = b[0]&0x7f | 0x40
	return new(big.Int).SetBytes(b)
}

// CA is a certificate authority of a test: its certificate and key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewRoot returns a self-signed CA for cn with key (a new P-256 key if nil), valid from an hour ago for a
// day, allowed to sign certificates and CRLs, with a subject key identifier.
func NewRoot(t testing.TB, cn string, key crypto.Signer) *CA {
	t.Helper()
	if key == nil {
		key = Key(t)
	}
	tmpl := caTemplate(t, cn, key.Public())
	return &CA{Cert: create(t, tmpl, tmpl, key.Public(), key), Key: key}
}

// Sub returns a CA for cn with key (a new P-256 key if nil) signed by ca, path length 0.
func (ca *CA) Sub(t testing.TB, cn string, key crypto.Signer) *CA {
	t.Helper()
	if key == nil {
		key = Key(t)
	}
	tmpl := caTemplate(t, cn, key.Public())
	tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	return &CA{Cert: create(t, tmpl, ca.Cert, key.Public(), ca.Key), Key: key}
}

// Leaf signs tmpl for pub with ca; a zero serial or validity in tmpl gets a random serial and a day from now.
func (ca *CA) Leaf(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	c := *tmpl
	if c.SerialNumber == nil {
		c.SerialNumber = Serial(t)
	}
	if c.NotAfter.IsZero() {
		c.NotBefore, c.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	}
	return create(t, &c, ca.Cert, pub, ca.Key)
}

func caTemplate(t testing.TB, cn string, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	ski := sha256.Sum256(spki) // RFC 7093 method 1: the leftmost 160 bits
	return &x509.Certificate{SerialNumber: Serial(t), Subject: pkix.Name{CommonName: cn, Organization: []string{"Keyward Test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: ski[:20]}
}

func create(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Link returns a link certificate (RFC 4210 section 4.4) by which ca certifies other's subject and key, as a
// root rollover makes: NewWithOld (RFC 4210 4.4: the new key signed with the old) when ca is the old root and other the new one, OldWithNew the other way round.
// A relying party that holds only ca's certificate then reaches CAs under other with it as an intermediate.
func (ca *CA) Link(t testing.TB, other *CA) *x509.Certificate {
	t.Helper()
	tmpl := caTemplate(t, other.Cert.Subject.CommonName, other.Cert.PublicKey)
	tmpl.Subject = other.Cert.Subject
	tmpl.SubjectKeyId = other.Cert.SubjectKeyId
	return create(t, tmpl, ca.Cert, other.Cert.PublicKey, ca.Key)
}

// SelfSigned returns tmpl signed by key for its own public key; a zero serial or validity in tmpl gets a random
// serial and a day from now. It makes certificates that are self-signed but not CAs, for tests of what
// refuses them.
func SelfSigned(t testing.TB, tmpl *x509.Certificate, key crypto.Signer) *x509.Certificate {
	t.Helper()
	c := *tmpl
	if c.SerialNumber == nil {
		c.SerialNumber = Serial(t)
	}
	if c.NotAfter.IsZero() {
		c.NotBefore, c.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	}
	return create(t, &c, &c, key.Public(), key)
}
