package profile

import (
	"bytes"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/pkitest"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCSR(t *testing.T) {
	key := pkitest.ECKey(t, elliptic.P256())
	valid := pkitest.CSRFor(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}})
	validPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: valid})
	badSig := bytes.Clone(valid)
	badSig[len(badSig)-1] ^= 0x01
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edCSR := pkitest.CSRFor(t, edKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "GW-ABCD"}})

	tests := []struct {
		name    string
		in      []byte
		want    string // "" = valid
		kind    error
		keyKind bool // also matches goodkey.ErrBadKey
	}{
		{name: "der", in: valid},
		{name: "pem", in: validPEM},
		{name: "pem with surrounding whitespace", in: append(append([]byte("\n  "), validPEM...), "\n\n"...)},
		{name: "new certificate request pem", in: pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: valid})},
		{name: "ed25519", in: edCSR},
		{name: "openssl p256 pem", in: readFixture(t, "p256-openssl.csr.pem")},
		{name: "empty", in: nil, want: "CSR is empty", kind: ErrBadCSR},
		{name: "too large", in: make([]byte, 70000), want: "CSR is 70000 bytes; the limit is 65536", kind: ErrBadCSR},
		{name: "truncated", in: valid[:len(valid)-7], want: "not a DER-encoded PKCS #10 request", kind: ErrBadCSR},
		{name: "truncated header", in: valid[:3], want: "not a DER-encoded", kind: ErrBadCSR},
		{name: "trailing data", in: append(bytes.Clone(valid), 0, 0, 0), want: "followed by 3 bytes of trailing data", kind: ErrBadCSR},
		{name: "pem trailing data", in: append(bytes.Clone(validPEM), "junk"...), want: "PEM block is followed by 4 bytes", kind: ErrBadCSR},
		{name: "pem two blocks", in: append(bytes.Clone(validPEM), validPEM...), want: "PEM block is followed by", kind: ErrBadCSR},
		{name: "pem wrong type", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: valid}), want: `CSR PEM block is "CERTIFICATE"`, kind: ErrBadCSR},
		{name: "pem broken", in: []byte("-----BEGIN CERTIFICATE REQUEST-----\n!!!\n"), want: "CSR PEM does not decode", kind: ErrBadCSR},
		{name: "pem headers", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: valid}), want: "headers", kind: ErrBadCSR},
		{name: "bad signature", in: badSig, want: "CSR signature does not verify: proof of possession failed", kind: ErrBadCSR},
		{name: "garbage", in: []byte("hello"), want: "not a DER-encoded", kind: ErrBadCSR},
		{name: "p192 fixture", in: readFixture(t, "p192.csr.der"), want: "CSR key uses an unsupported or weak curve (P-192): minimum is P-256", kind: ErrBadKey},
		{name: "secp256k1 fixture", in: readFixture(t, "secp256k1.csr.der"), want: "CSR key uses an unsupported or weak curve (secp256k1): minimum is P-256", kind: ErrBadKey},
		{name: "rsa1024 fixture", in: readFixture(t, "rsa1024.csr.der"), want: "CSR key is RSA-1024: minimum is 2048", kind: ErrBadKey},
		{name: "p224 generated", in: pkitest.CSRFor(t, pkitest.ECKey(t, elliptic.P224()), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}),
			want: "CSR key uses an unsupported or weak curve (P-224): minimum is P-256", kind: ErrBadKey},
		{name: "sha1 fixture", in: readFixture(t, "p256-sha1.csr.der"), want: "signature algorithm ECDSA-SHA1 is not supported", kind: ErrBadCSR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := ParseCSR(tc.in)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ParseCSR: %v", err)
				}
				if csr == nil || csr.PublicKey == nil {
					t.Fatal("ParseCSR returned no CSR")
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseCSR accepted the input; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %v is not %v", err, tc.kind)
			}
		})
	}
}

func TestProfileParseCSRNamesAllowedKeys(t *testing.T) {
	p := mustDefaults(t)["implant-identity"]
	_, err := p.ParseCSR(readFixture(t, "rsa1024.csr.der"))
	want := `CSR key is RSA-1024: minimum is 2048 (profile "implant-identity" allows ecdsa-p256)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v; want %q", err, want)
	}
	_, err = p.ParseCSR(readFixture(t, "p192.csr.der"))
	want = `CSR key uses an unsupported or weak curve (P-192): minimum is P-256 (profile "implant-identity" allows ecdsa-p256)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v; want %q", err, want)
	}
	// A goodkey refusal after parsing also matches goodkey.ErrBadKey.
	_, err = p.ParseCSR(pkitest.CSRFor(t, pkitest.ECKey(t, elliptic.P224()), &x509.CertificateRequest{}))
	if !errors.Is(err, ErrBadKey) {
		t.Errorf("P-224: err = %v, want ErrBadKey", err)
	}
}

func TestCheckRequestGoodkeyKind(t *testing.T) {
	p := mustDefaults(t)["implant-identity"]
	k := pkitest.ECKey(t, elliptic.P224())
	csr := &x509.CertificateRequest{PublicKey: &k.PublicKey, Subject: pkix.Name{CommonName: "DEMO-00000001"}}
	err := p.CheckRequest(&Request{CSR: csr, Role: "admin"})
	if !errors.Is(err, ErrBadKey) || !errors.Is(err, goodkey.ErrBadKey) {
		t.Errorf("err = %v; want ErrBadKey and goodkey.ErrBadKey", err)
	}
}

// FuzzParseCSR: any input yields a verified CSR or an *Error, never a panic.
func FuzzParseCSR(f *testing.F) {
	key := pkitest.ECKey(f, elliptic.P256())
	valid := pkitest.CSRFor(f, key, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "DEMO-00000001"},
		DNSNames: []string{"a.gateways.example.com"},
	})
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: valid}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: valid[:40]}))
	f.Add(append(bytes.Clone(valid), 0))
	for _, name := range []string{"p192.csr.der", "rsa1024.csr.der", "secp256k1.csr.der", "p256-sha1.csr.der", "p256-openssl.csr.pem"} {
		f.Add(readFixture(f, name))
	}
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T, not *Error", err, err)
			}
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("ParseCSR returned a CSR whose signature does not verify: %v", err)
		}
		if err := goodkey.Check(csr.PublicKey); err != nil {
			t.Fatalf("ParseCSR returned a CSR with a bad key: %v", err)
		}
	})
}
