package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// schemaAt returns the path of a new database at schema version, open as db, the migrations up to version
// applied as Open would have applied them.
func schemaAt(t *testing.T, version int) (string, *sql.DB) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keyward.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		v, _ := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if v > version {
			break
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, string(b)); err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, ?, 0)`, v, base); err != nil {
			t.Fatal(err)
		}
	}
	return path, db
}

// TestDeviceKeyMigration upgrades a schema-16 database whose glossary holds device keys in keys: the key of a
// certificate (issued: created with it) moves beside the certificate, a site's key recorded at another time
// and a station's key stay, and every key reads back as before.
func TestDeviceKeyMigration(t *testing.T) {
	ctx := context.Background()
	path, db := schemaAt(t, 16)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	spki := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO cas (id, environment, product_line, kind, key_uri, subject, not_before, not_after, status, created_at)
			VALUES ('dev/x', 'dev', 'x', 'issuing', 'soft:x', 'CN=x', 0, 0, 'active', 0)`, nil},
		{`INSERT INTO certificates (serial, issuer_id, profile, profile_version, subject, not_before, not_after, spki_sha256, der,
			status, revocation_reason, created_at) VALUES (?, 'dev/x', 'p', 1, ?, 0, 0, ?, x'30', 'valid', 0, ?)`, []any{"1a", "CN=A", spki(1), t0}},
		{`INSERT INTO certificates (serial, issuer_id, profile, profile_version, subject, not_before, not_after, spki_sha256, der,
			status, revocation_reason, created_at) VALUES (?, 'dev/x', 'p', 1, ?, 0, 0, ?, x'30', 'valid', 0, ?)`, []any{"1b", "CN=B", spki(2), t0 + 5}},
		{`INSERT INTO keys VALUES (?, 'device-identity', 'ECDSA-P256', 'device', 'destroyed', '1a', ?, ?, ?, ?)`,
			[]any{store.DeviceKeyURI(spki(1)), spki(1), t0, t0 + 9, t0 + 9}},
		{`INSERT INTO keys VALUES (?, 'device-identity', 'ECDSA-P256', 'device', 'active', '1b', ?, ?, ?, NULL)`,
			[]any{store.DeviceKeyURI(spki(2)), spki(2), t0 - 100, t0 - 100}},
		{`INSERT INTO keys VALUES (?, 'factory-station', 'ECDSA-P256', 'device', 'active', 'station:s1', ?, ?, ?, NULL)`,
			[]any{store.DeviceKeyURI(spki(3)), spki(3), t0, t0}},
	} {
		if _, err := db.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	var moved, kept int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM keys`).Scan(&kept); err != nil || kept != 3 {
		t.Fatalf("before: %d keys rows (%v), want 3", kept, err)
	}
	db.Close()
	us := func(v int64) time.Time { return time.UnixMicro(v).UTC() }
	destroyed := us(t0 + 9)
	want := []store.Key{
		{URI: store.DeviceKeyURI(spki(1)), Purpose: "device-identity", Algorithm: "ECDSA-P256", Location: "device", State: "destroyed",
			Owner: "1a", SPKISHA256: spki(1), CreatedAt: us(t0), StateChangedAt: us(t0 + 9), DestroyedAt: &destroyed},
		{URI: store.DeviceKeyURI(spki(2)), Purpose: "device-identity", Algorithm: "ECDSA-P256", Location: "device", State: "active",
			Owner: "1b", SPKISHA256: spki(2), CreatedAt: us(t0 - 100), StateChangedAt: us(t0 - 100)},
		{URI: store.DeviceKeyURI(spki(3)), Purpose: "factory-station", Algorithm: "ECDSA-P256", Location: "device", State: "active",
			Owner: "station:s1", SPKISHA256: spki(3), CreatedAt: us(t0), StateChangedAt: us(t0)},
	}
	if after := readKeys(t, path); !reflect.DeepEqual(after, want) {
		t.Fatalf("glossary after the upgrade:\n got  %+v\n want %+v", after, want)
	}
	db2, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if err := db2.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM device_keys), (SELECT count(*) FROM keys)`).Scan(&moved, &kept); err != nil {
		t.Fatal(err)
	}
	if moved != 1 || kept != 2 {
		t.Fatalf("after the upgrade: %d device_keys rows and %d keys rows, want 1 and 2", moved, kept)
	}
}

// readKeys reads the glossary of the database at path (upgrading it to the current schema).
func readKeys(t *testing.T, path string) []store.Key {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys, err := s.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]store.Key, len(keys))
	for i, k := range keys {
		out[i] = *k
	}
	return out
}

// TestTokenMigrationKeepsOldTokens upgrades a schema-8 database holding two tokens of one name: both keep
// working without expiry, the older keeps its name and the later one becomes NAME-ID, so names are unique.
func TestTokenMigrationKeepsOldTokens(t *testing.T) {
	ctx := context.Background()
	path, db := schemaAt(t, 8)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	for i, id := range []string{"bbbb", "aaaa"} {
		if _, err := db.ExecContext(ctx, `INSERT INTO tokens (id, name, role, hash, created_at) VALUES (?, 'ops', 'admin', ?, ?)`,
			id, []byte(id), t0+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	toks, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 2 || toks[0].Name != "ops" || toks[1].Name != "ops-aaaa" || toks[0].ExpiresAt != nil || toks[1].ExpiresAt != nil {
		for _, tk := range toks {
			t.Logf("%+v", tk)
		}
		t.Fatal("after the upgrade: want ops (the older) and ops-aaaa, neither expiring")
	}
}
