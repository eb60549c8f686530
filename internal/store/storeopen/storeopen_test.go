package storeopen_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/store/postgres"
	"github.com/keyward/keyward/internal/store/sqlite"
	"github.com/keyward/keyward/internal/store/storeopen"
	"github.com/keyward/keyward/internal/store/storetest"
)

func TestOpenSQLite(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, url, dataDir, file string
	}{
		{"default", "", filepath.Join(dir, "data"), filepath.Join(dir, "data", storeopen.DefaultFile)},
		{"path", "sqlite:" + filepath.Join(dir, "a.db"), "", filepath.Join(dir, "a.db")},
		{"url", "sqlite://" + filepath.Join(dir, "b.db"), "", filepath.Join(dir, "b.db")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := storeopen.Open(context.Background(), tc.url, tc.dataDir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, ok := s.(*sqlite.Store); !ok {
				t.Fatalf("Open(%q) returned %T, want *sqlite.Store", tc.url, s)
			}
			if _, err := os.Stat(tc.file); err != nil {
				t.Fatalf("database file: %v", err)
			}
		})
	}
}

func TestOpenPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	s, err := storeopen.Open(context.Background(), dsn, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*postgres.Store); !ok {
		t.Fatalf("Open returned %T, want *postgres.Store", s)
	}
	if _, err := s.ListCAs(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefuses(t *testing.T) {
	for _, tc := range []struct{ url, dataDir, want string }{
		{"", "", "no database URL and no data directory"},
		{"mysql://root:s3cret@db/keyward", "", `unsupported database URL scheme "mysql"`},
		{"sqlite:", "", "names no file"},
	} {
		_, err := storeopen.Open(context.Background(), tc.url, tc.dataDir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q, %q): got %v, want an error containing %q", tc.url, tc.dataDir, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q): error leaks the password: %v", tc.url, err)
		}
	}
}
