package bench

// The CRL benchmark: a complete CRL of a million (or ten million) revoked certificates published from a store,
// with the publication's peak resident memory, beside x509.CreateRevocationList over the same entries.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
)

// CRLOptions configure the CRL benchmark.
type CRLOptions struct {
	Revoked int    // revoked certificates in the store; default 1,000,000
	DB      string // "" for SQLite in the working directory; a postgres:// URL naming an empty database or schema
	// Dir is the working directory; default a new temporary one, removed afterwards. A directory given here is
	// kept, and a later run with the same Revoked and DB reuses the certificates stored in it (crlFixtureFile)
	// instead of storing them again.
	Dir string
	// CPUProfile, if set, is where a CPU profile of the timed publication is written (go tool pprof).
	CPUProfile string
	Progress   io.Writer
}

// CRLResult is what the CRL benchmark measured.
type CRLResult struct {
	Revoked int `json:"revoked"`
	Entries int `json:"entries"`
	// Seconds is the whole publication: CRL number, reading the revoked rows from the store, encoding the
	// entries, signing the complete CRL and its empty delta, storing both.
	Seconds       float64 `json:"seconds"`
	PerSecond     float64 `json:"per_second"` // entries per second
	Bytes         int64   `json:"bytes"`
	BytesPerEntry float64 `json:"bytes_per_entry"`
	// Chunks is how many store.CRLChunkSize pieces the CRL is stored in (0: stored whole).
	Chunks int `json:"chunks"`
	// PeakRSSBytes is the process's peak resident memory during the publication (Linux VmHWM, reset just
	// before it), RSSBeforeBytes its resident memory just before (after a garbage collection): the
	// publication's own memory is the difference. RSSScope says what PeakRSSBytes covers: "publication", or
	// "process" where the peak could not be reset (the whole run so far), or "unavailable" off Linux.
	// CPUSeconds is the CPU time (user and system, every thread) the process spent during the publication
	// (Linux; 0 elsewhere): beside Seconds, how much of the machine's cores the publication used.
	CPUSeconds float64 `json:"cpu_seconds"`
	// PeakHeapBytes is the highest Go heap in use (objects, live or not yet collected) sampled every 5 ms
	// during the publication: the part of the resident memory that is the publication's own, without the
	// database's caches (SQLite's page caches fill up to their configured size as it reads and writes).
	PeakHeapBytes  int64  `json:"peak_heap_bytes"`
	PeakRSSBytes   int64  `json:"peak_rss_bytes"`
	RSSBeforeBytes int64  `json:"rss_before_bytes"`
	RSSScope       string `json:"rss_scope"`
	// WalkSeconds is one store walk alone (WalkRevoked over the same rows, one range, one connection),
	// measured separately; the publication reads several ranges at once.
	WalkSeconds float64 `json:"walk_seconds"`
	// The limit: x509.CreateRevocationList alone over the same entries, extensions and CA key.
	Limit          string  `json:"limit"`
	LimitSeconds   float64 `json:"limit_seconds"`
	LimitPerSecond float64 `json:"limit_per_second"`
	Ratio          float64 `json:"ratio"` // per_second / limit_per_second
	TargetSeconds  float64 `json:"target_seconds"`
	MeetsTarget    bool    `json:"meets_target"`
	// Verified: the CRL read back from the store parses, its signature verifies under the CA certificate, and
	// it lists every revoked serial once, in serial order, with its reason and date. Up to 2,000,000 entries it
	// is also parsed whole with x509.ParseRevocationList.
	Verified     bool    `json:"verified"`
	SetupSeconds float64 `json:"setup_seconds"`
	Reused       bool    `json:"reused_store,omitempty"` // the certificates were stored by an earlier run in Dir
	// Settled says what was done to the store after storing the certificates, before the timed part
	// (store.BulkLoader.SettleBulk).
	Settled    string `json:"settled,omitempty"`
	Store      string `json:"store"`
	GOMAXPROCS int    `json:"gomaxprocs"`
}

const crlLimitText = "x509.CreateRevocationList alone: same entries, extensions and CA key, entries already in memory"

