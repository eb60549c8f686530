package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/internal/store/sqlite"

	"github.com/keyward/keyward/internal/store/storetest"
)

func TestAuditSinkConformance(t *testing.T) {
	storetest.RunAuditSink(t, func(t *testing.T) storetest.Backend { return open(t) })
}

// TestMigrationMergedBelowHead: a database that reached a later version before migration 0011 was merged (its
// number reserved by a change made in parallel) still gets it on the next open.
func TestMigrationMergedBelowHead(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keyward.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ExecRaw(ctx, `DROP TABLE audit_sinks`); err != nil {
		t.Fatal(err)
	}
	if err := s.ExecRaw(ctx, `DELETE FROM schema_migrations WHERE version = 11`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ListAuditSinks(ctx); err != nil {
		t.Fatalf("migration 0011 not applied below the head: %v", err)
	}
}
