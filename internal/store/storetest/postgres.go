package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgres is the PostgreSQL that integration tests use when KEYWARD_TEST_POSTGRES is not set.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// IntegrationUnavailable ends a test that needs a service the machine does not offer: it skips with the
// reason, or fails when the environment variable KEYWARD_REQUIRE_INTEGRATION is 1 (as CI sets it), so an
// integration test never passes silently where it is required.
func IntegrationUnavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("KEYWARD_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("%s (KEYWARD_REQUIRE_INTEGRATION=1)", msg)
	}
	t.Skipf("%s (skipped; KEYWARD_REQUIRE_INTEGRATION=1 makes this a failure)", msg)
}

// PostgresDSN returns a DSN for the PostgreSQL named by KEYWARD_TEST_POSTGRES (DefaultPostgres if unset) whose
// search_path is a new, empty schema of its own, so that tests and test packages running in parallel never see
// each other's tables. The schema is dropped when the test ends. If the database is unreachable, the test is
// skipped, or failed under KEYWARD_REQUIRE_INTEGRATION=1.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("KEYWARD_TEST_POSTGRES")
	if base == "" {
		base = DefaultPostgres
	}
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatalf("KEYWARD_TEST_POSTGRES: %v", err)
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database) // never the password
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		IntegrationUnavailable(t, "PostgreSQL at %s is unreachable: %v; point KEYWARD_TEST_POSTGRES at a database the tests may create schemas in", where, err)
	}
	defer conn.Close(context.Background())

	suffix := make([]byte, 8)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	schema := "keyward_test_" + hex.EncodeToString(suffix)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema %s on %s: %v", schema, where, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Errorf("drop schema %s on %s: %v", schema, where, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s on %s: %v", schema, where, err)
		}
	})
	return withSearchPath(base, schema)
}

// withSearchPath adds a search_path run-time parameter to a URL or keyword/value DSN; pgx sends it in the
// startup message, so every connection of a pool starts in schema.
func withSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " search_path=" + schema
}