// crlFixtureFile, in a kept working directory, records the certificates a run stored, for the next run.
const crlFixtureFile = "crl-fixture.json"

type crlFixture struct {
	Revoked int    `json:"revoked"`
	Store   string `json:"store"`
	// DB names the --db the certificates are in by its SHA-256, not its text, which may hold a password.
	DB     string `json:"db_sha256,omitempty"`
	Digest uint64 `json:"serial_digest"`
	// At is when the fixture was stored: its revocation dates lie in the day before.
	At time.Time `json:"at"`
}

// CRL stores opts.Revoked revoked certificates of the dev issuing CA in a fresh store (in bulk, not timed),
// then times one complete CRL publication (revocation.Service.PublishCRLs) with its peak resident memory,
// checks the CRL read back from the store, and measures, in the same run, the raw library cost of signing a
// CRL of the same entries with x509.CreateRevocationList.
func CRL(ctx context.Context, opts CRLOptions) (*CRLResult, error) {
	if opts.Revoked < 0 {
		return nil, errors.New("bench crl: --revoked must not be negative")
	}
	if opts.Revoked == 0 {
		opts.Revoked = 1_000_000
	}
	progress := revProgress(opts.Progress, "bench crl")
	dir, cleanup, err := revWorkDir(opts.Dir, "keyward-bench-crl-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	n, err := revNode(ctx, dir, opts.DB)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	caID := hierarchy.IssuingID("dev", revocationBenchCAProd)
	res := &CRLResult{Revoked: opts.Revoked, Limit: crlLimitText, TargetSeconds: CRLTargetSeconds, Store: storeName(opts.DB),
		GOMAXPROCS: runtime.GOMAXPROCS(0)}
	setup := time.Now()
	fixture, err := crlStoreFixture(ctx, n, dir, caID, opts, res.Store, progress)
	if err != nil {
		return nil, err
	}
	// The certificates were just written (or the last run's CRL was): the store is left as one in service
	// would be when a publication starts. SQLite: without this the checkpointer was still copying the load's
	// WAL into the database during the timed publication (1.16-1.53 s fresh against 0.90-1.09 s on a kept
	// fixture). PostgreSQL: without a vacuum there is no visibility map for the table, so the CRL's
	// index-only scans fetch every row from the heap and set its hint bits on first read; autovacuum would
	// have done it in service.
	if l, ok := n.Store.(store.BulkLoader); ok {
		progress("settling the store (not timed)")
		if res.Settled, err = l.SettleBulk(ctx); err != nil {
			return nil, err
		}
	}
	res.SetupSeconds, res.Reused = time.Since(setup).Seconds(), fixture.reused
	svc := revocation.New(n.RA, n.CA, n.Store)
	cfg := revocation.CRLConfig{SpoolDir: dir}

	progress("publishing the complete CRL of %s (timed)", caID)
	runtime.GC()
	debug.FreeOSMemory()
	res.RSSBeforeBytes, res.RSSScope = startPeakRSS()
	stopProfile, err := cpuProfile(opts.CPUProfile)
	if err != nil {
		return nil, err
	}
	cpu0 := processCPU()
	heap := sampleHeap(5 * time.Millisecond)
	start := time.Now()
	row, err := svc.PublishCRLs(ctx, caID, cfg)
	res.Seconds = time.Since(start).Seconds()
	res.CPUSeconds = processCPU() - cpu0
	res.PeakHeapBytes = heap()
	stopProfile()
	res.PeakRSSBytes = peakRSS(res.RSSScope)
	if err != nil {
		return nil, err
	}
	res.Entries, res.Bytes = row.Entries, row.Size
	if row.Chunked() {
		res.Chunks = store.CRLChunks(row.Size)
	}
	res.PerSecond = float64(res.Entries) / res.Seconds
	if res.Entries > 0 {
		res.BytesPerEntry = float64(res.Bytes) / float64(res.Entries)
	}
	res.MeetsTarget = res.Seconds <= CRLTargetSeconds

	progress("verifying the CRL read back from the store")
	ca, err := n.Store.GetCA(ctx, caID)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(ca.CertDER)
	if err != nil {
		return nil, err
	}
	check, err := checkCRL(bufio.NewReaderSize(svc.OpenCRL(ctx, row), 1<<20), caCert, fixture.At)
	if err != nil {
		return nil, fmt.Errorf("bench crl: published CRL: %w", err)
	}
	if check.entries != opts.Revoked || res.Entries != opts.Revoked || check.digest != fixture.Digest {
		return nil, fmt.Errorf("bench crl: CRL lists %d entries (row says %d), want the %d revoked serials stored (digest %x, want %x)",
			check.entries, res.Entries, opts.Revoked, check.digest, fixture.Digest)
	}
	if check.badEntry != "" {
		return nil, fmt.Errorf("bench crl: %s", check.badEntry)
	}
	if row.Size <= 2_000_000*50 {
		var buf bytes.Buffer
		if err := svc.WriteCRL(ctx, row, &buf); err != nil {
			return nil, err
		}
		rl, err := x509.ParseRevocationList(buf.Bytes())
		if err != nil {
			return nil, fmt.Errorf("bench crl: published CRL does not parse: %w", err)
		}
		if err := rl.CheckSignatureFrom(caCert); err != nil {
			return nil, fmt.Errorf("bench crl: published CRL signature: %w", err)
		}
		if len(rl.RevokedCertificateEntries) != opts.Revoked {
			return nil, fmt.Errorf("bench crl: x509 reads %d entries, want %d", len(rl.RevokedCertificateEntries), opts.Revoked)
		}
	}
	res.Verified = true

	progress("walking the revoked rows alone")
	runtime.GC()
	start = time.Now()
	walked := 0
	q := store.RevokedQuery{IssuerID: caID, NotAfterFrom: time.Now()}
	if err := svc.Reader().WalkRevoked(ctx, q, func(*store.RevocationEntry) error { walked++; return nil }); err != nil {
		return nil, err
	}
	res.WalkSeconds = time.Since(start).Seconds()
	if walked != opts.Revoked {
		return nil, fmt.Errorf("bench crl: walk found %d revoked rows, want %d", walked, opts.Revoked)
	}

	progress("measuring the limit: %s", crlLimitText)
	// The limit signs with the extensions Keyward chose (issuing distribution point, freshestCRL);
	// CreateRevocationList adds the AKI and CRL number itself. Its entries are read from the store (not timed).
	entries := make([]x509.RevocationListEntry, 0, opts.Revoked)
	if err := svc.Reader().WalkRevoked(ctx, q, func(e *store.RevocationEntry) error {
		serial, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok {
			return fmt.Errorf("bench crl: stored serial %q", e.Serial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: *e.RevokedAt, ReasonCode: e.Reason})
		return nil
	}); err != nil {
		return nil, err
	}
	signer, err := n.Keys.Signer(ctx, ca.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	tmpl := &x509.RevocationList{RevokedCertificateEntries: entries, Number: big.NewInt(row.Number + 100), ThisUpdate: now,
		NextUpdate: now.Add(48 * time.Hour), ExtraExtensions: check.extensions}
	runtime.GC()
	start = time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, caCert, signer)
	if err != nil {
		return nil, fmt.Errorf("bench crl: limit: %w", err)
	}
	res.LimitSeconds = time.Since(start).Seconds()
	if len(der) == 0 {
		return nil, errors.New("bench crl: limit produced an empty CRL")
	}
	res.LimitPerSecond = float64(len(entries)) / res.LimitSeconds
	if res.LimitPerSecond > 0 {
		res.Ratio = res.PerSecond / res.LimitPerSecond
	}
	return res, nil
}

type storedFixture struct {
	crlFixture
	reused bool
}

// crlStoreFixture stores the revoked certificates of the benchmark, or finds those an earlier run with the
// same options stored in a kept working directory.
func crlStoreFixture(ctx context.Context, n *node.Node, dir, caID string, opts CRLOptions, storeKind string, progress func(string, ...any)) (*storedFixture, error) {
	path := filepath.Join(dir, crlFixtureFile)
	db := ""
	if opts.DB != "" {
		sum := sha256.Sum256([]byte(opts.DB))
		db = hex.EncodeToString(sum[:])
	}
	if opts.Dir != "" {
		if b, err := os.ReadFile(path); err == nil {
			var f crlFixture
			if err := json.Unmarshal(b, &f); err != nil {
				return nil, fmt.Errorf("bench crl: %s: %w", path, err)
			}
			if f.Revoked == opts.Revoked && f.Store == storeKind && f.DB == db {
				if time.Since(f.At) > 9*365*24*time.Hour {
					return nil, fmt.Errorf("bench crl: the certificates stored in %s are about to expire: use a new --dir", dir)
				}
				progress("reusing the %d revoked certificates stored in %s", f.Revoked, dir)
				return &storedFixture{crlFixture: f, reused: true}, nil
			}
			return nil, fmt.Errorf("bench crl: %s holds %d revoked certificates (%s): give a new --dir for --revoked %d", dir, f.Revoked, f.Store, opts.Revoked)
		}
	}
	// A run stopped while it stored its certificates leaves them without the file that counts them.
	if first, _, err := n.Store.RevokedSerialRange(ctx, caID); err != nil {
		return nil, err
	} else if first != "" {
		return nil, fmt.Errorf("bench crl: the store in %s already holds revoked certificates of %s, not recorded in %s (a run stopped while storing them?): give a new --dir",
			dir, caID, crlFixtureFile)
	}
	progress("storing %d revoked certificates (not timed)", opts.Revoked)
	_, digest, err := insertCertificates(ctx, n, caID, opts.Revoked, func(int) bool { return true }, false, progress)
	if err != nil {
		return nil, err
	}
	f := crlFixture{Revoked: opts.Revoked, Store: storeKind, DB: db, Digest: digest, At: time.Now().UTC()}
	if opts.Dir != "" {
		b, err := json.Marshal(f)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, err
		}
	}
	return &storedFixture{crlFixture: f}, nil
}

