package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/est"
)

// EnrollOptions configure the EST enrollment benchmark.
type EnrollOptions struct {
	Clients  int           // concurrent EST clients, each on its own kept-alive TLS connection
	Duration time.Duration // timed part
	DB       string        // "" for SQLite in a fresh directory; a postgres:// URL naming an empty database or schema
	Dir      string        // working directory; default a new temporary one, removed afterwards
	// Prepare is the number of keys and CSRs made before the timed part; default 2,500 per second of Duration.
	// The run ends early, and says so, if the clients use them all.
	Prepare   int
	LimitTime time.Duration // how long to measure the in-process limit; default 3s
	Progress  io.Writer     // progress lines, or nil
}

// EnrollResult is what the enrollment benchmark measured.
type EnrollResult struct {
	Clients        int     `json:"clients"`
	Enrolled       int64   `json:"enrolled"`
	Failed         int64   `json:"failed"`
	Seconds        float64 `json:"seconds"`
	PerSecond      float64 `json:"per_second"`
	P50ms          float64 `json:"p50_ms"`
	P99ms          float64 `json:"p99_ms"`
	P999ms         float64 `json:"p99_9_ms"`
	MaxMs          float64 `json:"max_ms"`
	Over100ms      int     `json:"over_100ms"`
	LimitPerSecond float64 `json:"limit_per_second"`
	Ratio          float64 `json:"ratio"`
	Store          string  `json:"store"`
	GOMAXPROCS     int     `json:"gomaxprocs"`
	RanOutOfCSRs   bool    `json:"ran_out_of_csrs"`
	AuditEvents    int64   `json:"audit_events"`
	AuditVerified  bool    `json:"audit_verified"`
	FirstError     string  `json:"first_error,omitempty"`
}

// Enroll runs a real Keyward server on loopback (TLS 1.3, the EST routes, the chosen store) and opts.Clients
// EST clients, each authenticated as a factory station over one kept-alive connection, posting simpleenroll
// requests with a new key and CSR each (made before the timed part) for opts.Duration. It reports enrollments
// per second, the latency distribution, and the in-process limit measured in the same run afterwards: an
// x509.CreateCertificate loop on every core with the issuing CA's key (the same limit as 'bench issue').
func Enroll(ctx context.Context, opts EnrollOptions) (*EnrollResult, error) {
	if opts.Clients <= 0 || opts.Duration <= 0 {
		return nil, errors.New("bench enroll: --clients and --duration must be positive")
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
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: dir, DB: opts.DB, Warn: io.Discard, Logger: quiet}, Actor: "bench"})
	if err != nil {
		return nil, err
	}
	defer n.Close()
	cred, err := n.RA.AddStation(ctx, ra.Principal{ID: "bench", Role: ra.RoleAdmin}, ra.StationRequest{Environment: "dev", Site: "bench", ProductLines: []string{"demo-implant"}})
	if err != nil {
		return nil, err
	}
	stationCert, err := tls.X509KeyPair(cred.CertPEM, cred.KeyPEM())
	if err != nil {
		return nil, err
	}
	if err := n.Follow(ctx); err != nil {
		return nil, err
	}
	srvCert, trust, err := n.ServerTLS(ctx, []string{"127.0.0.1"})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- server.New(server.Deps{RA: n.RA}).Serve(sctx, ln, srvCert, 5*time.Second) }()
	var stopOnce sync.Once
	stopServer := func() {
		stopOnce.Do(func() {
			stop()
			if err := <-served; err != nil {
				progress("bench enroll: server stopped: %v", err)
			}
		})
	}
	defer stopServer()

	progress("bench enroll: preparing %d keys and CSRs", opts.Prepare)
	csrs, err := prepareCSRs(opts.Prepare)
	if err != nil {
		return nil, err
	}
	cfg, err := est.TLSConfig(trust, &stationCert)
	if err != nil {
		return nil, err
	}
	clients := make([]*est.Client, opts.Clients)
	for i := range clients {
		if clients[i], err = est.NewClient("https://"+ln.Addr().String(), "demo-implant", cfg); err != nil {
			return nil, err
		}
		defer clients[i].Close()
		// The handshake happens here, outside the timed part; the connection is then kept alive.
		if _, err := clients[i].CACerts(ctx); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	res := &EnrollResult{Clients: opts.Clients, Store: storeName(opts.DB), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	progress("bench enroll: %d clients enrolling for %s", opts.Clients, opts.Duration)
	var (
		next      atomic.Int64
		latencies = make([][]time.Duration, opts.Clients)
		errOnce   sync.Once
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(opts.Duration)
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= int64(len(csrs)) {
					return
				}
				t0 := time.Now()
				_, err := cl.SimpleEnroll(ctx, csrs[k], nil)
				latencies[i] = append(latencies[i], time.Since(t0))
				if err != nil {
					atomic.AddInt64(&res.Failed, 1)
					errOnce.Do(func() { res.FirstError = err.Error() })
					continue
				}
				atomic.AddInt64(&res.Enrolled, 1)
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.RanOutOfCSRs = next.Load() >= int64(len(csrs))
	res.PerSecond = float64(res.Enrolled) / res.Seconds
	lt := latencyTail(latencies)
	res.P50ms, res.P99ms, res.P999ms, res.MaxMs, res.Over100ms = lt.p50, lt.p99, lt.p999, lt.max, lt.over100ms
	stopServer()
	progress("bench enroll: measuring the in-process limit for %s", opts.LimitTime)
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

func newP256() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// prepareCSRs makes n P-256 keys and CSRs with distinct implant-identity serials on every core.
func prepareCSRs(n int) ([][]byte, error) {
	base, err := rand.Int(rand.Reader, big.NewInt(90_000_000-int64(n)))
	if err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		fail atomic.Value
	)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				key, err := newP256()
				if err == nil {
					out[i], err = est.NewCSR(key, fmt.Sprintf("DEMO-%08d", base.Int64()+i))
				}
				if err != nil {
					fail.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := fail.Load().(error); err != nil {
		return nil, err
	}
	return out, nil
}
