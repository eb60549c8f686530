package sqlite

import (
	"testing"
	"time"
)

func TestValues(t *testing.T) {
	want := time.Date(2026, 3, 4, 5, 6, 7, 8000, time.UTC)
	var (
		tm  time.Time
		ptr *time.Time
		b   bool
		d   dialect
	)
	if err := d.ScanTime(&tm).(*microsTime).Scan(d.BindTime(want)); err != nil || !tm.Equal(want) || tm.Location() != time.UTC {
		t.Errorf("time round trip: %v, %v", tm, err)
	}
	if err := d.ScanNullTime(&ptr).(nullMicrosTime).Scan(d.BindNullTime(&want)); err != nil || ptr == nil || !ptr.Equal(want) {
		t.Errorf("nullable time round trip: %v, %v", ptr, err)
	}
	if err := d.ScanNullTime(&ptr).(nullMicrosTime).Scan(d.BindNullTime(nil)); err != nil || ptr != nil {
		t.Errorf("NULL time: %v, %v", ptr, err)
	}
	if err := d.ScanBool(&b).(*intBool).Scan(int64(1)); err != nil || !b {
		t.Errorf("bool 1: %v, %v", b, err)
	}
	if err := d.ScanTime(&tm).(*microsTime).Scan(nil); err == nil {
		t.Error("scanned NULL into a NOT NULL time")
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
