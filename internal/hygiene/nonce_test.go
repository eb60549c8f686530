package hygiene

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/keyward/keyward/internal/pkitest"
)

// csrSigned makes a CSR for cn signed by s with alg and returns what the scan keeps of its signature.
func csrSigned(t *testing.T, s crypto.Signer, cn string, alg x509.SignatureAlgorithm) Signature {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, SignatureAlgorithm: alg}, s)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("the broken signer's CSR must still verify: %v", err)
	}
	sig, ok := CSRSignature(csr)
	if !ok {
		t.Fatalf("no signature kept for %v", alg)
	}
	return sig
}

func ecdsaSig(s Signature) ECDSASignature {
	return ECDSASignature{R: new(big.Int).SetBytes(s.R), S: new(big.Int).SetBytes(s.S), Digest: s.Digest}
}

// negated returns (r, n − s), the other signature that verifies for the same message.
func negated(s ECDSASignature, c elliptic.Curve) ECDSASignature {
	return ECDSASignature{R: s.R, S: new(big.Int).Sub(c.Params().N, s.S), Digest: s.Digest}
}

func TestRecoverNonceReuse(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		t.Run(curve.Params().Name, func(t *testing.T) {
			key := pkitest.ECKey(t, curve)
			broken := pkitest.NewNonceReusingSigner(t, key)
			a := ecdsaSig(csrSigned(t, broken, "PX1-000001", x509.ECDSAWithSHA256))
			b := ecdsaSig(csrSigned(t, broken, "PX1-000001-renewal", x509.ECDSAWithSHA256))
			c := ecdsaSig(csrSigned(t, broken, "PX1-000001", x509.ECDSAWithSHA512))
			if a.R.Cmp(b.R) != 0 {
				t.Fatal("the broken signer did not repeat r")
			}
			other := pkitest.ECKey(t, curve)
			honestA := ecdsaSig(csrSigned(t, key, "PX1-000001", x509.ECDSAWithSHA256))
			honestB := ecdsaSig(csrSigned(t, key, "PX1-000002", x509.ECDSAWithSHA256))
			for _, tc := range []struct {
				name string
				pub  *ecdsa.PublicKey
				x, y ECDSASignature
				want bool
			}{
				{"same k, two messages", &key.PublicKey, a, b, true},
				{"same k, two hash functions", &key.PublicKey, a, c, true},
				{"second s negated", &key.PublicKey, a, negated(b, curve), true},
				{"first s negated", &key.PublicKey, negated(a, curve), b, true},
				{"same k, another public key claimed", &other.PublicKey, a, b, false},
				{"one signature twice", &key.PublicKey, a, a, false},
				{"honest signatures", &key.PublicKey, honestA, honestB, false},
				{"different r", &key.PublicKey, a, honestB, false},
			} {
				if got := RecoverNonceReuse(tc.pub, tc.x, tc.y); got != tc.want {
					t.Errorf("%s: recovered %v, want %v", tc.name, got, tc.want)
				}
			}
		})
	}
}

func TestCSRSignature(t *testing.T) {
	for _, kind := range []string{"P-256", "P-384", "Ed25519", "RSA-2048"} {
		key := pkitest.KeyOf(t, kind)
		der := pkitest.CSR(t, key, "PX1-000009")
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		sig, ok := CSRSignature(csr)
		if kind == "RSA-2048" {
			if ok {
				t.Errorf("RSA: kept %+v, want nothing (PKCS #1 v1.5 has no nonce)", sig)
			}
			continue
		}
		if !ok || len(sig.R) == 0 || len(sig.S) == 0 || len(sig.Digest) == 0 {
			t.Errorf("%s: kept %+v", kind, sig)
			continue
		}
		if kind != "Ed25519" {
			var want struct{ R, S *big.Int }
			if _, err := asn1.Unmarshal(csr.Signature, &want); err != nil {
				t.Fatal(err)
			}
			if want.R.Cmp(new(big.Int).SetBytes(sig.R)) != 0 || want.S.Cmp(new(big.Int).SetBytes(sig.S)) != 0 {
				t.Errorf("%s: r, s not the signature's", kind)
			}
			if !ecdsa.VerifyASN1(key.Public().(*ecdsa.PublicKey), sig.Digest, csr.Signature) {
				t.Errorf("%s: the kept digest is not what the signature signs", kind)
			}
		}
	}
	if _, ok := CSRSignature(&x509.CertificateRequest{SignatureAlgorithm: x509.ECDSAWithSHA256, Signature: []byte{1, 2, 3}}); ok {
		t.Error("a malformed ECDSA signature was kept")
	}
}
