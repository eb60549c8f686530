package bench

// The revocation benchmarks: a complete CRL over a million revoked certificates (crl.go), OCSP answers from
// the pre-signed cache over HTTP on loopback, and the revocation filter of a ten-million-certificate fleet.
// Each prints its figure beside a limit measured in the same run, and says what that limit is.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/revocation/filter"
)

// Targets: what a fleet of ten million implants needs of its revocation data (docs/revocation.md).
const (
	CRLTargetSeconds      = 1.5    // complete CRL of 1,000,000 revoked entries
	OCSPTargetPerSecond   = 10000  // cached OCSP responses over loopback
	FilterTargetSeconds   = 30.0   // filter of 10,000,000 certificates, 100,000 revoked
	FilterTargetRatio     = 1.2    // size against the information bound
	FilterTargetLookupNs  = 1000.0 // one lookup
	revocationBenchCAProd = "demo-implant"
)

// OCSPOptions configure the OCSP benchmark.
type OCSPOptions struct {
	Clients      int           // concurrent clients, each on its own kept-alive connection; default 8
	Duration     time.Duration // timed part; default 10s
	Certificates int           // distinct certificates asked about (one in ten revoked); default 1,000
	LimitTime    time.Duration // how long to measure the in-process limit; default 3s
	Dir          string
	Progress     io.Writer
}

