package sqlrecord

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Statements are written with PostgreSQL's numbered placeholders ($1, $2, ...). The SQLite driver binds a
// parameter named $N to the N-th argument too (the sqlite package's tests hold it to that), so one text serves
// both dialects, a placeholder may repeat, and nothing is rewritten at run time.

// Row is one result row: *sql.Row and *sql.Rows (database/sql) and pgx.Row and pgx.Rows all have this method.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result set as both drivers return it. Close differs between them (database/sql's returns an error,
// pgx's nothing), so it stays with the caller.
type Rows interface {
	Row
	Next() bool
	Err() error
}

// Dialect is how a backend represents the values whose stored form is not the Go type of the record field:
// times (SQLite: INTEGER unix microseconds; PostgreSQL: timestamptz) and, when scanning, booleans (SQLite: 0
// or 1). Records read back in UTC, and a NULL time as a nil pointer.
//
// A boolean is bound as a Go bool in both dialects (the SQLite driver stores it as 0 or 1), and strings,
// integers and byte slices are bound and scanned as they are, so Dialect has no methods for them.
//
// The Scan methods return a destination for Row.Scan that converts the column and stores it in the field. They
// are called for every column of every row, so they must not allocate: return a pointer conversion or a
// pointer-shaped value, not a new holder.
type Dialect interface {
	BindTime(t time.Time) any
	// BindNullTime binds nil as NULL.
	BindNullTime(t *time.Time) any
	ScanTime(t *time.Time) any
	// ScanNullTime stores nil for NULL, else a new time.
	ScanNullTime(t **time.Time) any
	ScanBool(b *bool) any
}

// Codec reads store records from rows and turns them into statement arguments in one dialect's representation.
// The dialect's methods are the Codec's, for the arguments of statements that bind a time alone. Its zero value
// is unusable; make one with NewCodec.
type Codec struct {
	Dialect
}

// NewCodec returns the Codec of dialect d.
func NewCodec(d Dialect) Codec { return Codec{Dialect: d} }

// Append scans every row of rows with scan and appends the records to dst. The caller closes rows.
func Append[T any](dst []T, rows Rows, scan func(Row) (T, error)) ([]T, error) {
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return dst, err
		}
		dst = append(dst, v)
	}
	return dst, rows.Err()
}

// Blob binds b, or NULL for an empty slice, so that a nil field reads back as nil.
func Blob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// NullString binds s, or NULL for "".
func NullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nonEmpty returns nil for an empty slice, so that a stored empty value reads back as nil.
func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// nullString scans a nullable text column into a string field, NULL as "". Both drivers call database/sql's
// Scanner interface, which this implements, for a destination type they do not know.
type nullString string

func (s *nullString) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*s = ""
	case string:
		*s = nullString(v)
	case []byte:
		*s = nullString(v)
	default:
		return fmt.Errorf("cannot scan %T into a string", src)
	}
	return nil
}

// where builds the WHERE clause of a filtered query: conditions joined by AND, each value bound to the next
// numbered placeholder.
type where struct {
	conds []string
	args  []any
}

// arg binds v and returns its placeholder.
func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

// cond adds the condition col op v.
func (w *where) cond(col, op string, v any) {
	w.conds = append(w.conds, col+" "+op+" "+w.arg(v))
}

// eq adds col = v unless v is empty: a zero field of a filter does not filter.
func (w *where) eq(col, v string) {
	if v != "" {
		w.cond(col, "=", v)
	}
}

// in adds col IN (vs...) unless vs is empty.
func (w *where) in(col string, vs []string) {
	if len(vs) == 0 {
		return
	}
	ps := make([]string, len(vs))
	for i, v := range vs {
		ps[i] = w.arg(v)
	}
	w.conds = append(w.conds, col+" IN ("+strings.Join(ps, ", ")+")")
}

// clause returns " WHERE ..." or "" if there is no condition.
func (w *where) clause() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}
