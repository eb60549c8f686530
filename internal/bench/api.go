package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/store"
)

// APIOptions configure the operator-API issuance benchmark.
type APIOptions struct {
	// Binary is the keyward executable started as the server ('keyward init', then 'keyward serve').
	Binary   string
	Clients  int           // concurrent API clients, each on its own kept-alive TLS connection
	Duration time.Duration // timed part
	DB       string        // "" for SQLite in a fresh directory; a postgres:// URL naming an empty database or schema
	Dir      string        // working directory; default a new temporary one, removed afterwards
	// Keystore holds the CA keys: "" or "soft" for the software keystore, or a PKCS#11 URI ('keyward init
	// --keystore'); the server process inherits the environment (KEYWARD_PKCS11_PIN), and the limit is
	// measured with the same key.
	Keystore string
	// Prepare is the number of keys and CSRs made before the timed part; default 2,500 per second of Duration.
	Prepare   int
	LimitTime time.Duration // how long to measure the in-process limit; default 3s
	Progress  io.Writer     // progress lines, or nil
}

// APIResult is what the API benchmark measured.
type APIResult struct {
	Clients        int     `json:"clients"`
	Issued         int64   `json:"issued"`
	Failed         int64   `json:"failed"`
	Seconds        float64 `json:"seconds"`
	PerSecond      float64 `json:"per_second"`
	P50ms          float64 `json:"p50_ms"`
	P99ms          float64 `json:"p99_ms"`
	P999ms         float64 `json:"p99_9_ms"`
	MaxMs          float64 `json:"max_ms"`
	Over100ms      int     `json:"over_100ms"`
	ServerCPUPer1k float64 `json:"server_cpu_seconds_per_1000"`
	LimitPerSecond float64 `json:"limit_per_second"`
	Ratio          float64 `json:"ratio"`
	Store          string  `json:"store"`
	Keystore       string  `json:"keystore"`
	GOMAXPROCS     int     `json:"gomaxprocs"`
	RanOutOfCSRs   bool    `json:"ran_out_of_csrs"`
	AuditEvents    int64   `json:"audit_events"`
	AuditVerified  bool    `json:"audit_verified"`
	FirstError     string  `json:"first_error,omitempty"`
}

var servingLine = regexp.MustCompile(`serving https://(\S+) `)

