package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store/sqlite"
)

// TestTokenMigrationKeepsOldTokens upgrades a schema-8 database holding two tokens of one name: both keep
// working without expiry, the older keeps its name and the later one becomes NAME-ID, so names are unique.
func TestTokenMigrationKeepsOldTokens(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keyward.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
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
		if v > 8 {
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
