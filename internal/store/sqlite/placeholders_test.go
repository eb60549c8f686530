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

func TestPositional(t *testing.T) {
	for _, tc := range []struct{ q, want string }{
		{`SELECT a FROM t WHERE b = $1 AND c > $2 LIMIT $3`, `SELECT a FROM t WHERE b = ? AND c > ? LIMIT ?`},
		{`INSERT INTO t (a, b) VALUES ($1, $2)`, `INSERT INTO t (a, b) VALUES (?, ?)`},
		{`SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`},
		{`UPDATE t SET a = $1, b = CASE WHEN $1 = $3 THEN $2 END`, `UPDATE t SET a = $1, b = CASE WHEN $1 = $3 THEN $2 END`}, // repeated
		{`UPDATE t SET a = $2 WHERE b = $1`, `UPDATE t SET a = $2 WHERE b = $1`},                                             // out of order
		{`SELECT $1, $3`, `SELECT $1, $3`}, // a gap
		{`SELECT $10`, `SELECT $10`},
	} {
		if got := positional(tc.q); got != tc.want {
			t.Errorf("positional(%q) = %q, want %q", tc.q, got, tc.want)
		}
	}
}