// sampleHeap samples the Go heap in use every interval until the function it returns is called, which returns
// the highest sample.
func sampleHeap(interval time.Duration) func() int64 {
	stop, done := make(chan struct{}), make(chan int64)
	go func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		var peak uint64
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-stop:
				done <- int64(peak)
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(stop)
		return <-done
	}
}

// startPeakRSS starts a measurement of peak resident memory: on Linux, writing 5 to /proc/self/clear_refs
// resets VmHWM to the current resident set (proc(5), Linux 4.0). It returns the resident set now and what the
// peak will cover.
func startPeakRSS() (int64, string) {
	rss, ok := procStatus("VmRSS")
	if !ok {
		return 0, "unavailable"
	}
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return rss, "process"
	}
	return rss, "publication"
}

// peakRSS reads the peak resident memory (VmHWM) since startPeakRSS, or 0 where it is unavailable.
func peakRSS(scope string) int64 {
	if scope == "unavailable" {
		return 0
	}
	v, _ := procStatus("VmHWM")
	return v
}

// processCPU returns the CPU time the process has used, user and system, in seconds (fields 14 and 15 of
// /proc/self/stat, in clock ticks of 1/100 s on Linux), or 0 off Linux.
func processCPU() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The command name, field 2, is in parentheses and may hold spaces: count fields after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	user, err1 := strconv.ParseInt(f[11], 10, 64)
	sys, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return float64(user+sys) / 100
}

