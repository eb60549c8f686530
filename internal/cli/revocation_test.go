package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRevocationCLI(t *testing.T) {
	dir := initDir(t)
	var serials []string
	for i, cn := range []string{"DEMO-00000101", "DEMO-00000102", "DEMO-00000103"} {
		csr := writePEMTemp(t, "c.csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), cn))
		var c certJSON
		if err := json.Unmarshal([]byte(mustKW(t, "cert", "issue", "--data", dir, "--profile", "implant-identity", "--csr", csr, "--json")), &c); err != nil {
			t.Fatal(err)
		}
		serials = append(serials, c.Serial)
		_ = i
	}
	// Unknown serial, bad reason, missing reason: exit codes 5, 3, 2.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cert", "revoke", "ffff", "--reason", "keyCompromise"}, ExitNotFound, "no certificate with serial ffff"},
		{[]string{"cert", "revoke", serials[0], "--reason", "stolen"}, ExitBadRequest, "not an RFC 5280 CRLReason"},
		{[]string{"cert", "revoke", serials[0]}, ExitUsage, "--reason is required"},
		{[]string{"cert", "revoke", "--reason", "superseded"}, ExitBadRequest, "needs a selector"},
		{[]string{"cert", "unhold", serials[0]}, ExitConflict, "not on certificateHold"},
	} {
		_, errs, code := kw(t, append(tc.args, "--data", dir)...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Fatalf("%v: exit %d %s; want %d with %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	inv := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	mustKW(t, "cert", "revoke", serials[0], "--reason", "keyCompromise", "--invalidity-date", inv, "--data", dir)
	_, errs, code := kw(t, "cert", "revoke", serials[0], "--reason", "keyCompromise", "--data", dir)
	if code != ExitConflict || !strings.Contains(errs, "already revoked") || !strings.Contains(errs, "nothing changed") {
		t.Fatalf("revoke twice: exit %d %s", code, errs)
	}
	mustKW(t, "cert", "revoke", serials[1], "--reason", "certificateHold", "--data", dir)
	mustKW(t, "cert", "unhold", serials[1], "--data", dir)
	// Bulk: dry run counts, then revokes what is left (the two valid ones).
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	to := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	out := mustKW(t, "cert", "revoke", "--issued-between", from, to, "--profile", "implant-identity", "--reason", "cessationOfOperation", "--dry-run", "--data", dir)
	if !strings.Contains(out, "matched 3 certificates: would revoke 2, 1 already revoked") {
		t.Fatalf("dry run: %s", out)
	}
	if c := lastEvent(t, dir); c.Action != "cert.unhold" {
		t.Fatalf("a dry run wrote the audit trail: %+v", c)
	}
	// Revoke only serials[2] in bulk by subject, leaving serials[1] valid for the filter check.
	out = mustKW(t, "cert", "revoke", "--subject", "CN=DEMO-00000103", "--reason", "cessationOfOperation", "--data", dir)
	if !strings.Contains(out, "revoked 1") {
		t.Fatalf("bulk: %s", out)
	}
	// Filter: build, check revoked and valid serials against the dev root.
	kwf := filepath.Join(t.TempDir(), "filter.kwf")
	out = mustKW(t, "revocation", "filter", "--env", "dev", "--product", "demo-implant", "--out", kwf, "--data", dir)
	if !strings.Contains(out, "3 certificates, 2 revoked") {
		t.Fatalf("filter: %s", out)
	}
	root := writeTemp(t, "root.pem", []byte(mustKW(t, "ca", "export", "--env", "dev", "--data", dir)))
	// Exit 0 answers "not revoked", exit 9 "revoked", in text and JSON alike.
	for s, want := range map[string]struct {
		out  string
		code int
	}{serials[0]: {": revoked", ExitRevoked}, serials[1]: {": not revoked", ExitOK}, serials[2]: {": revoked", ExitRevoked}} {
		out, errs, code := kw(t, "revocation", "check", "--filter", kwf, "--trust", root, "--serial", s)
		if !strings.Contains(out, want.out) || code != want.code {
			t.Fatalf("check %s: exit %d, %s %s; want %q and exit %d", s, code, out, errs, want.out, want.code)
		}
		out, _, code = kw(t, "revocation", "check", "--filter", kwf, "--trust", root, "--serial", s, "--json")
		if code != want.code || strings.Contains(out, `"revoked": true`) != (want.code == ExitRevoked) {
			t.Fatalf("check %s --json: exit %d, %s", s, code, out)
		}
	}
	// Another environment, a truncated filter: refused with exit 3.
	if _, errs, code := kw(t, "revocation", "check", "--filter", kwf, "--trust", root, "--serial", serials[0], "--env", "production"); code != ExitBadRequest || !strings.Contains(errs, "another environment") {
		t.Fatalf("other env: %d %s", code, errs)
	}
	data, _ := os.ReadFile(kwf)
	short := writeTemp(t, "short.kwf", data[:len(data)-10])
	if _, errs, code := kw(t, "revocation", "check", "--filter", short, "--trust", root, "--serial", serials[0]); code != ExitBadRequest || !strings.Contains(errs, "truncated") {
		t.Fatalf("truncated: %d %s", code, errs)
	}
	// Delta from v1 after releasing nothing and revoking serials[1].
	mustKW(t, "cert", "revoke", serials[1], "--reason", "superseded", "--data", dir)
	delta := filepath.Join(t.TempDir(), "delta.kwf")
	out = mustKW(t, "revocation", "filter", "--env", "dev", "--product", "demo-implant", "--delta-from", "1", "--out", delta, "--data", dir)
	if !strings.Contains(out, "1 corrections") {
		t.Fatalf("delta: %s", out)
	}
	if out, _, code := kw(t, "revocation", "check", "--filter", kwf, "--delta", delta, "--trust", root, "--serial", serials[1]); !strings.Contains(out, ": revoked") || code != ExitRevoked {
		t.Fatalf("check with delta: exit %d %s", code, out)
	}
	// CRL publication through the CLI, and the audit chain intact.
	crl := filepath.Join(t.TempDir(), "ca.crl")
	if out := mustKW(t, "revocation", "crl", "--ca", "dev/demo-implant", "--out", crl, "--data", dir); !strings.Contains(out, "3 entries") {
		t.Fatalf("crl: %s", out)
	}
	mustKW(t, "audit", "verify", "--data", dir)
}
