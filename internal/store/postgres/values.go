package postgres

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// Times are timestamptz, whose microsecond precision is the one audit.Seal keeps; they read back in UTC.

// dialect is PostgreSQL's sqlrecord.Dialect. pgx binds time.Time and bool and scans bool itself; times are
// scanned through pgx's TimestamptzScanner, which hands over the decoded value without the reflection pgx uses
// for a **time.Time, and in UTC where pgx would return the local time zone.
type dialect struct{}

var codec = sqlrecord.NewCodec(dialect{})

func (dialect) BindTime(t time.Time) any       { return t }
func (dialect) BindNullTime(t *time.Time) any  { return t }
func (dialect) ScanTime(t *time.Time) any      { return (*utcTime)(t) }
func (dialect) ScanNullTime(t **time.Time) any { return nullUTCTime{t} }
func (dialect) ScanBool(b *bool) any           { return b }

var (
	_ pgtype.TimestamptzScanner = (*utcTime)(nil)
	_ pgtype.TimestamptzScanner = nullUTCTime{}
)

// utcTime scans a NOT NULL timestamptz into a time.Time field.
type utcTime time.Time

func (u *utcTime) ScanTimestamptz(v pgtype.Timestamptz) error {
	if !v.Valid {
		return errors.New("cannot scan NULL into *time.Time")
	}
	t, err := finite(v)
	if err != nil {
		return err
	}
	*u = utcTime(t)
	return nil
}

// nullUTCTime scans a nullable timestamptz into a *time.Time field. A struct of one pointer is stored in an
// interface without allocating.
type nullUTCTime struct{ p **time.Time }

func (n nullUTCTime) ScanTimestamptz(v pgtype.Timestamptz) error {
	if !v.Valid {
		*n.p = nil
		return nil
	}
	t, err := finite(v)
	if err != nil {
		return err
	}
	*n.p = &t
	return nil
}

// finite returns v's time in UTC, or the error pgx gives for an infinite timestamp, which Keyward never stores.
func finite(v pgtype.Timestamptz) (time.Time, error) {
	if v.InfinityModifier != pgtype.Finite {
		return time.Time{}, fmt.Errorf("cannot scan %v into *time.Time", v.InfinityModifier)
	}
	return v.Time.UTC(), nil
}