// procStatus reads a field of /proc/self/status given in kB, in bytes.
func procStatus(field string) (int64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		return kb << 10, err == nil
	}
	return 0, false
}

// crlCheck is what checkCRL read.
type crlCheck struct {
	entries    int
	digest     uint64 // of the serials (serialDigest)
	badEntry   string // the first entry out of order, or without a reason or a plausible date
	first      time.Time
	last       time.Time // the earliest and latest revocation dates
	extensions []pkix.Extension
}

// checkCRL reads a DER CRL from r in one pass, in memory that does not grow with its entries: it verifies
// the signature of the TBSCertList as it hashes it, and checks that the entries are in strictly increasing
// serial order (each listed once), each with a reason code and a revocation date no later than stored, when
// the fixture was stored, all within one day (fixtureRevokedAt). It returns the CRL extensions after the AKI
// and the CRL number.
func checkCRL(r *bufio.Reader, caCert *x509.Certificate, stored time.Time) (*crlCheck, error) {
	var alg crypto.Hash
	switch k := caCert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			alg = crypto.SHA256
		case 384:
			alg = crypto.SHA384
		default:
			alg = crypto.SHA512
		}
	case *rsa.PublicKey:
		alg = crypto.SHA256
	default:
		return nil, fmt.Errorf("CA key %T: the streaming check verifies ECDSA and RSA signatures", k)
	}
	d := &derStream{r: r}
	if _, err := d.header(cbasn1.SEQUENCE); err != nil { // CertificateList
		return nil, err
	}
	h := alg.New()
	d.hash = h
	tbsLen, err := d.header(cbasn1.SEQUENCE)
	if err != nil {
		return nil, err
	}
	tbsEnd := d.n + tbsLen
	// version, signature, issuer, thisUpdate, nextUpdate
	var thisUpdate time.Time
	var sigAlg []byte
	for i := range 5 {
		_, el, err := d.element(1 << 16)
		if err != nil {
			return nil, err
		}
		if i == 1 {
			sigAlg = el
		}
		if i == 3 && !readTime(cryptobyte.String(el), &thisUpdate) {
			return nil, errors.New("thisUpdate unreadable")
		}
	}
	c := &crlCheck{}
	tag, err := d.peek()
	if err != nil {
		return nil, err
	}
	if tag == cbasn1.SEQUENCE {
		n, err := d.header(cbasn1.SEQUENCE)
		if err != nil {
			return nil, err
		}
		end := d.n + n
		var prev []byte
		for d.n < end {
			_, el, err := d.element(1 << 10)
			if err != nil {
				return nil, fmt.Errorf("entry %d: %w", c.entries, err)
			}
			s := cryptobyte.String(el)
			var entry, serial, when cryptobyte.String
			var at time.Time
			if !s.ReadASN1(&entry, cbasn1.SEQUENCE) || !entry.ReadASN1(&serial, cbasn1.INTEGER) || !entry.ReadAnyASN1Element(&when, nil) ||
				!readTime(when, &at) {
				return nil, fmt.Errorf("entry %d is not a RevokedCertificate with a revocation date", c.entries)
			}
			if c.badEntry == "" {
				switch {
				case prev != nil && bytes.Compare(prev, serial) >= 0:
					c.badEntry = fmt.Sprintf("entry %d: serial %x does not follow %x", c.entries, []byte(serial), prev)
				case at.After(stored) || at.After(thisUpdate):
					c.badEntry = fmt.Sprintf("entry %d: revocation date %s is after the certificates were stored (%s)", c.entries, at, stored)
				case len(entry) == 0:
					c.badEntry = fmt.Sprintf("entry %d: no reason code", c.entries)
				}
			}
			if c.entries == 0 || at.Before(c.first) {
				c.first = at
			}
			if c.entries == 0 || at.After(c.last) {
				c.last = at
			}
			prev = append(prev[:0], serial...)
			c.digest += serialDigest(serial)
			c.entries++
		}
	}
	if c.badEntry == "" && c.last.Sub(c.first) >= 24*time.Hour {
		c.badEntry = fmt.Sprintf("revocation dates from %s to %s: the fixture spreads them over one day", c.first, c.last)
	}
	if d.n < tbsEnd {
		_, el, err := d.element(1 << 16) // crlExtensions [0]
		if err != nil {
			return nil, err
		}
		var exts []pkix.Extension
		var seq asn1.RawValue
		if _, err := asn1.Unmarshal(el, &seq); err != nil {
			return nil, fmt.Errorf("crlExtensions: %w", err)
		}
		if _, err := asn1.Unmarshal(seq.Bytes, &exts); err != nil {
			return nil, fmt.Errorf("crlExtensions: %w", err)
		}
		for _, e := range exts {
			if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 28}) || e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 46}) {
				c.extensions = append(c.extensions, e)
			}
		}
	}
	if d.n != tbsEnd {
		return nil, errors.New("TBSCertList longer than its header says")
	}
	d.hash = nil
	digest := h.Sum(nil)
	// RFC 5280 5.1.1.2: signatureAlgorithm is the TBSCertList's signature field.
	if _, alg, err := d.element(1 << 10); err != nil {
		return nil, err
	} else if !bytes.Equal(alg, sigAlg) {
		return nil, errors.New("signatureAlgorithm differs from the TBSCertList's signature field")
	}
	_, sig, err := d.element(1 << 12)
	if err != nil {
		return nil, err
	}
	var bits asn1.BitString
	if _, err := asn1.Unmarshal(sig, &bits); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return nil, errors.New("data after the CRL")
	}
	ok := false
	switch k := caCert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest, bits.Bytes)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, alg, digest, bits.Bytes) == nil
	}
	if !ok {
		return nil, errors.New("the signature does not verify under the CA certificate")
	}
	return c, nil
}

