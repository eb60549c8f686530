package cli

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
	"github.com/keyward/keyward/internal/store/storeopen"
	"github.com/keyward/keyward/internal/store/storetest"
)

// auditBackend is a data directory on SQLite or PostgreSQL, with raw SQL to tamper with it behind Keyward's back.
type auditBackend struct {
	name string
	args func(dir string) []string // --data and --db flags
	exec func(t *testing.T, dir, query string, args ...any)
	db   string
}

func sqliteAuditBackend() auditBackend {
	return auditBackend{name: "SQLite",
		args: func(dir string) []string { return []string{"--data", dir} },
		exec: func(t *testing.T, dir, query string, args ...any) {
			t.Helper()
			db, err := sql.Open("sqlite", filepath.Join(dir, "keyward.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(query, args...); err != nil {
				t.Fatalf("tamper %q: %v", query, err)
			}
		}}
}

func postgresAuditBackend(t *testing.T) auditBackend {
	dsn := storetest.PostgresDSN(t)
	return auditBackend{name: "PostgreSQL", db: dsn,
		args: func(dir string) []string { return []string{"--data", dir, "--db", dsn} },
		exec: func(t *testing.T, _ string, query string, args ...any) {
			t.Helper()
			conn, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			// Numbered placeholders: the SQLite queries below use ? for their arguments.
			for i := 1; strings.Contains(query, "?"); i++ {
				query = strings.Replace(query, "?", fmt.Sprintf("$%d", i), 1)
			}
			if _, err := conn.Exec(context.Background(), query, args...); err != nil {
				t.Fatalf("tamper %q: %v", query, err)
			}
		}}
}

// auditFixture makes a log: two certificates issued, the second revoked for keyCompromise, a checkpoint stored
// and saved to a file, and the verifier key exported. It returns the data directory, the two serials, and the
// checkpoint and key files.
func auditFixture(t *testing.T, b auditBackend) (dir, good, revoked, cpFile, keyFile string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "data")
	mustKW(t, append([]string{"init"}, b.args(dir)...)...)
	var serials []string
	for _, cn := range []string{"DEMO-00000001", "DEMO-00000002"} {
		out := mustKW(t, append([]string{"cert", "issue", "--profile", "implant-identity",
			"--csr", writePEMTemp(t, cn+".csr", "CERTIFICATE REQUEST", newCSR(t, p256(t), cn))}, b.args(dir)...)...)
		serials = append(serials, parsePEMCerts(t, out)[0].SerialNumber.Text(16))
	}
	mustKW(t, append([]string{"cert", "revoke", serials[1], "--reason", "keyCompromise"}, b.args(dir)...)...)
	// Two operator tokens: one revoked, one that expires in 30 days.
	mustKW(t, append([]string{"token", "create", "--name", "gone", "--role", "auditor"}, b.args(dir)...)...)
	mustKW(t, append([]string{"token", "revoke", "gone", "--reason", "left the company"}, b.args(dir)...)...)
	mustKW(t, append([]string{"token", "create", "--name", "temp", "--role", "auditor", "--expires", "30d"}, b.args(dir)...)...)
	cpFile = filepath.Join(t.TempDir(), "checkpoint")
	keyFile = filepath.Join(t.TempDir(), "audit.pub")
	mustKW(t, append([]string{"audit", "checkpoint", "--out", cpFile}, b.args(dir)...)...)
	mustKW(t, append([]string{"audit", "pubkey", "--out", keyFile}, b.args(dir)...)...)
	if out := mustKW(t, append([]string{"audit", "verify", "--checkpoint", cpFile}, b.args(dir)...)...); !strings.Contains(out, "intact") {
		t.Fatalf("audit verify of an intact log: %s", out)
	}
	return dir, serials[0], serials[1], cpFile, keyFile
}

