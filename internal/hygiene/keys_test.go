package hygiene

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/pkitest"
)

// rawSPKI encodes a SubjectPublicKeyInfo by hand, for keys the standard library refuses to marshal.
func rawSPKI(t *testing.T, alg asn1.ObjectIdentifier, params any, key []byte) []byte {
	t.Helper()
	ai := pkix.AlgorithmIdentifier{Algorithm: alg}
	if params != nil {
		p, err := asn1.Marshal(params)
		if err != nil {
			t.Fatal(err)
		}
		ai.Parameters = asn1.RawValue{FullBytes: p}
	}
	der, err := asn1.Marshal(spki{Algorithm: ai, PublicKey: asn1.BitString{Bytes: key, BitLength: 8 * len(key)}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func marshal(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCheckSPKI(t *testing.T) {
	p256 := pkitest.ECKey(t, elliptic.P256())
	point, err := p256.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	offCurve := append([]byte(nil), point...)
	offCurve[len(offCurve)-1] ^= 1
	small := pkitest.KeyOf(t, "RSA-1024").(*rsa.PrivateKey)
	good := pkitest.KeyOf(t, "RSA-2048").(*rsa.PrivateKey)
	e3 := &rsa.PublicKey{N: good.N, E: 3}
	for _, tc := range []struct {
		name, alg, rule string
		der             []byte
	}{
		{"P-256", "ECDSA P-256", "", marshal(t, &p256.PublicKey)},
		{"P-384", "ECDSA P-384", "", marshal(t, pkitest.KeyOf(t, "P-384").Public())},
		{"Ed25519", "Ed25519", "", marshal(t, pkitest.KeyOf(t, "Ed25519").Public())},
		{"RSA-2048", "RSA-2048", "", marshal(t, &good.PublicKey)},
		{"RSA-1024", "RSA-1024", WeakSize, marshal(t, &small.PublicKey)},
		{"RSA e=3", "RSA-2048", WeakExponent, marshal(t, e3)},
		{"P-224", "ECDSA P-224", WeakCurve, marshal(t, &pkitest.ECKey(t, elliptic.P224()).PublicKey)},
		{"P-192", "ECDSA secp192r1 (P-192)", WeakCurve, rawSPKI(t, oidECPublicKey, asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 1}, make([]byte, 49))},
		{"unknown curve", "ECDSA 1.2.3.4", WeakCurve, rawSPKI(t, oidECPublicKey, asn1.ObjectIdentifier{1, 2, 3, 4}, point)},
		{"explicit parameters", "ECDSA explicit parameters", WeakCurve, rawSPKI(t, oidECPublicKey, []int{1, 2}, point)},
		{"P-256 point off the curve", "ECDSA P-256", WeakInvalid, rawSPKI(t, oidECPublicKey, asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}, offCurve)},
		{"DSA", "DSA", WeakAlgorithm, rawSPKI(t, oidDSA, nil, []byte{2, 1, 5})},
		{"unknown algorithm", "1.2.3.4.5", WeakAlgorithm, rawSPKI(t, asn1.ObjectIdentifier{1, 2, 3, 4, 5}, nil, []byte{1})},
		{"garbage", "unparsable", WeakInvalid, []byte{0x30, 0x03, 1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, weak := CheckSPKI(tc.der)
			if k.Algorithm != tc.alg {
				t.Errorf("algorithm %q, want %q", k.Algorithm, tc.alg)
			}
			switch {
			case tc.rule == "" && len(weak) != 0:
				t.Errorf("weaknesses %+v, want none", weak)
			case tc.rule != "" && (len(weak) != 1 || weak[0].Rule != tc.rule || weak[0].Detail == ""):
				t.Errorf("weaknesses %+v, want one of rule %s", weak, tc.rule)
			}
			if tc.rule == "" {
				if _, ok := k.Public.(*ecdsa.PublicKey); !ok && strings.HasPrefix(tc.alg, "ECDSA") {
					t.Errorf("key %T, want parsed", k.Public)
				}
			}
		})
	}
}

func TestCertificateSPKI(t *testing.T) {
	key := pkitest.Key(t)
	ca := pkitest.NewRoot(t, "Test root", key)
	leaf := ca.Leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: "PX1-1"}}, pkitest.KeyOf(t, "Ed25519").Public())
	got, err := CertificateSPKI(leaf.Raw)
	if err != nil || string(got) != string(leaf.RawSubjectPublicKeyInfo) {
		t.Fatalf("CertificateSPKI: %x, %v; want the certificate's", got, err)
	}
	for _, bad := range [][]byte{nil, {0x30, 0x00}, leaf.Raw[:len(leaf.Raw)-1], append(append([]byte(nil), leaf.Raw...), 0)} {
		if _, err := CertificateSPKI(bad); err == nil {
			t.Errorf("CertificateSPKI(%x...) accepted a malformed certificate", bad[:min(len(bad), 8)])
		}
	}
}

func FuzzCertificateSPKI(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 0x30, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		spki, err := CertificateSPKI(der)
		if err == nil {
			CheckSPKI(spki) // must not panic, whatever the key
		}
	})
}
