package bench

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// IssueOptions configure the issuance benchmark.
type IssueOptions struct {
	N         int    // certificates to issue
	DB        string // "" for SQLite in a fresh directory; a postgres:// URL (a fresh, empty database or schema)
	Keystore  string // "soft" or a PKCS#11 configuration URI for the issuing CA key
	Workers   int
	BatchSize int
	// Dir is the working directory; default a new temporary one, removed afterwards. A Dir given is kept, and a
	// later run given the same Dir (and DB) measures on the store it left, prefilled or not, without loading it
	// again (reuse.go): a store of millions is loaded once and measured as often as needed.
	Dir       string
	LimitTime time.Duration // how long to measure the limit; default 3s
	Progress  io.Writer     // progress lines, or nil
	// OmitAuditState appends the audit events without the state they record (bench audit's baseline).
	OmitAuditState bool
	// CheckpointEvery, if positive, signs an audit checkpoint at this interval while issuing.
	CheckpointEvery time.Duration
	// Prefill, if positive, enrolls this many devices into the store before the timed part (prefill.go), so
	// that issuance is measured on a store of that size.
	Prefill int
	// CPUProfile, if set, is where a CPU profile of the timed part is written (go tool pprof).
	CPUProfile string
}

// IssueResult is what the issuance benchmark measured.
type IssueResult struct {
	N              int     `json:"n"`
	Issued         int     `json:"issued"`
	Failed         int     `json:"failed"`
	Seconds        float64 `json:"seconds"`
	PerSecond      float64 `json:"per_second"`
	LimitPerSecond float64 `json:"limit_per_second"`
	Ratio          float64 `json:"ratio"`
	Store          string  `json:"store"`
	Keystore       string  `json:"keystore"`
	Workers        int     `json:"workers"`
	BatchSize      int     `json:"batch_size"`
	GOMAXPROCS     int     `json:"gomaxprocs"`
	CertBytes      int     `json:"cert_der_bytes"`
	// Stamped counts the certificates of the run issued from a stamp of their profile shape (ra.IssuanceCounts);
	// the others (the first two of the shape) went through the full lint path.
	Stamped       int64 `json:"stamped"`
	AuditEvents   int64 `json:"audit_events"`
	AuditVerified bool  `json:"audit_verified"`
	// AuditVerifiedAfter: on a kept store, the event an earlier run verified the chain up to; this run verified
	// the AuditEvents after it.
	AuditVerifiedAfter int64 `json:"audit_verified_after,omitempty"`
	// CPUPer1k is the CPU time (user and system, every thread of the process: workers, writer, checkpointer)
	// the timed part used per 1,000 certificates; CPUUse that time over the elapsed time (2 is two busy cores).
	// Unlike the rate, neither counts the time the host gives to others, so they compare stores more steadily.
	CPUPer1k float64 `json:"cpu_seconds_per_1000,omitempty"`
	CPUUse   float64 `json:"cpu_use,omitempty"`
	// WarmSeconds is how long the store took to build what it keeps in memory for issuance (store.Warmer),
	// before the timed part.
	WarmSeconds float64 `json:"warm_seconds,omitempty"`
	// The prefill: devices enrolled before the timed part through the store's bulk path (each a certificate, its
	// key's glossary row, a registry row and an audit event), how long that took, what was done to the store
	// afterwards so that the measurement does not pay for the load, and the store's size then.
	Prefill             int     `json:"prefill"`
	PrefillSeconds      float64 `json:"prefill_seconds,omitempty"`
	PrefillPerSecond    float64 `json:"prefill_per_second,omitempty"`
	Settled             string  `json:"settled,omitempty"`
	StoreBytes          int64   `json:"store_bytes,omitempty"`
	BytesPerCertificate float64 `json:"bytes_per_certificate,omitempty"`
}

const benchProfile = "implant-identity"