// OCSPResult is what the OCSP benchmark measured.
type OCSPResult struct {
	Clients       int     `json:"clients"`
	Certificates  int     `json:"certificates"`
	Requests      int64   `json:"requests"`
	Failed        int64   `json:"failed"`
	Seconds       float64 `json:"seconds"`
	PerSecond     float64 `json:"per_second"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	ResponseBytes int     `json:"response_bytes"`
	// The limit: the public listener's handler called in-process with httptest.NewRecorder by as many
	// goroutines, for the same requests: everything but the network and HTTP parsing.
	Limit          string  `json:"limit"`
	LimitPerSecond float64 `json:"limit_per_second"`
	Ratio          float64 `json:"ratio"`
	TargetPerSec   float64 `json:"target_per_second"`
	MeetsTarget    bool    `json:"meets_target"`
	GOMAXPROCS     int     `json:"gomaxprocs"`
	FirstError     string  `json:"first_error,omitempty"`
}

const ocspLimitText = "the same public handler in-process (httptest.NewRecorder, no network), same goroutines and requests"

// OCSP serves OCSP from a real public listener (server.Public on 127.0.0.1, plain HTTP) whose responder has
// pre-signed a response for every certificate asked about, and runs opts.Clients clients posting RFC 6960
// requests (SHA-1 CertIDs, no nonce, as OpenSSL sends them) for opts.Duration; every answer is compared with
// the pre-signed one. The limit is measured afterwards in the same run.
func OCSP(ctx context.Context, opts OCSPOptions) (*OCSPResult, error) {
	if opts.Clients <= 0 {
		opts.Clients = 8
	}
	if opts.Duration <= 0 {
		opts.Duration = 10 * time.Second
	}
	if opts.Certificates <= 0 {
		opts.Certificates = 1000
	}
	if opts.LimitTime <= 0 {
		opts.LimitTime = 3 * time.Second
	}
	progress := revProgress(opts.Progress, "bench ocsp")
	dir, cleanup, err := revWorkDir(opts.Dir, "keyward-bench-ocsp-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	n, err := revNode(ctx, dir, "")
	if err != nil {
		return nil, err
	}
	defer n.Close()
	caID := hierarchy.IssuingID("dev", revocationBenchCAProd)
	progress("storing %d certificates, one in ten revoked", opts.Certificates)
	serials, _, err := insertCertificates(ctx, n, caID, opts.Certificates, func(i int) bool { return i%10 == 0 }, true, progress)
	if err != nil {
		return nil, err
	}
	ca, err := n.Store.GetCA(ctx, caID)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(ca.CertDER)
	if err != nil {
		return nil, err
	}
	svc := revocation.New(n.RA, n.CA, n.Store)
	responder := revocation.NewResponder(svc, revocation.OCSPConfig{})
	if err := responder.Refresh(ctx); err != nil {
		return nil, err
	}
	pub := server.NewPublic(n.Config, svc, responder, n.Logger)
	if err := pub.Reload(ctx); err != nil {
		return nil, err
	}

	progress("pre-signing %d responses", len(serials))
	reqs := make([][]byte, len(serials))
	want := make([][]byte, len(serials))
	for i, s := range serials {
		if reqs[i], err = ocsp.CreateRequest(&x509.Certificate{SerialNumber: s}, caCert, nil); err != nil {
			return nil, err
		}
		want[i] = responder.Respond(ctx, reqs[i])
		r, err := ocsp.ParseResponse(want[i], caCert)
		if err != nil {
			return nil, fmt.Errorf("bench ocsp: pre-signed response for %x: %w", s, err)
		}
		if wantStatus := map[bool]int{true: ocsp.Revoked, false: ocsp.Good}[i%10 == 0]; r.Status != wantStatus {
			return nil, fmt.Errorf("bench ocsp: serial %x has status %d, want %d", s, r.Status, wantStatus)
		}
	}
	res := &OCSPResult{Clients: opts.Clients, Certificates: len(serials), Limit: ocspLimitText, TargetPerSec: OCSPTargetPerSecond,
		GOMAXPROCS: runtime.GOMAXPROCS(0), ResponseBytes: len(want[1%len(want)])}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- pub.ServePublic(sctx, ln, 5*time.Second) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			progress("public listener stopped: %v", err)
		}
	}()
	url := "http://" + ln.Addr().String() + "/ocsp"

	clients := make([]*http.Client, opts.Clients)
	for i := range clients {
		// One transport, so one kept-alive connection, per client.
		tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true, IdleConnTimeout: time.Minute}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr, Timeout: 10 * time.Second}
		if err := ocspPost(ctx, clients[i], url, reqs[0], want[0]); err != nil {
			return nil, fmt.Errorf("bench ocsp: warm-up: %w", err)
		}
	}

	progress("%d clients posting OCSP requests for %s", opts.Clients, opts.Duration)
	var (
		failed    atomic.Int64
		firstErr  atomic.Value
		latencies = make([][]time.Duration, opts.Clients)
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(opts.Duration)
	for c, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<16)
			for i := c; ctx.Err() == nil; i += opts.Clients {
				t := time.Now()
				if !t.Before(deadline) {
					break
				}
				k := i % len(reqs)
				if err := ocspPost(ctx, cl, url, reqs[k], want[k]); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat = append(lat, time.Since(t))
			}
			latencies[c] = lat
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	res.Requests, res.Failed = int64(len(all)), failed.Load()
	if s, ok := firstErr.Load().(string); ok {
		res.FirstError = s
	}
	res.PerSecond = float64(res.Requests) / res.Seconds
	res.P50ms, res.P99ms = revPercentileMs(all, 0.50), revPercentileMs(all, 0.99)
	res.MeetsTarget = res.PerSecond >= OCSPTargetPerSecond && res.Failed == 0

	progress("measuring the limit: %s, for %s", ocspLimitText, opts.LimitTime)
	res.LimitPerSecond, err = ocspHandlerLimit(pub.Handler(), opts.Clients, opts.LimitTime, reqs, want)
	if err != nil {
		return nil, err
	}
	if res.LimitPerSecond > 0 {
		res.Ratio = res.PerSecond / res.LimitPerSecond
	}
	return res, nil
}

func ocspPost(ctx context.Context, cl *http.Client, url string, body, want []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	got, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		return fmt.Errorf("HTTP %d, %d bytes: not the pre-signed response", resp.StatusCode, len(got))
	}
	return nil
}

// ocspHandlerLimit calls h in-process from workers goroutines for d and returns requests per second.
func ocspHandlerLimit(h http.Handler, workers int, d time.Duration, reqs, want [][]byte) (float64, error) {
	var count atomic.Int64
	var failure atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(deadline); i += workers {
				k := i % len(reqs)
				r := httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(reqs[k]))
				r.Header.Set("Content-Type", "application/ocsp-request")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), want[k]) {
					failure.Store(fmt.Errorf("in-process OCSP answer: HTTP %d, %d bytes: not the pre-signed response", rec.Code, rec.Body.Len()))
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := failure.Load().(error); err != nil {
		return 0, fmt.Errorf("bench ocsp: limit: %w", err)
	}
	return float64(count.Load()) / time.Since(start).Seconds(), nil
}

// FilterOptions configure the revocation filter benchmark.
type FilterOptions struct {
	N        int // certificates in the fleet; default 10,000,000
	Revoked  int // revoked among them; default 100,000
	Progress io.Writer
}

// FilterResult is what the filter benchmark measured.
type FilterResult struct {
	Certificates uint64  `json:"certificates"`
	Revoked      uint64  `json:"revoked"`
	Seconds      float64 `json:"seconds"`    // filter.Build: both levels, self-check, signature
	PerSecond    float64 `json:"per_second"` // certificates per second
	FileBytes    int     `json:"file_bytes"` // the signed file, with header and signer chain
	TableBytes   float64 `json:"table_bytes"`
	SizeBits     int     `json:"size_bits"`
	BoundBits    float64 `json:"bound_bits"` // r(log2(N/r) + 1.44)
	RatioToBound float64 `json:"ratio_to_bound"`
	LookupNs     float64 `json:"lookup_ns"` // mean over every serial of the fleet, each answer checked
	Exact        bool    `json:"exact"`
	// The limit: SHA-256(32-byte seed || serial) once per serial on one goroutine, the hashing every
	// construction of this kind must do at least once per certificate (Build runs on one goroutine too).
	Limit           string  `json:"limit"`
	LimitSeconds    float64 `json:"limit_seconds"`
	LimitPerSecond  float64 `json:"limit_per_second"`
	Ratio           float64 `json:"ratio"`
	LimitLookupNs   float64 `json:"limit_lookup_ns"` // the same hash, per serial: a lookup computes one or two
	TargetSeconds   float64 `json:"target_seconds"`
	TargetRatio     float64 `json:"target_ratio_to_bound"`
	TargetLookupNs  float64 `json:"target_lookup_ns"`
	MeetsTarget     bool    `json:"meets_target"`
	ConstructionTry int     `json:"construction_attempts"`
	GOMAXPROCS      int     `json:"gomaxprocs"`
}

const filterLimitText = "SHA-256(seed || serial) once per certificate on one goroutine (the builder hashes every serial at least once)"

// Filter builds the signed revocation filter (pkg/revocation/filter.Build, the builder 'keyward revocation
// filter' uses) for a generated fleet of opts.N random 16-byte serials, the first opts.Revoked of them revoked,
// signed by an ephemeral P-256 key certified for id-kp-documentSigning. It reports the build time, the size
// against the information bound, and the mean lookup time over every serial, each answer checked. The fleet
// lives in memory, not in a store: a 10-million-row registry walk would measure the database.
func Filter(ctx context.Context, opts FilterOptions) (*FilterResult, error) {
	if opts.N == 0 && opts.Revoked == 0 {
		opts.N, opts.Revoked = 10_000_000, 100_000
	}
	if opts.N <= 0 || opts.Revoked < 0 || opts.Revoked > opts.N {
		return nil, fmt.Errorf("bench filter: --n %d and --revoked %d: want 0 <= revoked <= n and n > 0", opts.N, opts.Revoked)
	}
	progress := revProgress(opts.Progress, "bench filter")
	progress("generating %d serials (not timed)", opts.N)
	buf := make([]byte, 16*opts.N)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	all := make([][]byte, opts.N)
	for i := range all {
		s := buf[16*i : 16*i+16]
		s[0] = s[0]&0x3f | 0x40 // positive, 16 octets like issuer.NewSerial's, random throughout (no time order to help the walk)
		all[i] = s
	}
	revoked, valid := all[:opts.Revoked], all[opts.Revoked:]
	bopts, vopts, err := filterSigner()
	if err != nil {
		return nil, err
	}
	src := filter.Source{Revoked: revoked, ValidCount: uint64(len(valid)), Valid: func(yield func([]byte) error) error {
		for _, s := range valid {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := yield(s); err != nil {
				return err
			}
		}
		return nil
	}}
	res := &FilterResult{Limit: filterLimitText, TargetSeconds: FilterTargetSeconds, TargetRatio: FilterTargetRatio,
		TargetLookupNs: FilterTargetLookupNs, GOMAXPROCS: runtime.GOMAXPROCS(0)}

	progress("building the filter of %d certificates, %d revoked (timed)", opts.N, opts.Revoked)
	runtime.GC()
	start := time.Now()
	data, st, err := filter.Build(src, bopts)
	if err != nil {
		return nil, err
	}
	res.Seconds = time.Since(start).Seconds()
	res.Certificates, res.Revoked = st.Certificates, st.Revoked
	res.PerSecond = float64(st.Certificates) / res.Seconds
	res.FileBytes, res.SizeBits, res.BoundBits, res.RatioToBound = len(data), st.SizeBits, st.BoundBits, st.Ratio
	res.TableBytes = float64(st.SizeBits) / 8
	res.ConstructionTry = st.Attempts

	f, err := filter.Verify(data, vopts)
	if err != nil {
		return nil, fmt.Errorf("bench filter: built filter does not verify: %w", err)
	}
	progress("looking up every serial")
	wrong := 0
	start = time.Now()
	for i, s := range all {
		if f.RevokedBytes(s) != (i < opts.Revoked) {
			wrong++
		}
	}
	res.LookupNs = float64(time.Since(start).Nanoseconds()) / float64(len(all))
	if wrong > 0 {
		return nil, fmt.Errorf("bench filter: %d of %d lookups answered wrong", wrong, len(all))
	}
	res.Exact = true

	progress("measuring the limit: %s", filterLimitText)
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	var sink byte
	var hb [32 + 20]byte
	copy(hb[:], seed[:])
	start = time.Now()
	for _, s := range all {
		n := copy(hb[32:], s)
		d := sha256.Sum256(hb[:32+n])
		sink ^= d[0]
	}
	res.LimitSeconds = time.Since(start).Seconds()
	_ = sink
	res.LimitPerSecond = float64(len(all)) / res.LimitSeconds
	res.LimitLookupNs = res.LimitSeconds * 1e9 / float64(len(all))
	res.Ratio = res.PerSecond / res.LimitPerSecond
	res.MeetsTarget = res.Seconds <= FilterTargetSeconds && (res.BoundBits == 0 || res.RatioToBound <= FilterTargetRatio) && res.LookupNs <= FilterTargetLookupNs
	return res, nil
}

// filterSigner makes an ephemeral root and a filter signer certified for id-kp-documentSigning under it.
func filterSigner() (filter.BuildOptions, filter.VerifyOptions, error) {
	rk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return filter.BuildOptions{}, filter.VerifyOptions{}, err
	}
	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return filter.BuildOptions{}, filter.VerifyOptions{}, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	rootT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootT, rootT, &rk.PublicKey, rk)
	if err != nil {
		return filter.BuildOptions{}, filter.VerifyOptions{}, err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return filter.BuildOptions{}, filter.VerifyOptions{}, err
	}
	signerT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bench revocation filter signer"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.AddDate(0, 1, 0), KeyUsage: x509.KeyUsageDigitalSignature, UnknownExtKeyUsage: []asn1.ObjectIdentifier{filter.OIDDocumentSigning}}
	signerDER, err := x509.CreateCertificate(rand.Reader, signerT, root, &sk.PublicKey, rk)
	if err != nil {
		return filter.BuildOptions{}, filter.VerifyOptions{}, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return filter.BuildOptions{Environment: "bench", Version: 1, IssuedAt: now, NextUpdate: now.Add(7 * 24 * time.Hour), Signer: sk, Chain: [][]byte{signerDER}},
		filter.VerifyOptions{Roots: pool, Environment: "bench"}, nil
}

// insertCertificates stores count certificate rows of issuerID in transactions of 10,000 through the store
// API (not timed by any benchmark), revoking those for which revoked(i) is true with a mix of reasons. The DER
// is a shared placeholder: CRLs and OCSP never read it. Its memory does not grow with count: it returns every
// serial only if keep is set (the OCSP benchmark's thousand), and otherwise a digest of the revoked serials
// (serialDigest) that a CRL's entries must add up to.
func insertCertificates(ctx context.Context, n *node.Node, issuerID string, count int, revoked func(int) bool, keep bool, progress func(string, ...any)) ([]*big.Int, uint64, error) {
	const batch = 10000
	every := 100000
	if count > 2_000_000 {
		every = 1_000_000
	}
	der := make([]byte, 300)
	now := time.Now().UTC().Truncate(time.Second)
	randBuf := make([]byte, batch*(16+32))
	var serials []*big.Int
	var digest uint64
	rows := make([]*store.Certificate, batch)
	for i := range rows {
		rows[i] = &store.Certificate{}
	}
	for lo := 0; lo < count; lo += batch {
		hi := min(lo+batch, count)
		if _, err := rand.Read(randBuf); err != nil {
			return nil, 0, err
		}
		for i := lo; i < hi; i++ {
			b := randBuf[(i-lo)*48 : (i-lo+1)*48]
			sb := b[:16]
			sb[0] = sb[0]&0x3f | 0x40
			c := rows[i-lo]
			*c = store.Certificate{Serial: hex.EncodeToString(sb), IssuerID: issuerID, Profile: benchProfile, ProfileVersion: 1,
				Subject: fmt.Sprintf("CN=DEMO-%08d", i%100000000), NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(10, 0, 0),
				SPKISHA256: b[16:48], DER: der, Status: store.CertStatusValid, CreatedAt: now.AddDate(-1, 0, 0)}
			if revoked(i) {
				at := fixtureRevokedAt(now, i)
				c.Status, c.RevokedAt, c.RevocationReason = store.CertStatusRevoked, &at, fixtureReason(i)
				digest += serialDigest(sb)
			}
			if keep {
				serials = append(serials, new(big.Int).SetBytes(sb))
			}
		}
		err := n.Store.Tx(ctx, func(tx store.Tx) error {
			for _, c := range rows[:hi-lo] {
				if err := tx.InsertCertificate(ctx, c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
		if hi%every == 0 && hi < count {
			progress("  %d stored", hi)
		}
	}
	return serials, digest, nil
}

// fixtureReasons: decommissioning dominates in a device fleet; then superseded keys and the odd compromise.
var fixtureReasons = []int{store.ReasonCessationOfOperation, store.ReasonSuperseded, store.ReasonCessationOfOperation, store.ReasonKeyCompromise}

func fixtureReason(i int) int { return fixtureReasons[i%len(fixtureReasons)] }

// fixtureRevokedAt spreads the revocations of the fixture over the day before now.
func fixtureRevokedAt(now time.Time, i int) time.Time {
	return now.Add(-time.Duration(i%86400) * time.Second)
}

// serialDigest is what one serial adds to the digest of a set of serials: the first 8 octets of SHA-256 of
// its minimal big-endian octets, summed modulo 2^64 so that the order does not matter.
func serialDigest(serial []byte) uint64 {
	for len(serial) > 1 && serial[0] == 0 {
		serial = serial[1:]
	}
	h := sha256.Sum256(serial)
	return binary.BigEndian.Uint64(h[:8])
}

func revNode(ctx context.Context, dir, db string) (*node.Node, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(dir, "data"), DB: db, Warn: io.Discard, Logger: quiet}, Actor: "bench"})
	return n, err
}

func revWorkDir(dir, prefix string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	return d, func() { _ = os.RemoveAll(d) }, nil
}

func revProgress(w io.Writer, prefix string) func(string, ...any) {
	return func(format string, args ...any) {
		if w != nil {
			fmt.Fprintf(w, prefix+": "+format+"\n", args...)
		}
	}
}

// revPercentileMs returns the p-quantile of ds in milliseconds (ds is sorted in place).
func revPercentileMs(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(p * float64(len(ds)-1))
	return float64(ds[i]) / float64(time.Millisecond)
}
