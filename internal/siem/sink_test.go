package siem

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

func TestParseTarget(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	notPEM := filepath.Join(dir, "x.txt")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	for _, tc := range []struct {
		spec, ca, name, err string
	}{
		{"file:/var/log/k.jsonl", "", "file:/var/log/k.jsonl", ""},
		{"file:rel/k.jsonl", "", "file:" + filepath.Join(mustWd(t), "rel/k.jsonl"), ""},
		{"https://siem.example:8088/in?x=1", "", "https://siem.example:8088/in?x=1", ""},
		{"https://siem.example/in", ca, "https://siem.example/in", ""},
		{"http://siem.example/in", "", "", "plain http"},
		{"https://user:secret@siem.example/in", "", "", "credentials in the URL"},
		{"https:///in", "", "", "no host"},
		{"https://siem.example/in#x", "", "", "fragment"},
		{"file:", "", "", "file:PATH"},
		{"siem.example", "", "", "file:PATH or https"},
		{"syslog://x", "", "", "scheme"},
		{"https://siem.example/in", notPEM, "", "no PEM certificate"},
		{"https://siem.example/in", filepath.Join(dir, "missing"), "", "--audit-sink-ca"},
		{"file:/x", ca, "", "applies to an https sink"},
	} {
		tg, err := ParseTarget(tc.spec, tc.ca)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTarget(%q): %v, want an error containing %q", tc.spec, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseTarget(%q): the error repeats the password: %v", tc.spec, err)
			}
			continue
		}
		if err != nil || tg.Name() != tc.name {
			t.Errorf("ParseTarget(%q) = %v, %v; want name %q", tc.spec, tg, err, tc.name)
		}
	}
}

func mustWd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"file:/x", "https://h/p", "http://h", "https://u:p@h/", "file:", "https://[::1]:99/x?y#z", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		tg, err := ParseTarget(spec, "")
		if err != nil {
			return
		}
		name := tg.Name()
		if !strings.HasPrefix(name, "file:/") && !strings.HasPrefix(name, "https://") {
			t.Fatalf("ParseTarget(%q) accepted sink %q", spec, name)
		}
		if strings.HasPrefix(name, "https://") && strings.Contains(strings.SplitN(name[8:], "/", 2)[0], "@") {
			t.Fatalf("ParseTarget(%q) kept credentials: %q", spec, name)
		}
	})
}

// testStore is a SQLite store with n audit events.
func testStore(t *testing.T, n int) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "keyward.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	appendEvents(t, s, n)
	return s
}

