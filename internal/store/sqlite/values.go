package sqlite

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// Times are stored as INTEGER unix microseconds in UTC: the precision audit.Seal truncates to, so every time
// reads back exactly as it was written once truncated to the microsecond. Booleans are stored as 0 and 1.

// dialect is SQLite's sqlrecord.Dialect. Its scan destinations implement sql.Scanner, which database/sql calls
// directly; for a plain *int64 it would convert through reflection.
type dialect struct{}

var codec = sqlrecord.NewCodec(dialect{})

func (dialect) BindTime(t time.Time) any { return t.UnixMicro() }

func (dialect) BindNullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func (dialect) ScanTime(t *time.Time) any      { return (*microsTime)(t) }
func (dialect) ScanNullTime(t **time.Time) any { return nullMicrosTime{t} }
func (dialect) ScanBool(b *bool) any           { return (*intBool)(b) }

var (
	_ sql.Scanner = (*microsTime)(nil)
	_ sql.Scanner = nullMicrosTime{}
	_ sql.Scanner = (*intBool)(nil)
)

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// microsTime scans an INTEGER of unix microseconds into a time.Time field.
type microsTime time.Time

func (m *microsTime) Scan(src any) error {
	v, ok := src.(int64)
	if !ok {
		return fmt.Errorf("cannot scan %T into a time: want INTEGER unix microseconds", src)
	}
	*m = microsTime(fromMicros(v))
	return nil
}

// nullMicrosTime scans a nullable INTEGER of unix microseconds into a *time.Time field. A struct of one pointer
// is stored in an interface without allocating.
type nullMicrosTime struct{ p **time.Time }

func (n nullMicrosTime) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*n.p = nil
	case int64:
		t := fromMicros(v)
		*n.p = &t
	default:
		return fmt.Errorf("cannot scan %T into a time: want INTEGER unix microseconds or NULL", src)
	}
	return nil
}

// intBool scans a 0/1 INTEGER into a bool field; any value but 0 is true.
type intBool bool

func (b *intBool) Scan(src any) error {
	v, ok := src.(int64)
	if !ok {
		return fmt.Errorf("cannot scan %T into a bool: want INTEGER 0 or 1", src)
	}
	*b = v != 0
	return nil
}
