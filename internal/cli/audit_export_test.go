package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/api"
)

// auditHead is the newest event's sequence number, from 'audit list'.
func auditHead(t *testing.T, dir string) int64 {
	t.Helper()
	evs := listJSON[api.Event](t, "audit", "list", "--data", dir, "--limit", "0", "--json")
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

func jsonlSeqs(t *testing.T, data string) []int64 {
	t.Helper()
	var out []int64
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		var e api.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e.Seq)
	}
	return out
}

func TestAuditExport(t *testing.T) {
	dir := initDir(t)
	mustKW(t, "token", "create", "--data", dir, "--name", "siem-reader", "--role", "auditor")
	head := auditHead(t, dir)
	if head < 3 {
		t.Fatalf("head %d: want a few events", head)
	}
	got := jsonlSeqs(t, mustKW(t, "audit", "export", "--data", dir))
	if int64(len(got)) != head || got[0] != 1 || got[len(got)-1] != head {
		t.Fatalf("export of everything: %v, want 1..%d", got, head)
	}
	got = jsonlSeqs(t, mustKW(t, "audit", "export", "--data", dir, "--since", fmt.Sprint(head-2)))
	if fmt.Sprint(got) != fmt.Sprint([]int64{head - 1, head}) {
		t.Fatalf("--since %d: %v", head-2, got)
	}
	if out := mustKW(t, "audit", "export", "--data", dir, "--since", fmt.Sprint(head)); out != "" {
		t.Fatalf("--since head: %q, want nothing", out)
	}
	out := filepath.Join(t.TempDir(), "audit.cef")
	mustKW(t, "audit", "export", "--data", dir, "--format", "cef", "--out", out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if int64(len(lines)) != head || !strings.HasPrefix(lines[0], "CEF:0|Keyward|Keyward|") || !strings.Contains(lines[0], " externalId=1 ") {
		t.Fatalf("CEF export: %d lines, first %q", len(lines), lines[0])
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Fatalf("--out mode %v, want 0600", fi.Mode().Perm())
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"since past the head", []string{"--since", fmt.Sprint(head + 1)}, ExitNotFound, fmt.Sprintf("past the newest audit event (%d)", head)},
		{"negative since", []string{"--since", "-1"}, ExitUsage, "0 (everything) or more"},
		{"unknown format", []string{"--format", "xml"}, ExitUsage, "jsonl or cef"},
		{"out in a missing directory", []string{"--out", filepath.Join(t.TempDir(), "no", "such", "f")}, ExitUsage, "--out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := kw(t, append([]string{"audit", "export", "--data", dir}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) || stdout != "" {
				t.Fatalf("exit %d, stderr %q, stdout %q; want exit %d naming %q", code, stderr, stdout, tc.code, tc.msg)
			}
		})
	}
	// A failed export to a file leaves nothing behind.
	kw(t, "audit", "export", "--data", dir, "--since", fmt.Sprint(head+1), "--out", filepath.Join(filepath.Dir(out), "never"))
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 1 {
		t.Fatalf("a failed export left files: %v", ents)
	}
}