// rewriteEvent changes the actor of event seq and recomputes the hash chain from it to the head, as an
// attacker with write access to the database would: the chain alone then verifies.
func rewriteEvent(t *testing.T, b auditBackend, dir string, seq int64) {
	t.Helper()
	ctx := context.Background()
	s, err := storeopen.Open(ctx, b.db, dir)
	if err != nil {
		t.Fatal(err)
	}
	var events []*audit.Event
	if err := s.WalkAudit(ctx, 0, func(e *audit.Event) error { events = append(events, e); return nil }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	prevSeq, prev := int64(0), audit.GenesisHash
	for _, e := range events {
		if e.Seq == seq {
			e.Actor = "mallory"
		}
		audit.Seal(e, prevSeq, prev)
		prevSeq, prev = e.Seq, e.Hash
		if e.Seq >= seq {
			b.exec(t, dir, `UPDATE audit_events SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?`, e.Actor, e.PrevHash, e.Hash, e.Seq)
		}
	}
	if out, errs, code := kw(t, append([]string{"audit", "list"}, b.args(dir)...)...); code != 0 {
		t.Fatalf("audit list after the rewrite: %d %s %s", code, out, errs)
	}
}

// TestAuditTamper tampers with the database directly in each way an attacker with write access would, on
// SQLite and PostgreSQL, and requires 'audit verify' (with or without a checkpoint saved elsewhere) to exit 8
// naming what changed.
func TestAuditTamper(t *testing.T) {
	backends := []func(t *testing.T) auditBackend{
		func(*testing.T) auditBackend { return sqliteAuditBackend() },
		postgresAuditBackend,
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, b auditBackend, dir, good, revoked string)
		// withFile: verify with --checkpoint FILE; the stored checkpoints are deleted too, so only the copy
		// held elsewhere can tell.
		withFile bool
		want     func(good, revoked string) string
	}{
		{"truncate", func(t *testing.T, b auditBackend, dir, _, _ string) {
			b.exec(t, dir, `DELETE FROM audit_events WHERE seq > 5`)
		}, false, func(_, _ string) string { return "events after 5 were removed" }},
		{"truncate, checkpoints deleted", func(t *testing.T, b auditBackend, dir, _, _ string) {
			b.exec(t, dir, `DELETE FROM audit_events WHERE seq > 5`)
		}, true, func(_, _ string) string { return "events after 5 were removed" }},
		{"delete all", func(t *testing.T, b auditBackend, dir, _, _ string) {
			b.exec(t, dir, `DELETE FROM audit_events`)
		}, false, func(_, _ string) string { return "the audit log has 0 events" }},
		{"delete all, checkpoints deleted", func(t *testing.T, b auditBackend, dir, _, _ string) {
			b.exec(t, dir, `DELETE FROM audit_events`)
		}, true, func(_, _ string) string { return "the audit log has 0 events" }},
		{"rewrite and recompute", func(t *testing.T, b auditBackend, dir, _, _ string) {
			rewriteEvent(t, b, dir, 4)
		}, false, func(_, _ string) string { return "an event up to" }},
		{"rewrite and recompute, checkpoints deleted", func(t *testing.T, b auditBackend, dir, _, _ string) {
			rewriteEvent(t, b, dir, 4)
		}, true, func(_, _ string) string { return "does not extend the checkpoint" }},
		{"un-revoke", func(t *testing.T, b auditBackend, dir, _, revoked string) {
			b.exec(t, dir, `UPDATE certificates SET status = 'valid', revoked_at = NULL, revocation_reason = 0 WHERE serial = ?`, revoked)
		}, false, func(_, revoked string) string {
			return "certificate " + revoked + ": store says valid, log says revoked (keyCompromise)"
		}},
		{"edit subject", func(t *testing.T, b auditBackend, dir, good, _ string) {
			b.exec(t, dir, `UPDATE certificates SET subject = 'CN=DEMO-99999999' WHERE serial = ?`, good)
		}, false, func(good, _ string) string {
			return "certificate " + good + ": store says subject=CN=DEMO-99999999, log says subject=CN=DEMO-00000001"
		}},
	}
	cases = append(cases, []struct {
		name     string
		tamper   func(t *testing.T, b auditBackend, dir, good, revoked string)
		withFile bool
		want     func(good, revoked string) string
	}{
		{"un-revoke a token", func(t *testing.T, b auditBackend, dir, _, _ string) {
			b.exec(t, dir, `UPDATE tokens SET revoked_at = NULL, revocation_reason = '' WHERE name = 'gone'`)
		}, false, func(_, _ string) string { return "store says revoked=false, log says revoked=true" }},
		{"a token made to never expire", func(t *testing.T, b auditBackend, dir, _, _ string) {
			b.exec(t, dir, `UPDATE tokens SET expires_at = NULL WHERE name = 'temp'`)
		}, false, func(_, _ string) string { return "store says expires=never, log says expires=" }},
	}...)
	for _, open := range backends {
		b := open(t)
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					if b.db != "" {
						b = postgresAuditBackend(t) // a fresh schema per case
					}
					dir, good, revoked, cpFile, _ := auditFixture(t, b)
					tc.tamper(t, b, dir, good, revoked)
					args := append([]string{"audit", "verify"}, b.args(dir)...)
					if tc.withFile {
						b.exec(t, dir, `DELETE FROM audit_checkpoints`)
						args = append(args, "--checkpoint", cpFile)
					}
					out, errs, code := kw(t, args...)
					if want := tc.want(good, revoked); code != ExitAuditBroken || !strings.Contains(errs, want) {
						t.Fatalf("audit verify after %s: exit %d\nstdout %s\nstderr %s\nwant exit 8 and %q", tc.name, code, out, errs, want)
					}
				})
			}
		})
	}
}

