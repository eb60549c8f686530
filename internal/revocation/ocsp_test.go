package revocation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

func testRequest(t testing.TB) []byte {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	req, err := ocsp.CreateRequest(c, c, &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// openSSLRequest is what 'openssl ocsp' sends: SHA-1 CertID and a 16-byte nonce in requestExtensions.
var openSSLRequest = []byte{0x30, 0x7a, 0x30, 0x78, 0x30, 0x51, 0x30, 0x4f, 0x30, 0x4d, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00,
	0x04, 0x14, 0x42, 0x4e, 0xf3, 0x36, 0x6d, 0x8b, 0x17, 0xe4, 0xf9, 0x86, 0x5e, 0xa7, 0x84, 0x9f, 0xe1, 0x02, 0xba, 0xd1, 0xa8, 0x2e,
	0x04, 0x14, 0x76, 0x6d, 0xe5, 0xce, 0x8a, 0xc6, 0x97, 0x41, 0xbe, 0xca, 0x8b, 0xe0, 0x16, 0x12, 0xd2, 0x43, 0xbd, 0xe4, 0x7d, 0x6f,
	0x02, 0x14, 0x12, 0x28, 0x03, 0x7c, 0x38, 0x2d, 0x5c, 0x9a, 0x55, 0x49, 0x65, 0x8b, 0xb5, 0xbc, 0x19, 0x48, 0xa9, 0xdb, 0x96, 0x23,
	0xa2, 0x23, 0x30, 0x21, 0x30, 0x1f, 0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02, 0x04, 0x12, 0x04, 0x10,
	0x11, 0xb2, 0x8e, 0x1c, 0x39, 0xa3, 0x5a, 0x15, 0xba, 0x25, 0x63, 0x70, 0x40, 0x61, 0x7b, 0xda}

func TestParseOCSPRequest(t *testing.T) {
	r, err := ParseOCSPRequest(openSSLRequest)
	if err != nil {
		t.Fatal(err)
	}
	if r.Hash != crypto.SHA1 || len(r.NonceExt) != 18 || r.Serial.Text(16) != "1228037c382d5c9a5549658bb5bc1948a9db9623" {
		t.Fatalf("parsed %+v", r)
	}
	r, err = ParseOCSPRequest(testRequest(t))
	if err != nil || r.Hash != crypto.SHA256 || r.NonceExt != nil || r.Serial.Int64() != 77 {
		t.Fatalf("x/crypto request: %+v %v", r, err)
	}
	long := append([]byte(nil), openSSLRequest...)
	for _, bad := range [][]byte{nil, {0x30, 0x00}, openSSLRequest[:50], append(long, 0)} {
		if _, err := ParseOCSPRequest(bad); !errors.Is(err, ErrMalformedRequest) {
			t.Fatalf("%x: %v", bad, err)
		}
	}
}

func FuzzParseOCSPRequest(f *testing.F) {
	f.Add(openSSLRequest)
	f.Add(testRequest(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseOCSPRequest(b)
		if err == nil && (r.Serial == nil || len(r.IssuerKeyHash) != r.Hash.Size() || len(r.NonceExt) > 2+maxNonce) {
			t.Fatalf("accepted an inconsistent request: %+v", r)
		}
	})
}
