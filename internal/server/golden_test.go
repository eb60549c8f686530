package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/ra"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run 'go test -run %s -update' to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestGoldenCSRAttrs pins the CsrAttrs encodings (RFC 7030 4.5.2) of each key algorithm a profile may allow.
func TestGoldenCSRAttrs(t *testing.T) {
	var out bytes.Buffer
	for _, algs := range [][]keystore.Algorithm{
		{keystore.ECDSAP256},
		{keystore.ECDSAP256, keystore.ECDSAP384, keystore.Ed25519},
		{keystore.RSA3072, keystore.RSA4096},
	} {
		der, err := csrAttrs(algs)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%v\n%x\n", algs, der)
	}
	golden(t, "csrattrs.golden", out.Bytes())
}

// TestGoldenErrors pins the status and the text of the API's and EST's refusals, which scripts and station
// software read: a change to either is a change to the interface.
func TestGoldenErrors(t *testing.T) {
	ts := start(t)
	officer, err := ts.n.RA.CreateToken(context.Background(), adminPrincipal, ra.TokenRequest{Name: "golden-officer", Role: "ca-officer"})
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := ts.n.RA.CreateToken(context.Background(), adminPrincipal, ra.TokenRequest{Name: "golden-auditor", Role: "auditor"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path, token, ctype, body string
	}{
		{"GET", "/api/v1/cas", "", "", ""},
		{"GET", "/api/v1/cas", "kwt_not-a-token", "", ""},
		{"POST", "/api/v1/certificates", auditor, "", `{"profile":"implant-identity","csr":"x"}`},
		{"POST", "/api/v1/certificates", officer, "", `{"profile":"implant-identity"`},
		{"POST", "/api/v1/certificates", officer, "", `{"profile":"implant-identity","csr":"x","extra":1}`},
		{"POST", "/api/v1/certificates", officer, "", `{"profile":"no-such-profile","csr":"MA=="}`},
		{"POST", "/api/v1/certificates", officer, "", `{"profile":"implant-identity","csr":"not base64!"}`},
		{"POST", "/api/v1/certificates", officer, "", `{"profile":"implant-identity","environment":"nowhere","csr":"MA=="}`},
		{"GET", "/api/v1/certificates?limit=0", officer, "", ""},
		{"GET", "/api/v1/certificates/zz", officer, "", ""},
		{"GET", "/api/v1/certificates/abcdef", officer, "", ""},
		{"POST", "/api/v1/certificates/abcdef/revoke", officer, "", `{}`},
		{"POST", "/api/v1/certificates/abcdef/revoke", officer, "", `{"reason":"because"}`},
		{"POST", "/api/v1/certificates/abcdef/revoke", officer, "", `{"reason":"keyCompromise"}`},
		{"POST", "/api/v1/certificates/abcdef/revoke", auditor, "", `{"reason":"keyCompromise"}`},
		{"POST", "/api/v1/revocations", officer, "", `{"reason":"superseded"}`},
		{"POST", "/api/v1/devices/dev/demo-implant/DEMO-1/decommission", officer, "", `{}`},
		{"POST", "/api/v1/devices/dev/demo-implant/DEMO-1/decommission", officer, "", `{"attested_by":"QA"}`},
		{"GET", "/.well-known/est/no-such-product/cacerts", "", "", ""},
		{"POST", "/.well-known/est/demo-implant/simpleenroll", "", "application/pkcs10", "MA=="},
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.pool}}}
	var out bytes.Buffer
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, ts.url+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		who := map[string]string{"": "anonymous", officer: "ca-officer", auditor: "auditor", "kwt_not-a-token": "bad token"}[tc.token]
		fmt.Fprintf(&out, "%s %s (%s) %s\n%d %s\n", tc.method, tc.path, who, tc.body, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	golden(t, "errors.golden", out.Bytes())
}

var adminPrincipal = ra.Principal{ID: "test", Role: ra.RoleAdmin}