// TestAuditProofOffline: a proof made with the data directory verifies with 'audit check-proof' where there is
// none, and a changed proof, another log's key or a malformed file are refused with the documented exit codes.
func TestAuditProofOffline(t *testing.T) {
	b := sqliteAuditBackend()
	dir, _, _, cpFile, keyFile := auditFixture(t, b)
	proofFile := filepath.Join(t.TempDir(), "proof.json")
	mustKW(t, append([]string{"audit", "prove", "--seq", "3", "--checkpoint", cpFile, "--out", proofFile}, b.args(dir)...)...)

	// The inspector's machine: the three files in a directory of their own, no data directory.
	inspector := t.TempDir()
	copyFile := func(src, name string) string {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(inspector, name)
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	p, c, k := copyFile(proofFile, "proof.json"), copyFile(cpFile, "checkpoint"), copyFile(keyFile, "audit.pub")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	out := mustKW(t, "audit", "check-proof", "--proof", p, "--checkpoint", c, "--key", k)
	if !strings.Contains(out, "event 3 (") {
		t.Fatalf("check-proof: %s", out)
	}
	mustKW(t, "audit", "check-proof", "--proof", p, "--key", k) // the checkpoint the proof carries

	proof, _ := os.ReadFile(p)
	otherDir, _, _, otherCP, otherKey := auditFixture(t, b)
	_ = otherDir
	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"altered event", []string{"--proof", writeTemp(t, "altered.json", []byte(strings.Replace(string(proof), `"actor": "cli:`, `"actor": "xli:`, 1))), "--checkpoint", c, "--key", k}, ExitAuditBroken, "altered"},
		{"another log's key", []string{"--proof", p, "--checkpoint", c, "--key", otherKey}, ExitAuditBroken, "another log"},
		{"another log's checkpoint", []string{"--proof", p, "--checkpoint", otherCP, "--key", k}, ExitAuditBroken, "another log"},
		{"truncated proof", []string{"--proof", writeTemp(t, "short.json", proof[:len(proof)/2]), "--checkpoint", c, "--key", k}, ExitBadRequest, "malformed"},
		{"truncated checkpoint", []string{"--proof", p, "--checkpoint", writeTemp(t, "short.cp", []byte("keyward.audit/x\n12\n")), "--key", k}, ExitBadRequest, "malformed"},
		{"malformed key", []string{"--proof", p, "--checkpoint", c, "--key", writeTemp(t, "bad.pub", []byte("nonsense"))}, ExitBadRequest, "audit key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := kw(t, append([]string{"audit", "check-proof"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errs, tt.contains) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errs, tt.code, tt.contains)
			}
		})
	}
}

// TestAuditKeyPKCS11: the audit key created on first need in a PKCS#11 token (SoftHSM2, CKM_EDDSA) signs
// checkpoints whose proofs verify offline, and is recorded in the key glossary as a pkcs11 Ed25519
// audit-signing key.
func TestAuditKeyPKCS11(t *testing.T) {
	token := pkcs11test.NewToken(t)
	t.Setenv("KEYWARD_PKCS11_PIN", pkcs11test.PIN) // the data directory remembers the token, without its PIN
	dir := initDir(t)
	cp := filepath.Join(t.TempDir(), "checkpoint")
	mustKW(t, "audit", "checkpoint", "--data", dir, "--keystore", token, "--out", cp)
	keyFile := filepath.Join(t.TempDir(), "audit.pub")
	mustKW(t, "audit", "pubkey", "--data", dir, "--out", keyFile)
	proof := filepath.Join(t.TempDir(), "proof.json")
	mustKW(t, "audit", "prove", "--data", dir, "--seq", "1", "--checkpoint", cp, "--out", proof)
	mustKW(t, "audit", "check-proof", "--proof", proof, "--key", keyFile)
	mustKW(t, "audit", "verify", "--data", dir, "--checkpoint", cp)
	keys := listJSON[map[string]any](t, "key", "list", "--data", dir, "--json")
	n := 0
	for _, k := range keys {
		if k["purpose"] == "audit-signing" {
			n++
			if k["location"] != "pkcs11" || k["algorithm"] != "ed25519" {
				t.Errorf("audit key %v", k)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d audit-signing keys, want 1", n)
	}
}
