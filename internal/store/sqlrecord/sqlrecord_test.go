package sqlrecord

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// plain is a Dialect that binds and scans every value as it is.
type plain struct{}

func (plain) BindTime(t time.Time) any       { return t }
func (plain) BindNullTime(t *time.Time) any  { return t }
func (plain) ScanTime(t *time.Time) any      { return t }
func (plain) ScanNullTime(t **time.Time) any { return t }
func (plain) ScanBool(b *bool) any           { return b }

var errCounted = errors.New("counted")

// countRow records how many destinations a scan passes.
type countRow struct{ n int }

func (r *countRow) Scan(dest ...any) error {
	r.n = len(dest)
	return errCounted
}

// columnNames splits a column list at its top-level commas (COALESCE(a, b) is one column).
func columnNames(list string) []string {
	var (
		out   []string
		depth int
		start int
	)
	for i, c := range list {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(list[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(list[start:]))
}

// TestColumnsMatch checks, for every record, that its column list, its Scan function's destinations and its
// Args function's values have the same length: the one place where a column added to one and not the others
// would otherwise surface only as a driver error, or as values bound to the wrong columns.
func TestColumnsMatch(t *testing.T) {
	c := NewCodec(plain{})
	scan := func(f func(Row) error) int {
		var r countRow
		if err := f(&r); !errors.Is(err, errCounted) {
			t.Fatalf("scan: %v", err)
		}
		return r.n
	}
	for _, tc := range []struct {
		name    string
		columns string
		scan    func(Row) error
		args    []any // nil: the record is never written through this list
	}{
		{"CA", CAColumns, func(r Row) error { _, err := c.ScanCA(r); return err }, c.CAArgs(&store.CA{})},
		{"Key", KeyColumns, func(r Row) error { _, err := c.ScanKey(r); return err }, c.KeyArgs(&store.Key{})},
		{"KDK", KDKColumns, func(r Row) error { _, err := c.ScanKDK(r); return err }, c.KDKArgs(&store.KDK{})},
		{"Certificate", CertificateColumns, func(r Row) error { _, err := c.ScanCertificate(r); return err }, c.AppendCertificateArgs(nil, &store.Certificate{})},
		{"Token", TokenColumns, func(r Row) error { _, err := c.ScanToken(r); return err }, c.TokenArgs(&store.Token{})},
		{"Event", AuditColumns, func(r Row) error { _, err := c.ScanEvent(r); return err }, c.AppendEventArgs(nil, &audit.Event{}, nil)},
		{"Change", ChangeColumns, func(r Row) error { _, err := ScanChange(r); return err }, nil},
		{"Station", StationColumns, func(r Row) error { _, err := c.ScanStation(r); return err }, c.StationArgs(&store.Station{})},
		{"Device", DeviceColumns, func(r Row) error { _, err := c.ScanDevice(r); return err }, c.DeviceArgs(&store.Device{})},
		{"RevocationEntry", RevocationEntryColumns, func(r Row) error { _, err := c.ScanRevocationEntry(r); return err }, nil},
		{"CRLEntry", CRLEntryColumns, func(r Row) error { return c.ScanCRLEntry(r, &store.RevocationEntry{}) }, nil},
		{"CertStatus", CertStatusColumns, func(r Row) error { _, err := c.ScanCertStatus(r); return err }, nil},
		{"CRL", CRLColumns, func(r Row) error { _, err := c.ScanCRL(r); return err }, c.CRLArgs(&store.PublishedCRL{})},
		{"RevocationSigner", RevocationSignerColumns, func(r Row) error { _, err := c.ScanRevocationSigner(r); return err }, c.RevocationSignerArgs(&store.RevocationSigner{})},
		{"Filter", FilterColumns, func(r Row) error { _, err := c.ScanFilter(r); return err }, c.FilterArgs(&store.PublishedFilter{})},
		{"FirmwareRoot", FirmwareRootColumns, func(r Row) error { _, err := c.ScanFirmwareRoot(r); return err }, c.FirmwareRootArgs(&store.FirmwareRoot{})},
		{"FirmwareKey", FirmwareKeyColumns, func(r Row) error { _, err := c.ScanFirmwareKey(r); return err }, c.FirmwareKeyArgs(&store.FirmwareSigningKey{})},
		{"FirmwareRelease", FirmwareReleaseColumns, func(r Row) error { _, err := c.ScanFirmwareRelease(r); return err }, c.FirmwareReleaseArgs(&store.FirmwareRelease{})},
		{"FirmwareApproval", FirmwareApprovalColumns, func(r Row) error { _, err := c.ScanFirmwareApproval(r); return err }, c.FirmwareApprovalArgs(&store.FirmwareApproval{})},
		{"FactorySite", FactorySiteColumns, func(r Row) error { _, err := c.ScanFactorySite(r); return err }, c.FactorySiteArgs(&store.FactorySite{})},
		{"FactoryExport", FactoryExportColumns, nil, c.FactoryExportArgs(&store.FactoryExport{})},
		{"FactoryBatch", FactoryBatchColumns, func(r Row) error { _, err := c.ScanFactoryBatch(r); return err }, c.FactoryBatchArgs(&store.FactoryBatch{})},
		{"SiteLog", SiteLogColumns, nil, c.SiteLogArgs(&store.FactorySiteLogEntry{}, 0)},
		{"SiteLogEntry", SiteLogEntryColumns, func(r Row) error { _, err := c.ScanSiteLogEntry(r); return err }, nil},
	} {
		n := len(columnNames(tc.columns))
		if tc.scan != nil {
			if got := scan(tc.scan); got != n {
				t.Errorf("%s: scan has %d destinations for %d columns", tc.name, got, n)
			}
		}
		if tc.args != nil && len(tc.args) != n {
			t.Errorf("%s: args has %d values for %d columns", tc.name, len(tc.args), n)
		}
	}
}

func TestBlobAndNullString(t *testing.T) {
	if Blob(nil) != nil || Blob([]byte{}) != nil {
		t.Error("Blob of an empty slice is not NULL")
	}
	if b, ok := Blob([]byte{1}).([]byte); !ok || len(b) != 1 {
		t.Error("Blob of a byte changed it")
	}
	if NullString("") != nil || NullString("a") != "a" {
		t.Error("NullString does not bind '' as NULL and other strings as they are")
	}
	var s string
	for _, tc := range []struct {
		src  any
		want string
	}{{nil, ""}, {"dev/root", "dev/root"}, {[]byte("dev/root"), "dev/root"}} {
		s = "stale"
		if err := (*nullString)(&s).Scan(tc.src); err != nil || s != tc.want {
			t.Errorf("scan %#v: %q, %v; want %q", tc.src, s, err, tc.want)
		}
	}
	if err := (*nullString)(&s).Scan(int64(1)); err == nil {
		t.Error("scanned an integer into a string")
	}
}

func TestSplitKIDs(t *testing.T) {
	a, b := make([]byte, kidSize), make([]byte, kidSize)
	a[0], b[0] = 1, 2
	got, err := splitKIDs(joinKIDs([][]byte{a, b}))
	if err != nil || len(got) != 2 || got[0][0] != 1 || got[1][0] != 2 {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	if got, err := splitKIDs(nil); err != nil || got != nil {
		t.Errorf("empty list: %v, %v", got, err)
	}
	if _, err := splitKIDs(make([]byte, kidSize+1)); err == nil {
		t.Error("split a list of 33 bytes")
	}
}

func TestWalkPrefetched(t *testing.T) {
	const size = 7
	for _, total := range []int{0, 1, size - 1, size, size + 1, 3 * size, 3*size + 2} {
		var fetches []string
		fetch := func(after string, buf []int) ([]int, error) {
			fetches = append(fetches, after)
			if len(buf) != 0 {
				t.Fatalf("fetch after %q given a buffer of %d items, want it emptied", after, len(buf))
			}
			start := 0
			if after != "" {
				start, _ = strconv.Atoi(after)
				start++
			}
			page := buf
			for i := start; i < total && len(page) < size; i++ {
				page = append(page, i)
			}
			return page, nil
		}
		var got []int
		err := WalkPrefetched(size, "", fetch, func(i *int) string { return strconv.Itoa(*i) }, func(i *int) error { got = append(got, *i); return nil })
		if err != nil || len(got) != total {
			t.Fatalf("%d items: walked %d, %v", total, len(got), err)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("%d items: item %d is %d", total, i, v)
			}
		}
		if want := total/size + 1; len(fetches) != want {
			t.Fatalf("%d items: %d fetches %v, want %d", total, len(fetches), fetches, want)
		}
	}
	// The walk starts after start.
	var first string
	if err := WalkPrefetched(2, "41", func(after string, _ []int) ([]int, error) { first = after; return nil, nil },
		func(*int) string { return "" }, func(*int) error { return nil }); err != nil || first != "41" {
		t.Fatalf("first fetch after %q, %v; want after 41", first, err)
	}
	// fn's error stops the walk after the page in flight has arrived; a fetch error is returned as is.
	stop := errors.New("stop")
	calls := 0
	err := WalkPrefetched(2, "", func(string, []int) ([]int, error) { return []int{1, 2}, nil }, func(*int) string { return "x" },
		func(*int) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("fn error: %d calls, %v", calls, err)
	}
	bad := errors.New("read failed")
	n := 0
	err = WalkPrefetched(2, "", func(after string, _ []int) ([]int, error) {
		if after != "" {
			return nil, bad
		}
		return []int{1, 2}, nil
	}, func(i *int) string { return strconv.Itoa(*i) }, func(*int) error { n++; return nil })
	if !errors.Is(err, bad) || n != 2 {
		t.Fatalf("fetch error: %d items, %v", n, err)
	}
}

// FuzzCompactDetails: whatever the fast decoder accepts, json.Unmarshal reads to the same map.
func FuzzCompactDetails(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b"}`, `{"a":"b","c":""}`, `{"a":"b",}`, `{"a":"\u003c"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\\\"\/\b\f\n\r\t"}`, `{"a":"\u0"}`, `{"a":"\x"}`, `{"a":"b"`, `{"a" :"b"}`,
		`{"a":"b","a":"c"}`, "{\"a\":\"\x01\"}", `{"é":"ß"}`, "{\"a\":\"\xff\"}", `{"a":1}`, `[]`, `{"a":"b"}x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := compactDetails(s)
		if !ok {
			return
		}
		var want map[string]string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("compactDetails accepted %q, which json.Unmarshal refuses: %v", s, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %v, json.Unmarshal %v", s, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%q: %v, json.Unmarshal %v", s, got, want)
			}
		}
	})
}

func TestCompactDetailsCommonForm(t *testing.T) {
	d := map[string]string{"profile": "implant-identity", "issuer": "dev/demo-implant", "state.cert.7b28": "status=valid", "empty": ""}
	b, _ := json.Marshal(d)
	got, ok := compactDetails(string(b))
	if !ok || len(got) != len(d) {
		t.Fatalf("compactDetails(%s) = %v, %v", b, got, ok)
	}
	for k, v := range d {
		if got[k] != v {
			t.Fatalf("key %s: %q, want %q", k, got[k], v)
		}
	}
	// The HTML-safe escapes of recorded state ('&' between fields) take the fast path; others the general one.
	if got, ok := compactDetails(`{"a":"x=1\u0026y=\u003c\n"}`); !ok || got["a"] != "x=1&y=<\n" {
		t.Fatalf("escaped string: %q, %v", got["a"], ok)
	}
	if _, ok := compactDetails(`{"a":"\u00e9"}`); ok {
		t.Fatal("a non-ASCII escape took the fast path")
	}
}