func appendEvents(t testing.TB, s store.Store, n int) {
	t.Helper()
	ctx := context.Background()
	err := s.Tx(ctx, func(tx store.Tx) error {
		for i := 0; i < n; i++ {
			if err := tx.AppendAudit(ctx, &audit.Event{Time: time.Now(), Actor: "test", Action: "cert.issue", Subject: fmt.Sprint(i), Outcome: audit.OutcomeSuccess}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// advancer records cursors as ra.RA.AdvanceAuditSink does.
func advancer(s store.Store) func(context.Context, string, int64) error {
	return func(ctx context.Context, name string, seq int64) error {
		return s.Tx(ctx, func(tx store.Tx) error { return tx.AdvanceAuditSink(ctx, name, seq, time.Now()) })
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// seqs reads the sequence numbers of JSON lines.
func seqs(r io.Reader) []int64 {
	var out []int64
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e api.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			out = append(out, -1) // a broken line
			continue
		}
		out = append(out, e.Seq)
	}
	return out
}

// checkAll fails unless got holds every sequence number 1..n in order, repeats allowed only as whole re-sent
// runs (each seq at least once, never out of order beyond a replay).
func checkAll(t *testing.T, got []int64, n int64) {
	t.Helper()
	seen := map[int64]bool{}
	var high int64
	for _, s := range got {
		if s > high+1 {
			t.Fatalf("gap: %d follows %d (%v)", s, high, got)
		}
		seen[s] = true
		high = max(high, s)
	}
	for i := int64(1); i <= n; i++ {
		if !seen[i] {
			t.Fatalf("event %d never delivered", i)
		}
	}
}

func TestForwardFileRestartAndRepair(t *testing.T) {
	s := testStore(t, 1200)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	tg, _ := ParseTarget("file:"+path, "")
	f := &Forwarder{Target: tg, Read: s, Advance: advancer(s), Logger: quiet(), BatchEvents: 500}
	ctx := context.Background()
	for {
		n, more, err := f.Once(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n > 500 {
			t.Fatalf("batch of %d events, bound 500", n)
		}
		if !more {
			break
		}
	}
	// A crash cut the last line short, after the cursor moved past the file's content: the next delivery
	// starts on a line of its own.
	fh, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString(`{"seq":99999,"trunc`)
	fh.Close()
	appendEvents(t, s, 10)
	// A restarted forwarder (a new process) resumes from the stored cursor.
	f2 := &Forwarder{Target: tg, Read: s, Advance: advancer(s), Logger: quiet()}
	if n, _, err := f2.Once(ctx); err != nil || n != 10 {
		t.Fatalf("resume: %d events, %v; want the 10 new ones", n, err)
	}
	fh, _ = os.Open(path)
	got := seqs(fh)
	fh.Close()
	if got[1200] != -1 || len(got) != 1211 {
		t.Fatalf("after repair: %d lines, line 1201 = %d", len(got), got[1200])
	}
	checkAll(t, append(got[:1200:1200], got[1201:]...), 1210)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("sink file mode %v, want 0600", fi.Mode().Perm())
	}
}

// collector is an HTTPS collector that can be down, failing, or accepting.
type collector struct {
	mu    sync.Mutex
	fail  int // answer 503 to this many requests first
	got   []int64
	calls atomic.Int64
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Header.Get("Content-Type") != "application/x-ndjson" {
		http.Error(w, "content type", http.StatusUnsupportedMediaType)
		return
	}
	if c.fail > 0 {
		c.fail--
		// A collector that stored part of the batch and then failed: the whole batch comes again.
		c.got = append(c.got, seqs(bytes.NewReader(body))[:1]...)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	c.got = append(c.got, seqs(bytes.NewReader(body))...)
}

func (c *collector) seqs() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.got...)
}

func TestForwardHTTPSDownFailingThenUp(t *testing.T) {
	s := testStore(t, 300)
	col := &collector{fail: 2}
	srv := httptest.NewUnstartedServer(col)
	srv.StartTLS()
	addr := srv.URL
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	srv.Close() // the collector is down at first

	tg, err := ParseTarget(addr+"/ingest", caFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	f := &Forwarder{Target: tg, Read: s, Advance: advancer(s), BatchEvents: 100, Poll: 20 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()

	// While it is down, issuance goes on: appends never wait for the sink, and the cursor stays put.
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	appendEvents(t, s, 2000)
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("appends took %v with the sink down", el)
	}
	if c, _ := s.AuditSinkCursor(ctx, tg.Name()); c.Seq != 0 {
		t.Fatalf("cursor moved to %d while the sink was down", c.Seq)
	}
	for i := 0; ; i++ {
		logMu.Lock()
		ok := strings.Contains(logs.String(), "nothing is dropped") && strings.Contains(logs.String(), "behind=2300")
		logMu.Unlock()
		if ok {
			break
		}
		if i == 100 {
			t.Fatalf("no retry warning naming the backlog: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The collector comes back on the same address, failing twice before it accepts.
	srv2 := httptest.NewUnstartedServer(col)
	srv2.Listener.Close()
	ln, err := listenOn(strings.TrimPrefix(addr, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	srv2.Listener = ln
	srv2.TLS = srv.TLS
	srv2.StartTLS()
	defer srv2.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, _ := s.AuditSinkCursor(ctx, tg.Name()); c.Seq == 2300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the backlog was not delivered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	got := col.seqs()
	checkAll(t, got, 2300)
	if len(got) != 2302 {
		t.Fatalf("%d lines received, want 2300 and the 2 of the failed batches", len(got))
	}
	if got[0] != 1 || got[1] != 1 || got[2] != 1 {
		t.Fatalf("a failed batch was not re-sent with the same sequence numbers: %v", got[:4])
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestForwardWrongCollectorCertificate(t *testing.T) {
	s := testStore(t, 5)
	srv := httptest.NewTLSServer(&collector{})
	defer srv.Close()
	tg, err := ParseTarget(srv.URL, "") // the system roots do not know httptest's certificate
	if err != nil {
		t.Fatal(err)
	}
	f := &Forwarder{Target: tg, Read: s, Advance: advancer(s), Logger: quiet()}
	_, _, err = f.Once(context.Background())
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted collector: %v", err)
	}
	if c, _ := s.AuditSinkCursor(context.Background(), tg.Name()); c.Seq != 0 {
		t.Fatalf("cursor moved to %d", c.Seq)
	}
}

func TestExportSincePastHead(t *testing.T) {
	s := testStore(t, 3)
	var buf bytes.Buffer
	if _, _, err := Export(context.Background(), s, 4, FormatJSONL, "v", &buf); err == nil || !strings.Contains(err.Error(), "past the newest audit event (3)") {
		t.Fatalf("since past head: %v", err)
	}
	n, head, err := Export(context.Background(), s, 3, FormatJSONL, "v", &buf)
	if err != nil || n != 0 || head != 3 || buf.Len() != 0 {
		t.Fatalf("since = head: %d %d %v %q", n, head, err, buf.String())
	}
	n, _, err = Export(context.Background(), s, 1, FormatCEF, "v", &buf)
	if err != nil || n != 2 || strings.Count(buf.String(), "CEF:0|") != 2 {
		t.Fatalf("since 1: %d %v %q", n, err, buf.String())
	}
	if _, _, err := Export(context.Background(), s, 0, "xml", "v", &buf); err == nil {
		t.Fatal("unknown format accepted")
	}
	_ = errors.New
}
