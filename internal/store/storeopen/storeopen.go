package storeopen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/postgres"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// DefaultFile is the name of the SQLite database in the data directory.
const DefaultFile = "keyward.db"

// Open opens the store named by dbURL:
//
//   - postgres://… or postgresql://…: PostgreSQL (several nodes), with the URL passed to pgx as it is;
//   - sqlite:PATH (also sqlite://PATH and sqlite:///ABSOLUTE/PATH): the SQLite file at PATH;
//   - empty: the SQLite file DefaultFile in dataDir, which is created (mode 0700) if it does not exist.
func Open(ctx context.Context, dbURL, dataDir string) (store.Store, error) {
	switch {
	case dbURL == "":
		if dataDir == "" {
			return nil, errors.New("open store: no database URL and no data directory: set one of them")
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("open store: create data directory: %w", err)
		}
		return sqlite.Open(ctx, filepath.Join(dataDir, DefaultFile))
	case strings.HasPrefix(dbURL, "postgres://") || strings.HasPrefix(dbURL, "postgresql://"):
		return postgres.Open(ctx, dbURL)
	case strings.HasPrefix(dbURL, "sqlite:"):
		path := strings.TrimPrefix(dbURL, "sqlite:")
		if rest, ok := strings.CutPrefix(path, "//"); ok {
			path = rest // sqlite://rel.db, sqlite:///abs.db
		}
		if path == "" {
			return nil, fmt.Errorf("open store: database URL %q names no file: use sqlite:PATH", dbURL)
		}
		return sqlite.Open(ctx, path)
	default:
		// Name only the scheme: the rest of a URL may hold a password.
		scheme, _, _ := strings.Cut(dbURL, ":")
		return nil, fmt.Errorf("open store: unsupported database URL scheme %q: use postgres://…, postgresql://… or sqlite:PATH", scheme)
	}
}