// readTime reads a DER UTCTime or GeneralizedTime.
func readTime(s cryptobyte.String, t *time.Time) bool {
	if s.PeekASN1Tag(cbasn1.UTCTime) {
		return s.ReadASN1UTCTime(t)
	}
	return s.ReadASN1GeneralizedTime(t)
}

// derStream reads DER elements from a stream, counting the octets and hashing them while hash is set.
type derStream struct {
	r    *bufio.Reader
	n    int64
	hash io.Writer
}

func (d *derStream) read(p []byte) error {
	if _, err := io.ReadFull(d.r, p); err != nil {
		return err
	}
	d.n += int64(len(p))
	if d.hash != nil {
		_, _ = d.hash.Write(p) // a hash never fails
	}
	return nil
}

func (d *derStream) peek() (cbasn1.Tag, error) {
	b, err := d.r.Peek(1)
	if err != nil {
		return 0, err
	}
	return cbasn1.Tag(b[0]), nil
}

// header reads the identifier and length octets of an element that must have tag, and returns its length.
func (d *derStream) header(tag cbasn1.Tag) (int64, error) {
	t, n, _, err := d.readHeader()
	if err != nil {
		return 0, err
	}
	if t != tag {
		return 0, fmt.Errorf("tag %#x where %#x was expected", t, tag)
	}
	return n, nil
}

