package sqlite

import (
	"context"
	"path/filepath"
	"testing"
)

// TestNumberedPlaceholders pins down what the statements shared with PostgreSQL (internal/store/sqlrecord) rely
// on: modernc.org/sqlite binds a parameter named $N to the N-th argument, whatever the order in which the
// statement first mentions the parameters and however often it repeats one.
func TestNumberedPlaceholders(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "keyward.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var a, b, c string
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT $2, $1, $2, $3 + 1`, "one", "two", 41).Scan(&a, &b, &c, &n); err != nil {
		t.Fatal(err)
	}
	if a != "two" || b != "one" || c != "two" || n != 42 {
		t.Errorf("SELECT $2, $1, $2, $3 + 1 with (one, two, 41): got %s, %s, %s, %d", a, b, c, n)
	}
}