// API runs 'keyward init' and 'keyward serve' (opts.Binary) on a fresh data directory — TLS 1.3, the operator
// token, the audit trail, the chosen store — and opts.Clients clients, each on one kept-alive TLS connection,
// posting POST /api/v1/certificates with a distinct CSR each (made before the timed part) for opts.Duration.
// It reports certificates per second, the latency distribution, the requests over 100 ms, the server process's
// CPU time per 1,000 certificates, and the in-process limit measured in the same run once the server has
// stopped: an x509.CreateCertificate loop on every core with the issuing CA's key (as 'bench issue').
func API(ctx context.Context, opts APIOptions) (*APIResult, error) {
	if opts.Clients <= 0 || opts.Duration <= 0 {
		return nil, errors.New("bench api: --clients and --duration must be positive")
	}
	if opts.Binary == "" {
		return nil, errors.New("bench api: no keyward executable to start as the server")
	}
	if opts.Prepare <= 0 {
		opts.Prepare = int(opts.Duration.Seconds() * 2500)
	}
	if opts.LimitTime <= 0 {
		opts.LimitTime = 3 * time.Second
	}
	progress := progressTo(opts.Progress)
	dir, cleanup, err := workDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	data := filepath.Join(dir, "data")
	db := []string{}
	if opts.DB != "" {
		db = []string{"--db", opts.DB}
	}
	initArgs := append([]string{"init", "--data", data}, db...)
	if opts.Keystore != "" && opts.Keystore != "soft" {
		initArgs = append(initArgs, "--keystore", opts.Keystore)
	}
	if out, err := exec.CommandContext(ctx, opts.Binary, initArgs...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("keyward init: %w\n%s", err, out)
	}
	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		return nil, err
	}
	srv, url, err := startServe(ctx, opts.Binary, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0"}, db...))
	if err != nil {
		return nil, err
	}
	defer srv.kill()
	// The server makes its service TLS CA on first start.
	trust, err := os.ReadFile(filepath.Join(data, "tls", "ca.pem"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(trust) {
		return nil, errors.New("bench api: the data directory's tls/ca.pem holds no certificate")
	}

	progress("bench api: preparing %d keys and CSRs", opts.Prepare)
	csrs, err := prepareCSRs(opts.Prepare)
	if err != nil {
		return nil, err
	}
	bodies := make([][]byte, len(csrs))
	for i, der := range csrs {
		if bodies[i], err = json.Marshal(map[string]string{"profile": benchProfile, "csr": base64.StdEncoding.EncodeToString(der)}); err != nil {
			return nil, err
		}
	}
	auth := "Bearer " + strings.TrimSpace(string(token))
	clients := make([]*http.Client, opts.Clients)
	for i := range clients {
		clients[i] = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13},
			MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: false,
		}}
		// The handshake happens here, outside the timed part; the connection is then kept alive.
		resp, err := clients[i].Get(url + "/healthz")
		if err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}

	res := &APIResult{Clients: opts.Clients, Store: storeName(opts.DB), Keystore: keystoreName(opts.Keystore), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	progress("bench api: %d clients issuing for %s", opts.Clients, opts.Duration)
	var (
		next      atomic.Int64
		latencies = make([][]time.Duration, opts.Clients)
		errOnce   sync.Once
		wg        sync.WaitGroup
	)
	cpu0 := srv.cpu()
	start := time.Now()
	deadline := start.Add(opts.Duration)
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= int64(len(bodies)) {
					return
				}
				t0 := time.Now()
				err := post(ctx, cl, url+"/api/v1/certificates", auth, bodies[k])
				latencies[i] = append(latencies[i], time.Since(t0))
				if err != nil {
					atomic.AddInt64(&res.Failed, 1)
					errOnce.Do(func() { res.FirstError = err.Error() })
					continue
				}
				atomic.AddInt64(&res.Issued, 1)
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	cpu := srv.cpu() - cpu0
	res.RanOutOfCSRs = next.Load() >= int64(len(bodies))
	res.PerSecond = float64(res.Issued) / res.Seconds
	if res.Issued > 0 && cpu >= 0 {
		res.ServerCPUPer1k = cpu.Seconds() / float64(res.Issued) * 1000
	}
	lt := latencyTail(latencies)
	res.P50ms, res.P99ms, res.P999ms, res.MaxMs, res.Over100ms = lt.p50, lt.p99, lt.p999, lt.max, lt.over100ms
	if err := srv.stop(); err != nil {
		return nil, err
	}

	progress("bench api: measuring the in-process limit for %s", opts.LimitTime)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := node.Open(ctx, node.Options{Dir: data, DB: opts.DB, Warn: io.Discard, Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer n.Close()
	if res.LimitPerSecond, err = createCertificateLimit(ctx, n, opts.LimitTime); err != nil {
		return nil, err
	}
	res.Ratio = res.PerSecond / res.LimitPerSecond
	if res.AuditEvents, err = store.VerifyAudit(ctx, n.Store); err != nil {
		return res, err
	}
	res.AuditVerified = true
	return res, nil
}

// post sends one issuance request and reads the whole answer; anything but 201 is an error.
func post(ctx context.Context, cl *http.Client, url, auth string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /api/v1/certificates: %d %.300s", resp.StatusCode, answer)
	}
	return nil
}

// serveProcess is a 'keyward serve' child process.
type serveProcess struct {
	cmd  *exec.Cmd
	done chan error
	log  *strings.Builder
	mu   *sync.Mutex
}

// startServe starts the server and waits for the line naming its address.
func startServe(ctx context.Context, bin string, args []string) (*serveProcess, string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	p := &serveProcess{cmd: cmd, done: make(chan error, 1), log: &strings.Builder{}, mu: &sync.Mutex{}}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			if p.log.Len() < 64<<10 {
				p.log.WriteString(sc.Text() + "\n")
			}
			p.mu.Unlock()
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
				break
			}
		}
		// Then the server's log (an access line per request) is drained without being read line by line: the
		// load client shares the machine's cores with the server.
		_, _ = io.Copy(io.Discard, stderr)
		p.done <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		return p, "https://" + a, nil
	case err := <-p.done:
		return nil, "", fmt.Errorf("keyward serve exited before serving (%v):\n%s", err, p.logText())
	case <-time.After(60 * time.Second):
		p.kill()
		return nil, "", fmt.Errorf("keyward serve did not start within 60s:\n%s", p.logText())
	}
}

func (p *serveProcess) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// cpu returns the CPU time (user + system) the process has used so far, read from /proc; -1 where there is
// no /proc.
func (p *serveProcess) cpu() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	// Linux reports them in clock ticks of USER_HZ, which is 100 on every architecture Go supports there.
	return time.Duration(utime+stime) * (time.Second / 100)
}

// stop sends SIGTERM and waits for a clean exit.
func (p *serveProcess) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			return fmt.Errorf("keyward serve exit after SIGTERM: %w\n%s", err, p.logText())
		}
		return nil
	case <-time.After(30 * time.Second):
		p.kill()
		return fmt.Errorf("keyward serve did not stop within 30s of SIGTERM")
	}
}

func (p *serveProcess) kill() { _ = p.cmd.Process.Kill() }
