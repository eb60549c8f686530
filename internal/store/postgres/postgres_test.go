package postgres_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store/postgres"
	"github.com/keyward/keyward/internal/store/storetest"
)

func open(t testing.TB) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), storetest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.PostgresDSN(t) // skip (or fail) once, not in every subtest, if PostgreSQL is unreachable
	storetest.Run(t, func(t *testing.T) storetest.Backend { return open(t) })
}

// TestConcurrentOpen starts several nodes on one new database at once: the migration lock lets one migrate
// and the others find the schema migrated.
func TestConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.PostgresDSN(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := postgres.Open(ctx, dsn)
			if err == nil {
				_, err = s.ListCAs(ctx)
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Versions need not be contiguous (each feature takes its number), so compare with the migration files.
	files, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ExecRaw(ctx, fmt.Sprintf(`DO $$ BEGIN
		IF (SELECT count(*) FROM schema_migrations) <> %d OR (SELECT count(DISTINCT version) FROM schema_migrations) <> %d THEN
			RAISE EXCEPTION 'a migration was recorded twice or skipped';
		END IF;
	END $$`, len(files), len(files))); err != nil {
		t.Fatal(err)
	}
}

// TestNewerSchemaRefused checks that a database migrated by a newer Keyward is refused, not written to.
func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.PostgresDSN(t)
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ExecRaw(ctx, `INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := postgres.Open(ctx, dsn); err == nil {
		s.Close()
		t.Fatal("Open of a database with schema version 9999 succeeded")
	} else if !strings.Contains(err.Error(), "schema version 9999 is newer than this Keyward's") {
		t.Fatalf("Open: %v, want the schema version refused", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, "postgres://keyward:s3cret@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("Open of an unreachable database succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func BenchmarkInsertCertificateBatch(b *testing.B) {
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("batch=512/workers=%d", workers), func(b *testing.B) {
			s := open(b)
			defer s.Close()
			storetest.BenchInsertCertificates(b, s, 512, workers)
		})
	}
}

func BenchmarkGetCertificateDuringWrites(b *testing.B) {
	s := open(b)
	defer s.Close()
	storetest.BenchGetCertificate(b, s, 256)
}

func BenchmarkReads(b *testing.B) {
	s := open(b)
	defer s.Close()
	storetest.BenchReads(b, s, 20000)
}
