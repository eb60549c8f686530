package fleet_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/fleet"
	"github.com/keyward/keyward/internal/pkitest"
)

func leafDER(t testing.TB, ca *pkitest.CA, cn string) []byte {
	return ca.Leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}}, pkitest.Key(t).Public()).Raw
}

func TestParseCertFile(t *testing.T) {
	ca := pkitest.NewRoot(t, "Legacy device CA", pkitest.Key(t))
	a, b := leafDER(t, ca, "OLD-1"), leafDER(t, ca, "OLD-2")
	broken := append([]byte(nil), a...)
	broken[len(broken)/2] ^= 0xff // still a SEQUENCE of the right length; no longer a certificate
	truncatedPEM := pkitest.PEM("CERTIFICATE", b)
	truncatedPEM = truncatedPEM[:len(truncatedPEM)-20]
	for _, tc := range []struct {
		name    string
		data    []byte
		sources []string // of the certificates read
		bad     []string // sources of the malformed ones, then a fragment of the first reason
	}{
		{"one PEM", pkitest.PEM("CERTIFICATE", a), []string{"f#1"}, nil},
		{"PEM bundle with text", bytes.Join([][]byte{[]byte("subject=OLD-1\n"), pkitest.PEM("CERTIFICATE", a), []byte("junk\n"), pkitest.PEM("CERTIFICATE", b)}, nil), []string{"f#1", "f#2"}, nil},
		{"PEM bundle with a bad one", bytes.Join([][]byte{pkitest.PEM("CERTIFICATE", a), pkitest.PEM("CERTIFICATE", broken), pkitest.PEM("CERTIFICATE", b)}, nil), []string{"f#1", "f#3"}, []string{"f#2", "RFC 5280"}},
		{"PEM with a key block", bytes.Join([][]byte{pkitest.PEM("PRIVATE KEY", []byte{1}), pkitest.PEM("CERTIFICATE", a)}, nil), []string{"f#2"}, []string{"f#1", `"PRIVATE KEY"`}},
		{"PEM cut short", bytes.Join([][]byte{pkitest.PEM("CERTIFICATE", a), truncatedPEM}, nil), []string{"f#1"}, []string{"f#2", "does not decode"}},
		{"one DER", a, []string{"f#1"}, nil},
		{"concatenated DER", append(append([]byte(nil), a...), b...), []string{"f#1", "f#2"}, nil},
		{"DER with a bad one", bytes.Join([][]byte{a, broken, b}, nil), []string{"f#1", "f#3"}, []string{"f#2", "RFC 5280"}},
		{"DER with trailing garbage", append(append([]byte(nil), a...), 0x04, 0x01), []string{"f#1"}, []string{"f#2", "neither PEM nor"}},
		{"empty", nil, nil, []string{"f#1", "no certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certs, bad := fleet.ParseCertFile("f", tc.data)
			var got []string
			for _, c := range certs {
				got = append(got, c.Source)
			}
			if strings.Join(got, ",") != strings.Join(tc.sources, ",") {
				t.Errorf("read %v, want %v", got, tc.sources)
			}
			switch {
			case tc.bad == nil && len(bad) != 0:
				t.Errorf("malformed %+v, want none", bad)
			case tc.bad != nil && (len(bad) != 1 || bad[0].Source != tc.bad[0] || !strings.Contains(bad[0].Reason, tc.bad[1])):
				t.Errorf("malformed %+v, want %s (%s)", bad, tc.bad[0], tc.bad[1])
			}
		})
	}
}

// FuzzImportCerts: whatever a file holds, ParseCertFile neither panics nor returns a certificate that does not
// parse, and names every entry it returns or skips once.
func FuzzImportCerts(f *testing.F) {
	ca := pkitest.NewRoot(f, "Legacy device CA", pkitest.Key(f))
	a := leafDER(f, ca, "OLD-1")
	f.Add(a)
	f.Add(pkitest.PEM("CERTIFICATE", a))
	f.Add(append(pkitest.PEM("CERTIFICATE", a), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}})...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMII\n"))
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, bad := fleet.ParseCertFile("fuzz.pem", data)
		seen := map[string]bool{}
		for _, c := range certs {
			if _, err := x509.ParseCertificate(c.DER); err != nil {
				t.Fatalf("%s returned but does not parse: %v", c.Source, err)
			}
			if seen[c.Source] {
				t.Fatalf("%s named twice", c.Source)
			}
			seen[c.Source] = true
		}
		for _, m := range bad {
			if seen[m.Source] || m.Reason == "" || !strings.HasPrefix(m.Source, "fuzz.pem#") {
				t.Fatalf("malformed entry %+v", m)
			}
			seen[m.Source] = true
		}
		if len(certs)+len(bad) == 0 {
			t.Fatal("a file gave neither a certificate nor a malformed entry")
		}
	})
}
