package server

import (
	"bytes"
	"crypto/x509"
	"testing"

	"github.com/keyward/keyward/pkg/est"
)

// FuzzDecodeESTRequest feeds arbitrary content types, bodies and attestation headers to the EST request
// decoding: it must never panic, must accept only application/pkcs10, and whatever base64 it accepts must
// round-trip through the encoder the client uses.
func FuzzDecodeESTRequest(f *testing.F) {
	csr, _ := est.NewCSR(p256Key(f), "DEMO-00000001")
	f.Add("application/pkcs10", est.EncodeBase64(csr), "")
	f.Add("application/pkcs10; charset=utf-8", []byte("MA==\r\n"), "MA==, MA==")
	f.Add("application/json", []byte("{}"), "")
	f.Add("application/pkcs10", []byte(" M A = = "), ",,,,,")
	f.Add("", []byte{0xff, 0x00}, "!!")
	f.Fuzz(func(t *testing.T, ctype string, body []byte, attestation string) {
		der, err := decodePKCS10(ctype, body)
		if err == nil {
			if !bytes.Equal(der, mustDecode(t, est.EncodeBase64(der))) {
				t.Fatalf("decoded body does not round-trip")
			}
			_, _ = x509.ParseCertificateRequest(der)
		}
		chain, err := decodeAttestation(attestation)
		if err == nil && len(chain) > maxAttestationCerts {
			t.Fatalf("%d attestation certificates accepted", len(chain))
		}
	})
}

func mustDecode(t *testing.T, b []byte) []byte {
	d, err := est.DecodeBase64(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