// Issue issues opts.N compact device certificates (implant-identity) from distinct CSRs through the RA into a
// fresh store, with lint, key checks and audit, and measures beside it the in-process limit: a plain
// x509.CreateCertificate loop on all cores with the same CA key and template. CSRs are generated before the
// timed part and streamed from a file during it. With opts.Prefill, the store first receives that many
// enrolled devices (prefill.go), so that the rate is that of a store of that size.
func Issue(ctx context.Context, opts IssueOptions) (*IssueResult, error) {
	if opts.N <= 0 {
		return nil, errors.New("bench: --n must be positive")
	}
	if opts.Prefill < 0 {
		return nil, errors.New("bench: --prefill must not be negative")
	}
	if opts.N+opts.Prefill > deviceSerials {
		return nil, errPrefillRange
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.LimitTime <= 0 {
		opts.LimitTime = 3 * time.Second
	}
	dir, cleanup, err := workDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	progress := progressTo(opts.Progress)
	mark, err := readIssueMark(dir)
	if err != nil {
		return nil, err
	}
	var n *node.Node
	nodeOpts := node.Options{Dir: filepath.Join(dir, "data"), DB: opts.DB, Warn: io.Discard}
	if mark == nil {
		n, _, err = node.Init(ctx, node.InitOptions{Options: nodeOpts, Keystore: opts.Keystore, Actor: "bench"})
		mark = &issueMark{Next: opts.N} // the first measured run names DEMO-0..N-1, a prefill the serials after
	} else {
		if opts.Prefill > 0 {
			return nil, fmt.Errorf("bench: %s already holds a benchmark store (%d prefilled); run without --prefill to measure on it, or give another directory", dir, mark.Prefill)
		}
		progress("measuring on the store left in %s (%d prefilled, %d issued by earlier runs)", dir, mark.Prefill, mark.Issued)
		n, err = node.Open(ctx, nodeOpts)
	}
	if err != nil {
		return nil, err
	}
	defer n.Close()
	first := 0 // the measured run's first device serial
	if mark.Runs > 0 {
		first = mark.Next
		mark.Next += opts.N
	}
	if mark.Next+opts.Prefill > deviceSerials {
		return nil, errPrefillRange
	}
	n.RA.OmitAuditStateForBenchmark(opts.OmitAuditState)
	res := &IssueResult{N: opts.N, Workers: opts.Workers, BatchSize: opts.BatchSize, GOMAXPROCS: runtime.GOMAXPROCS(0), Store: storeName(opts.DB), Keystore: keystoreName(opts.Keystore)}

	if opts.Prefill > 0 {
		// Device serials after the measured run's (writeCSRs names index i DEMO-i): the timed issuances find no
		// registry row of their own, as on an empty store.
		p, err := prefill(ctx, n, opts.Prefill, mark.Next, progress)
		if err != nil {
			return nil, err
		}
		mark.Prefill, mark.Next = opts.Prefill, mark.Next+opts.Prefill
		res.Prefill, res.PrefillSeconds, res.Settled, res.StoreBytes = int(p.count), p.seconds, p.settled, p.bytes
		res.PrefillPerSecond = float64(p.count) / p.seconds
		res.BytesPerCertificate = float64(p.bytes) / float64(p.count)
	}

	progress("generating %d device keys and CSRs (not timed)", opts.N)
	csrFile := filepath.Join(dir, "csrs.bin")
	if err := writeCSRs(ctx, csrFile, first, opts.N); err != nil {
		return nil, err
	}

	progress("measuring the in-process limit (x509.CreateCertificate on %d cores) for %s", res.GOMAXPROCS, opts.LimitTime)
	res.LimitPerSecond, err = createCertificateLimit(ctx, n, opts.LimitTime)
	if err != nil {
		return nil, err
	}

	// What a server builds when it starts (the SQLite store's filter of certified keys) is built before the
	// timed part, as 'keyward serve' does at start; its time is reported on its own. After the limit: what it
	// keeps on the Go heap makes the collector run less often, which would raise the limit more than the
	// issuance rate (a 5 million key filter raised it by a fifth).
	if w, ok := n.Store.(store.Warmer); ok {
		progress("warming the store")
		start := time.Now()
		if err := w.Warm(ctx); err != nil {
			return nil, err
		}
		res.WarmSeconds = time.Since(start).Seconds()
	}

	f, err := os.Open(csrFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rd := bufio.NewReaderSize(f, 1<<20)
	next := func() (ra.IssueRequest, bool) {
		csr, err := readRecord(rd)
		if err != nil {
			return ra.IssueRequest{}, false
		}
		return ra.IssueRequest{Profile: benchProfile, Environment: "dev", CSR: csr}, true
	}
	var issued, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var size atomic.Int64
	progress("issuing %d certificates (workers %d, %d per transaction)", opts.N, opts.Workers, opts.BatchSize)
	runtime.GC() // not the prefill's garbage
	stopCheckpoints := checkpointEvery(ctx, n, opts.CheckpointEvery)
	stopProfile, err := cpuProfile(opts.CPUProfile)
	if err != nil {
		return nil, err
	}
	start, cpu0 := time.Now(), processCPU()
	err = n.RA.IssueStream(ctx, ra.Principal{ID: "bench", Role: ra.RoleAdmin}, ra.StreamOptions{Workers: opts.Workers, BatchSize: opts.BatchSize}, next, func(r ra.StreamResult) {
		if r.Err != nil {
			failed.Add(1)
			errOnce.Do(func() { firstErr = r.Err })
			return
		}
		size.Store(int64(len(r.Cert.DER)))
		if c := issued.Add(1); opts.Progress != nil && c%50000 == 0 {
			progress("  %d issued", c)
		}
	})
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	stopProfile()
	if cerr := stopCheckpoints(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	res.Issued, res.Failed = int(issued.Load()), int(failed.Load())
	if res.Failed > 0 {
		return nil, fmt.Errorf("bench: %d of %d issuances failed; first: %w", res.Failed, opts.N, firstErr)
	}
	res.Seconds = elapsed.Seconds()
	res.PerSecond = float64(res.Issued) / res.Seconds
	res.Ratio = res.PerSecond / res.LimitPerSecond
	if res.Issued > 0 && cpu > 0 {
		res.CPUPer1k = cpu / float64(res.Issued) * 1000
		res.CPUUse = cpu / res.Seconds
	}
	res.CertBytes = int(size.Load())
	res.Stamped = n.RA.IssuanceCounts().Stamped
	res.Prefill = mark.Prefill
	mark.Runs++
	mark.Issued += int64(res.Issued)
	// On a kept store the chain up to where an earlier run verified it is not walked again (millions of events):
	// this run's events are verified to follow it.
	progress("verifying the audit chain")
	v := audit.NewVerifier()
	if mark.AuditSeq > 0 {
		v = audit.NewVerifierAfter(mark.AuditSeq, mark.AuditHash)
		res.AuditVerifiedAfter = mark.AuditSeq
	}
	verr := n.Store.WalkAudit(ctx, mark.AuditSeq, v.Next)
	res.AuditEvents = v.Count()
	if verr == nil {
		mark.AuditSeq, mark.AuditHash = v.Last()
	}
	if opts.Dir != "" {
		if err := writeIssueMark(dir, mark); err != nil {
			return nil, err
		}
	}
	if verr != nil {
		return nil, verr
	}
	res.AuditVerified = true
	return res, nil
}

// createCertificateLimit runs x509.CreateCertificate in a loop on every core with the issuing CA's key and one
// implant-identity template, and returns certificates per second.
func createCertificateLimit(ctx context.Context, n *node.Node, d time.Duration) (float64, error) {
	ca, err := n.Store.GetCA(ctx, hierarchy.IssuingID("dev", "demo-implant"))
	if err != nil {
		return 0, err
	}
	caCert, err := x509.ParseCertificate(ca.CertDER)
	if err != nil {
		return 0, err
	}
	signer, err := n.Keys.Signer(ctx, ca.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		return 0, err
	}
	devKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return 0, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "DEMO-00000001"}}, devKey)
	if err != nil {
		return 0, err
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	serial, err := issuer.NewSerial(time.Now())
	if err != nil {
		return 0, err
	}
	tmpl, err := n.Profiles[benchProfile].Template(&profile.Request{CSR: csr, Role: ra.RoleAdmin}, serial, time.Now(), caCert)
	if err != nil {
		return 0, err
	}
	var count atomic.Int64
	var wg sync.WaitGroup
	var failure atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &devKey.PublicKey, signer); err != nil {
					failure.Store(err)
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := failure.Load().(error); err != nil {
		return 0, fmt.Errorf("limit loop: %w", err)
	}
	return float64(count.Load()) / time.Since(start).Seconds(), nil
}

// writeCSRs writes n length-prefixed DER CSRs with distinct P-256 keys and serial-number subjects.
func writeCSRs(ctx context.Context, path string, first, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	workers := runtime.GOMAXPROCS(0)
	out := make(chan []byte, 1024)
	idx := make(chan int, 1024)
	var wg sync.WaitGroup
	var genErr atomic.Value
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err == nil {
					var der []byte
					der, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("DEMO-%08d", i)}}, k)
					if err == nil {
						out <- der
						continue
					}
				}
				genErr.Store(err)
				out <- nil
			}
		}()
	}
	go func() {
		defer close(idx)
		for i := first; i < first+n; i++ {
			select {
			case idx <- i % deviceSerials:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(out) }()
	for der := range out {
		if der == nil {
			continue
		}
		if err := writeRecord(w, der); err != nil {
			return err
		}
	}
	if err, _ := genErr.Load().(error); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return w.Flush()
}

func writeRecord(w io.Writer, b []byte) error {
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(b)))
	if _, err := w.Write(l[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func readRecord(r io.Reader) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(l[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

func storeName(db string) string {
	if db == "" || len(db) >= 7 && db[:7] == "sqlite:" {
		return "sqlite"
	}
	return "postgres"
}

func keystoreName(ks string) string {
	if len(ks) >= 7 && ks[:7] == "pkcs11:" {
		return "pkcs11"
	}
	return "soft"
}
