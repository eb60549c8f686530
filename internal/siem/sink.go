package siem

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// Target is where a sink delivers: a file or an HTTPS collector.
type Target interface {
	// Name identifies the sink's cursor in the store: "file:" and an absolute path, or the URL.
	Name() string
	// Deliver hands the collector a batch of JSON lines; nil means it holds them (written and synced, or
	// answered 2xx).
	Deliver(ctx context.Context, batch []byte, first, last int64) error
}

// ParseTarget reads an --audit-sink value: "file:PATH" (appended to, created 0600) or "https://HOST/PATH" (each
// batch POSTed as application/x-ndjson; TLS 1.2 or later, verified against the system roots or, when caFile is
// set, the PEM certificates in it). Plain http is refused: the trail must not cross a network in clear, nor can a
// collector be authenticated without TLS. A URL with credentials in it is refused: the sink's name is stored and
// logged.
func ParseTarget(spec, caFile string) (Target, error) {
	if path, ok := strings.CutPrefix(spec, "file:"); ok {
		if caFile != "" {
			return nil, errors.New("--audit-sink-ca applies to an https sink, not a file")
		}
		if path == "" || strings.ContainsRune(path, 0) {
			return nil, fmt.Errorf("audit sink %.60q: write file:PATH with the path of the file to append to", spec)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("audit sink %.60q: %w", spec, err)
		}
		return &fileTarget{path: abs}, nil
	}
	u, err := url.Parse(spec)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return nil, fmt.Errorf("audit sink %.60q: write file:PATH or https://HOST/PATH", spec)
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("audit sink %.60q: scheme %.10q; the sink is file:PATH or an https:// URL (plain http would send the audit trail in clear)", spec, u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("audit sink %.60q: the URL names no host", spec)
	case u.User != nil:
		return nil, fmt.Errorf("audit sink %.60q: credentials in the URL would be stored and logged with the sink's name; authenticate the collector by its TLS certificate (--audit-sink-ca)", redact(u))
	case u.Fragment != "":
		return nil, fmt.Errorf("audit sink %.60q: a URL fragment is never sent; remove it", spec)
	}
	roots, err := loadRoots(caFile)
	if err != nil {
		return nil, err
	}
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
			TLSHandshakeTimeout: 10 * time.Second,
			Proxy:               http.ProxyFromEnvironment,
		},
		// A redirect is not an acceptance: the batch is retried at the configured URL.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &httpsTarget{url: u.String(), client: client}, nil
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

func loadRoots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil // the system roots
	}
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--audit-sink-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("--audit-sink-ca %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

type fileTarget struct{ path string }

func (f *fileTarget) Name() string { return "file:" + f.path }

// Deliver appends batch and syncs the file. The file is opened for each batch, so a rotated file (renamed away)
// is followed by a new one. If a crash cut the last line short, a line break is written first, so that the
// broken line stands alone and the next event parses; that event is delivered again in full, since the cursor
// had not moved.
func (f *fileTarget) Deliver(_ context.Context, batch []byte, _, _ int64) error {
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer fh.Close()
	if fi, err := fh.Stat(); err == nil && fi.Size() > 0 {
		rd, err := os.Open(f.path)
		if err == nil {
			last := make([]byte, 1)
			_, rerr := rd.ReadAt(last, fi.Size()-1)
			_ = rd.Close()
			if rerr == nil && last[0] != '\n' {
				batch = append([]byte{'\n'}, batch...)
			}
		}
	}
	if _, err := fh.Write(batch); err != nil {
		return err
	}
	if err := fh.Sync(); err != nil {
		return err
	}
	return fh.Close()
}

type httpsTarget struct {
	url    string
	client *http.Client
}

func (h *httpsTarget) Name() string { return h.url }

// Deliver POSTs batch; only a 2xx answer is an acceptance.
func (h *httpsTarget) Deliver(ctx context.Context, batch []byte, first, last int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(batch))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Keyward-Audit-Seq", fmt.Sprintf("%d-%d", first, last))
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("collector answered %s: %s", resp.Status, audit.Bound(strings.TrimSpace(string(msg)), 200))
	}
	return nil
}

// Forwarder delivers the audit trail to one Target, at least once and in sequence order.
type Forwarder struct {
	Target Target
	// Read reads events and the sink's cursor.
	Read store.Reader
	// Advance records that the sink holds every event up to seq (ra.RA.AdvanceAuditSink).
	Advance func(ctx context.Context, name string, seq int64) error
	Logger  *slog.Logger
	// BatchEvents and BatchBytes bound one delivery, and so the forwarder's memory (defaults 500 events, 1 MiB).
	BatchEvents int
	BatchBytes  int
	// Poll is how often the forwarder looks for new events when it has caught up (default 1 s); Wake, if set,
	// makes it look at once.
	Poll time.Duration
	Wake <-chan struct{}
	// MinBackoff and MaxBackoff bound the wait after a failed delivery, doubled per failure (defaults 1 s, 1 min).
	MinBackoff, MaxBackoff time.Duration
	// BehindWarn: the forwarder logs a warning while the sink is more than this many events behind (default
	// 10000).
	BehindWarn int64
}