func (d *derStream) readHeader() (cbasn1.Tag, int64, []byte, error) {
	var hdr [2]byte
	if err := d.read(hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	raw := []byte{hdr[0], hdr[1]}
	n := int64(hdr[1])
	if hdr[1]&0x80 != 0 {
		octets := int(hdr[1] & 0x7f)
		if octets == 0 || octets > 8 {
			return 0, 0, nil, errors.New("DER length unsupported")
		}
		l := make([]byte, octets)
		if err := d.read(l); err != nil {
			return 0, 0, nil, err
		}
		raw = append(raw, l...)
		if l[0] == 0 {
			return 0, 0, nil, errors.New("DER length not minimal")
		}
		n = 0
		for _, b := range l {
			n = n<<8 | int64(b)
		}
		if n < 0x80 || n < 0 {
			return 0, 0, nil, errors.New("DER length not minimal")
		}
	}
	return cbasn1.Tag(hdr[0]), n, raw, nil
}

// element reads a whole element of at most limit octets of content and returns its tag and its encoding.
func (d *derStream) element(limit int64) (cbasn1.Tag, []byte, error) {
	tag, n, raw, err := d.readHeader()
	if err != nil {
		return 0, nil, err
	}
	if n > limit {
		return 0, nil, fmt.Errorf("element of %d octets, more than %d", n, limit)
	}
	content := make([]byte, n)
	if err := d.read(content); err != nil {
		return 0, nil, err
	}
	return tag, append(raw, content...), nil
}