// serveUntil runs 'keyward serve' with args until the returned stop is called.
func serveUntil(t *testing.T, args ...string) (stop func()) {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb strings.Builder
	go func() {
		done <- Run(ctx, append([]string{"serve", "--listen", addr}, args...), Env{Stdout: &strings.Builder{}, Stderr: &errb, Stdin: strings.NewReader("")})
	}()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i == 200 {
			t.Fatalf("serve did not listen: %s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, errb.String())
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestServeAuditSinkFile: 'serve --audit-sink file:' delivers the whole trail; events appended while no server
// runs are delivered by the next one, from the cursor in the store, with no gap.
func TestServeAuditSinkFile(t *testing.T) {
	dir := initDir(t)
	sink := filepath.Join(t.TempDir(), "audit.jsonl")
	waitFor := func(head int64) []int64 {
		t.Helper()
		for i := 0; ; i++ {
			b, _ := os.ReadFile(sink)
			got := jsonlSeqs(t, string(b))
			if len(got) > 0 && got[len(got)-1] >= head {
				return got
			}
			if i == 200 {
				t.Fatalf("sink holds %v, want up to %d", got, head)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stop := serveUntil(t, "--data", dir, "--audit-sink", "file:"+sink)
	waitFor(auditHead(t, dir))
	stop()
	mustKW(t, "token", "create", "--data", dir, "--name", "while-down", "--role", "auditor")
	head := auditHead(t, dir)
	serveUntil(t, "--data", dir, "--audit-sink", "file:"+sink)
	got := waitFor(head)
	seen := map[int64]bool{}
	for i, s := range got {
		if i > 0 && s > got[i-1]+1 {
			t.Fatalf("gap in the sink: %d after %d", s, got[i-1])
		}
		seen[s] = true
	}
	for s := int64(1); s <= head; s++ {
		if !seen[s] {
			t.Fatalf("event %d missing from the sink", s)
		}
	}
	sinks := listJSON[auditSink](t, "audit", "sinks", "--data", dir, "--json")
	if len(sinks) != 1 || sinks[0].Name != "file:"+sink || sinks[0].Delivered < head {
		t.Fatalf("audit sinks: %+v, want %s delivered up to %d", sinks, sink, head)
	}
}

func TestServeBadFlags(t *testing.T) {
	dir := initDir(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--rate-limit", "lots"}, "N/s, N/m or N/h"},
		{[]string{"--audit-sink", "http://siem.example/in"}, "plain http"},
		{[]string{"--audit-sink-ca", "/x.pem"}, "needs --audit-sink"},
	} {
		_, stderr, code := kw(t, append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, tc.args...)...)
		if code != ExitUsage || !strings.Contains(stderr, tc.msg) {
			t.Errorf("serve %v: exit %d %q, want %d naming %q", tc.args, code, stderr, ExitUsage, tc.msg)
		}
	}
}

// TestServeFloodDefaults: 'keyward serve' with its default rate limit: a flood of 5,000 EST requests without a
// client certificate is answered 401 and then 429 with Retry-After, and adds at most a handful of audit events.
func TestServeFloodDefaults(t *testing.T) {
	dir := initDir(t)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"serve", "--data", dir, "--listen", addr}, Env{Stdout: io.Discard, Stderr: io.Discard, Stdin: strings.NewReader("")})
	}()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i == 200 {
			t.Fatal("serve did not listen")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := auditHead(t, dir)
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 8}}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 625; i++ {
				resp, err := client.Post("https://"+addr+"/.well-known/est/demo-implant/simpleenroll", "application/pkcs10", strings.NewReader("MA=="))
				if err != nil {
					mu.Lock()
					codes[-1]++
					mu.Unlock()
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	if codes[401]+codes[429] != 5000 || codes[429] < 4000 {
		t.Fatalf("status counts %v: want 5,000 answers, most of them 429", codes)
	}
	added := auditHead(t, dir) - before
	if added > 4 {
		t.Fatalf("5,000 refused requests added %d audit events", added)
	}
	t.Logf("statuses %v; %d audit events added", codes, added)
}

// TestServeAuditSinkHTTPS: 'serve --audit-sink https://... --audit-sink-ca' posts the trail as JSON lines to a
// collector it verifies with the given CA; a collector answering 503 gets the same events again.
func TestServeAuditSinkHTTPS(t *testing.T) {
	dir := initDir(t)
	var mu sync.Mutex
	var got []int64
	fails := 1
	col := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Content-Type") != "application/x-ndjson" {
			http.Error(w, "want x-ndjson", http.StatusUnsupportedMediaType)
			return
		}
		if fails > 0 {
			fails--
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		got = append(got, jsonlSeqs(t, string(b))...)
	}))
	defer col.Close()
	ca := filepath.Join(t.TempDir(), "collector.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: col.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	serveUntil(t, "--data", dir, "--audit-sink", col.URL+"/ingest", "--audit-sink-ca", ca)
	head := auditHead(t, dir)
	for i := 0; ; i++ {
		mu.Lock()
		n := len(got)
		last := int64(0)
		if n > 0 {
			last = got[n-1]
		}
		mu.Unlock()
		if last >= head {
			break
		}
		if i == 200 {
			t.Fatalf("collector holds %d events, want up to %d", n, head)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if got[0] != 1 || int64(len(got)) < head {
		t.Fatalf("collector got %v, want 1..%d", got, head)
	}
}