func (f *Forwarder) defaults() {
	if f.BatchEvents <= 0 {
		f.BatchEvents = 500
	}
	if f.BatchBytes <= 0 {
		f.BatchBytes = 1 << 20
	}
	if f.Poll <= 0 {
		f.Poll = time.Second
	}
	if f.MinBackoff <= 0 {
		f.MinBackoff = time.Second
	}
	if f.MaxBackoff < f.MinBackoff {
		f.MaxBackoff = max(time.Minute, f.MinBackoff)
	}
	if f.BehindWarn <= 0 {
		f.BehindWarn = 10000
	}
	if f.Logger == nil {
		f.Logger = slog.Default()
	}
}

// errBatchFull stops reading a batch.
var errBatchFull = errors.New("batch full")

// Once delivers the next batch after the stored cursor, if there is one, and advances the cursor. It returns the
// number of events delivered and whether more are waiting.
func (f *Forwarder) Once(ctx context.Context) (int, bool, error) {
	f.defaults()
	name := f.Target.Name()
	cur, err := f.Read.AuditSinkCursor(ctx, name)
	if err != nil {
		return 0, false, err
	}
	var buf bytes.Buffer
	enc := jsonEncoder{newJSON(&buf)}
	var n int
	var first, last int64
	full := false
	err = f.Read.WalkAudit(ctx, cur.Seq, func(e *audit.Event) error {
		if n >= f.BatchEvents || buf.Len() >= f.BatchBytes {
			full = true
			return errBatchFull
		}
		if err := enc.Encode(e); err != nil {
			return err
		}
		if n == 0 {
			first = e.Seq
		}
		last = e.Seq
		n++
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return 0, false, err
	}
	if n == 0 {
		return 0, false, nil
	}
	if err := f.Target.Deliver(ctx, buf.Bytes(), first, last); err != nil {
		return 0, full, fmt.Errorf("deliver events %d-%d: %w", first, last, err)
	}
	if err := f.Advance(ctx, name, last); err != nil {
		// Delivered but not recorded: the batch goes again, with the same sequence numbers.
		return 0, full, fmt.Errorf("record delivery of events %d-%d: %w", first, last, err)
	}
	return n, full, nil
}

// Run delivers until ctx ends. A failed delivery is retried with the same events after a backoff that doubles
// up to MaxBackoff (with jitter); nothing is skipped, and nothing waits in memory but the batch being sent:
// new events wait in the store, so issuance never waits for the sink however long it is down.
func (f *Forwarder) Run(ctx context.Context) {
	f.defaults()
	name := f.Target.Name()
	failures := 0
	warned := false
	for ctx.Err() == nil {
		n, more, err := f.Once(ctx)
		var wait time.Duration
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			failures++
			wait = f.MinBackoff << min(failures-1, 16)
			if wait > f.MaxBackoff || wait <= 0 {
				wait = f.MaxBackoff
			}
			wait += time.Duration(rand.Int64N(int64(wait)/4 + 1))
			f.Logger.WarnContext(ctx, "audit sink delivery failed; retrying, nothing is dropped", "sink", name, "attempt", failures,
				"retry_in", wait.Round(time.Millisecond), "behind", f.behind(ctx, name), "err", err)
		case more:
			failures = 0
			continue
		default:
			if failures > 0 {
				f.Logger.InfoContext(ctx, "audit sink delivering again", "sink", name, "after_failures", failures)
			}
			failures = 0
			wait = f.Poll
		}
		if n > 0 || err != nil {
			if b := f.behind(ctx, name); b > f.BehindWarn && !warned {
				warned = true
				f.Logger.WarnContext(ctx, "audit sink is behind the log; the events wait in the store", "sink", name, "behind", b)
			} else if b <= f.BehindWarn {
				warned = false
			}
		}
		wake := f.Wake
		if err != nil {
			wake = nil // a new event does not cut a backoff short
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-wake:
			t.Stop()
		}
	}
}

// behind is how many events the sink has not received yet (-1 if unknown).
func (f *Forwarder) behind(ctx context.Context, name string) int64 {
	head, _, err := f.Read.AuditHead(ctx)
	if err != nil {
		return -1
	}
	cur, err := f.Read.AuditSinkCursor(ctx, name)
	if err != nil {
		return -1
	}
	return head - cur.Seq
}
