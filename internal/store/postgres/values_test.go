package postgres

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestValues(t *testing.T) {
	local := time.Date(2026, 3, 4, 5, 6, 7, 8000, time.FixedZone("CET", 3600))
	var (
		tm  time.Time
		ptr *time.Time
		d   dialect
	)
	if err := d.ScanTime(&tm).(*utcTime).ScanTimestamptz(pgtype.Timestamptz{Time: local, Valid: true}); err != nil ||
		!tm.Equal(local) || tm.Location() != time.UTC {
		t.Errorf("time: %v, %v", tm, err)
	}
	if err := d.ScanNullTime(&ptr).(nullUTCTime).ScanTimestamptz(pgtype.Timestamptz{Time: local, Valid: true}); err != nil ||
		ptr == nil || !ptr.Equal(local) || ptr.Location() != time.UTC {
		t.Errorf("nullable time: %v, %v", ptr, err)
	}
	if err := d.ScanNullTime(&ptr).(nullUTCTime).ScanTimestamptz(pgtype.Timestamptz{}); err != nil || ptr != nil {
		t.Errorf("NULL time: %v, %v", ptr, err)
	}
	if err := d.ScanTime(&tm).(*utcTime).ScanTimestamptz(pgtype.Timestamptz{}); err == nil {
		t.Error("scanned NULL into a NOT NULL time")
	}
	if err := d.ScanTime(&tm).(*utcTime).ScanTimestamptz(pgtype.Timestamptz{Valid: true, InfinityModifier: pgtype.Infinity}); err == nil {
		t.Error("scanned infinity into a time")
	}
}

// TestScanDestinationsDoNotAllocate holds dialect to sqlrecord.Dialect's contract: its scan destinations are
// made for every time and boolean column of every row read.
func TestScanDestinationsDoNotAllocate(t *testing.T) {
	var (
		tm   time.Time
		ptr  *time.Time
		b    bool
		d    dialect
		sink any
	)
	if n := testing.AllocsPerRun(100, func() {
		sink = d.ScanTime(&tm)
		sink = d.ScanNullTime(&ptr)
		sink = d.ScanBool(&b)
	}); n != 0 {
		t.Errorf("scan destinations allocate %v times", n)
	}
	_ = sink
}
