package factory

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/kbkdf"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
)

// BatchRequest describes a credential batch.
type BatchRequest struct {
	Env, Product, Site string
	Count              int64
	// FirstSerial is the device serial (certificate common name) of credential 0; credential i gets the serial
	// with i added to its trailing digits, keeping their width (DEMO-00000001, DEMO-00000002, ...).
	FirstSerial string
	// Custody generates the device keys: a PKCS#11 keystore (the site HSM), or nil for software-wrapped keys,
	// which only the dev environment allows.
	Custody keystore.Keystore
	// TransportKey is the transport master key for software-wrapped keys (32 bytes).
	TransportKey []byte
	Out          string
	Workers      int // parallel signers; default GOMAXPROCS
	// Checkpoint is the credentials per fsync, default 256. It is also the chunk of stamped issuance: the
	// first certificate of each chunk goes through the full path (template, lint, signature) and the others
	// are stamped from it, with the same validity.
	Checkpoint int
	// Progress is called after every checkpoint with the credentials in the file and the count.
	Progress func(done, total int64)
	// Symmetric lists the symmetric purposes (keystore.SymmetricPurposes) whose device keys each credential
	// carries besides its identity, derived from the newest version of the product line's key-derivation key
	// (SP 800-108r1, internal/kbkdf): wrapped under the device's transport key with software custody; with
	// PKCS#11 custody derived in the site HSM, which must hold the KDK, and wrapped there at injection.
	Symmetric []string
	// StopAfter, if positive, stops the run with ErrStopped after that many credentials were written by it
	// (a test hook standing in for a crash at a checkpoint).
	StopAfter int64

	// editTemplate, if set, changes every certificate template: a test hook standing in for a profile whose
	// certificates cannot be stamped.
	editTemplate func(*x509.Certificate)
}

// BatchSummary reports a batch run.
type BatchSummary struct {
	Path        string        `json:"path"`
	BatchID     string        `json:"batch_id"`
	SiteCA      string        `json:"site_ca"`
	Custody     string        `json:"custody"`
	Count       int64         `json:"count"`
	Resumed     int64         `json:"resumed_from"` // credentials already in the file when this run started
	Written     int64         `json:"written"`      // credentials this run wrote
	FirstSerial string        `json:"first_serial"`
	LastSerial  string        `json:"last_serial"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	PerSecond   float64       `json:"per_second"`
	Bytes       int64         `json:"bytes"`
	// Stamped counts the credentials of this run whose certificate was stamped from the fully linted first
	// certificate of its chunk (issuer.Stamp); the others went through the full path.
	Stamped int64 `json:"stamped"`
	// StampRefused says why, if ever, a chunk or credential could not be stamped and took the full path.
	StampRefused string `json:"stamp_refused,omitempty"`
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// job is one batch run's state shared by the workers.
type job struct {
	f        *Factory
	hdr      BatchHeader
	site     *ra.SiteCA
	prof     *profile.Profile
	cnRule   *regexp.Regexp
	serials  ra.SerialRange
	iss      *ca.Issuer
	custody  keystore.Keystore
	alg      keystore.Algorithm
	master   []byte
	maxDER   issuer.PrepareOption
	issueEnd time.Time
	edit     func(*x509.Certificate)
	kdks     []BatchKDK // the header's: the KDK version of each symmetric purpose

	stamped atomic.Int64
	refusal sync.Once
	refused string // the first reason a stamp was refused
}

// factoryRole is the principal a batch requests certificates as (the profile's allowed_principals).
const factoryRole = "factory-station"

// Batch generates (or resumes) the credential batch req.Out: req.Count device keys and their certificates under
// the site CA of (Env, Product, Site). Memory does not grow with Count: credentials are produced in chunks of
// Checkpoint (the next one while the last is written), written in index order and fsynced. If req.Out exists,
// its header must describe the same job, and the run continues after its last whole credential (a torn last
// frame is cut off) under the file's exclusive lock. The RA decides a new batch, reserving Count from the site
// CA's quota, and a resumed one, before anything is signed; it hands out the site CA's signing handle.
func (f *Factory) Batch(ctx context.Context, req BatchRequest) (*BatchSummary, error) {
	sum, err := f.batch(ctx, req)
	return sum, notFound(err)
}

func (f *Factory) batch(ctx context.Context, req BatchRequest) (*BatchSummary, error) {
	start := time.Now()
	if req.Count <= 0 {
		return nil, badRequest("--count %d: a batch needs at least one credential", req.Count)
	}
	if req.Out == "" {
		return nil, badRequest("--out is required")
	}
	// A file of another job is refused first, whatever else is wrong with the request.
	if res, err := scanFile(req.Out, nil, nil); err == nil {
		h := res.Header
		want := h
		want.Environment, want.ProductLine, want.Site, want.Count, want.FirstSerial = req.Env, req.Product, req.Site, req.Count, req.FirstSerial
		if err := sameJob(req.Out, h, want); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	site, err := f.RA.FactorySite(ctx, req.Env, req.Product, req.Site)
	if err != nil {
		return nil, err
	}
	prof := f.RA.Profiles()[site.Site.Profile]
	if prof == nil {
		return nil, fmt.Errorf("%w: site CA %s issues profile %q, which is not loaded", ErrBadRequest, site.CA.ID, site.Site.Profile)
	}
	cnRule, err := regexp.Compile(site.Site.CNPattern)
	if err != nil {
		return nil, fmt.Errorf("site CA %s: recorded subject rule %q: %w", site.CA.ID, site.Site.CNPattern, err)
	}
	j := &job{f: f, site: site, prof: prof, cnRule: cnRule, custody: req.Custody, issueEnd: site.Site.IssueUntil, edit: req.editTemplate}
	custody := CustodyPKCS11
	switch {
	case req.Custody == nil:
		custody = CustodyWrapped
		if len(req.TransportKey) != TransportKeySize {
			return nil, badRequest("software-wrapped device keys need a %d-byte transport key", TransportKeySize)
		}
		j.master = req.TransportKey
	case req.Custody.Location() != keystore.LocationPKCS11:
		return nil, badRequest("device keys go to a PKCS#11 token (or, in dev, software-wrapped with --keystore soft), not to the %s keystore", req.Custody.Location())
	}
	if len(prof.KeyAlgorithms) == 0 {
		return nil, fmt.Errorf("profile %q allows no key algorithm", prof.Name)
	}
	j.alg = prof.KeyAlgorithms[0]
	if j.serials, err = ra.ParseSerialRange(req.FirstSerial, req.Count); err != nil {
		return nil, err
	}
	kdks, err := f.batchKDKs(ctx, req)
	if err != nil {
		return nil, err
	}
	caSum := sha256.Sum256(site.CA.CertDER)
	want := BatchHeader{Version: 1, Environment: req.Env, ProductLine: req.Product, Site: req.Site, SiteCA: site.CA.ID,
		SiteCASHA256: hex.EncodeToString(caSum[:]), Profile: prof.Name, ProfileVersion: prof.Version, Count: req.Count,
		FirstSerial: req.FirstSerial, Custody: custody, Symmetric: kdks}
	if j.master != nil {
		want.TransportKCV = TransportKCV(j.master)
	}
	batch := func(h BatchHeader) ra.Batch {
		return ra.Batch{SiteCA: h.SiteCA, BatchID: h.BatchID, Count: h.Count, FirstSerial: h.FirstSerial, Custody: h.Custody}
	}

	var file *os.File
	var have int64
	switch _, statErr := os.Stat(req.Out); {
	case statErr == nil:
		if file, err = os.OpenFile(req.Out, os.O_RDWR, 0); err != nil {
			return nil, err
		}
		// The same exclusive lock as 'factory inject' takes: a resume never cuts a file an injector is
		// appending to, and the scan below sees what the truncation will keep.
		if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = file.Close()
			return nil, fmt.Errorf("%w: %s is in use by another process (a batch or an injection): %v", ErrConflict, req.Out, err)
		}
		res, err := scanFile(req.Out, nil, nil)
		if err != nil {
			_ = file.Close()
			return nil, err
		}
		if err := sameJob(req.Out, res.Header, want); err != nil {
			_ = file.Close()
			return nil, err
		}
		j.hdr, have = res.Header, res.Credentials
		// A resumed batch derives with the KDK versions it started with, whatever was rotated since.
		j.kdks = res.Header.Symmetric
		// Cut a torn last frame: everything after the last whole credential is rewritten.
		if err := file.Truncate(res.End); err != nil {
			_ = file.Close()
			return nil, fmt.Errorf("cut the torn tail of %s: %w", req.Out, err)
		}
		if _, err := file.Seek(res.End, 0); err != nil {
			_ = file.Close()
			return nil, err
		}
		if have < req.Count {
			if j.iss, err = f.RA.ResumeBatch(ctx, f.Principal, batch(j.hdr), have); err != nil {
				_ = file.Close()
				return nil, err
			}
		}
	case errors.Is(statErr, os.ErrNotExist):
		want.CreatedAt = f.now()
		var id [16]byte
		if _, err := rand.Read(id[:]); err != nil {
			return nil, err
		}
		want.BatchID = hex.EncodeToString(id[:])
		if j.iss, err = f.RA.StartBatch(ctx, f.Principal, batch(want)); err != nil {
			return nil, err
		}
		if file, err = createBatchFile(req.Out, want); err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = file.Close()
			return nil, fmt.Errorf("%w: %s is in use by another process: %v", ErrConflict, req.Out, err)
		}
		j.hdr, j.kdks = want, want.Symmetric
	default:
		return nil, statErr
	}
	defer file.Close()

	sum := &BatchSummary{Path: req.Out, BatchID: j.hdr.BatchID, SiteCA: site.CA.ID, Custody: custody, Count: req.Count, Resumed: have,
		FirstSerial: j.serials.At(0), LastSerial: j.serials.At(req.Count - 1)}
	finish := func() *BatchSummary {
		sum.Elapsed = time.Since(start)
		if sum.Elapsed > 0 {
			sum.PerSecond = float64(sum.Written) / sum.Elapsed.Seconds()
		}
		if st, err := file.Stat(); err == nil {
			sum.Bytes = st.Size()
		}
		sum.Stamped = j.stamped.Load()
		sum.StampRefused = j.refused
		return sum
	}
	if have == req.Count {
		return finish(), nil
	}
	j.maxDER = issuer.MaxDERSize(prof.MaxDERSize)

	workers := req.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	chunk := req.Checkpoint
	if chunk <= 0 {
		chunk = 256
	}
	// Chunk k+1 is produced while chunk k is written and fsynced, in two sets of buffers used in turn. The
	// file still grows by whole chunks in index order, and Progress reports what is synced.
	type chunkBufs struct {
		creds  []Credential
		frames [][]byte // each credential's frame, encoded by the worker that made it
		buf    []byte
	}
	var bufs [2]chunkBufs
	for k := range bufs {
		bufs[k] = chunkBufs{creds: make([]Credential, chunk), frames: make([][]byte, chunk), buf: make([]byte, 0, chunk*1024)}
	}
	var (
		writing  chan error // the write in flight, or nil
		inFlight int64      // its credentials
	)
	// synced waits for the write in flight and counts its credentials.
	synced := func() error {
		if writing == nil {
			return nil
		}
		err := <-writing
		writing = nil
		if err != nil {
			return err
		}
		have += inFlight
		sum.Written += inFlight
		if req.Progress != nil {
			req.Progress(have, req.Count)
		}
		return nil
	}
	queued := have // credentials written, in flight or produced
	for k := 0; queued < req.Count; k ^= 1 {
		n := min(int64(chunk), req.Count-queued)
		if req.StopAfter > 0 {
			n = min(n, req.StopAfter-(queued-sum.Resumed))
		}
		b := &bufs[k]
		if err := j.produce(ctx, queued, b.creds[:n], b.frames[:n], workers); err != nil {
			if werr := synced(); werr != nil {
				return finish(), errors.Join(err, werr)
			}
			return finish(), err
		}
		b.buf = b.buf[:0]
		for i := range b.creds[:n] {
			b.buf = append(b.buf, b.frames[i]...)
			b.creds[i] = Credential{}
		}
		if err := synced(); err != nil {
			return finish(), err
		}
		writing, inFlight = make(chan error, 1), n
		go func(buf []byte, done chan<- error) {
			if _, err := file.Write(buf); err != nil {
				done <- fmt.Errorf("write %s: %w", req.Out, err)
				return
			}
			if err := file.Sync(); err != nil {
				done <- fmt.Errorf("sync %s: %w", req.Out, err)
				return
			}
			done <- nil
		}(b.buf, writing)
		queued += n
		if req.StopAfter > 0 && queued-sum.Resumed >= req.StopAfter && queued < req.Count {
			if err := synced(); err != nil {
				return finish(), err
			}
			return finish(), ErrStopped
		}
	}
	if err := synced(); err != nil {
		return finish(), err
	}
	if err := f.RA.CompleteBatch(ctx, f.Principal, batch(j.hdr)); err != nil {
		return finish(), err
	}
	return finish(), nil
}

// sameJob refuses to resume a batch file with another job's parameters, naming every difference.
func sameJob(path string, have, want BatchHeader) error {
	var diffs []string
	cmp := func(field, a, b string) {
		if a != b {
			diffs = append(diffs, fmt.Sprintf("%s is %q in the file, %q in this run", field, a, b))
		}
	}
	cmp("environment", have.Environment, want.Environment)
	cmp("product line", have.ProductLine, want.ProductLine)
	cmp("site", have.Site, want.Site)
	cmp("site CA", have.SiteCA, want.SiteCA)
	cmp("site CA certificate", have.SiteCASHA256, want.SiteCASHA256)
	cmp("count", fmt.Sprint(have.Count), fmt.Sprint(want.Count))
	cmp("first serial", have.FirstSerial, want.FirstSerial)
	cmp("key custody", have.Custody, want.Custody)
	cmp("transport key (check value)", have.TransportKCV, want.TransportKCV)
	cmp("symmetric purposes", symmetricPurposes(have.Symmetric), symmetricPurposes(want.Symmetric))
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s belongs to batch %s and cannot be resumed by this run: %s; rerun with the flags it was started with, or write to another --out",
		ErrConflict, path, have.BatchID, strings.Join(diffs, "; "))
}

// symmetricPurposes lists the purposes of kdks, for comparing two batch headers.
func symmetricPurposes(kdks []BatchKDK) string {
	var s []string
	for _, k := range kdks {
		s = append(s, k.Purpose)
	}
	return strings.Join(s, ",")
}

// batchKDKs resolves req.Symmetric to the newest active KDK version of each purpose. With PKCS#11 custody the
// KDK must be in the site HSM, which derives the keys at injection.
func (f *Factory) batchKDKs(ctx context.Context, req BatchRequest) ([]BatchKDK, error) {
	var purposes []keystore.Purpose
	for _, name := range req.Symmetric {
		p, err := keystore.ParseSymmetricPurpose(name)
		if err != nil {
			return nil, badRequest("--symmetric: %v", err)
		}
		if slices.Contains(purposes, p) {
			return nil, badRequest("--symmetric names %s twice", p)
		}
		purposes = append(purposes, p)
	}
	var out []BatchKDK
	for _, p := range purposes {
		k, err := f.RA.CurrentKDK(ctx, req.Env, req.Product, string(p))
		if err != nil {
			return nil, err
		}
		if req.Custody != nil && !req.Custody.Handles(k.URI) {
			return nil, badRequest("--symmetric %s: the key-derivation key %s (version %d) is not in the batch's HSM, which derives the keys at injection; create it there ('keyward key kdk rotate --keystore' naming the site token)", p, k.URI, k.Version)
		}
		out = append(out, BatchKDK{Purpose: string(p), Version: k.Version, URI: k.URI})
	}
	return out, nil
}

// createBatchFile writes the magic and header to a new file and syncs it and its directory.
func createBatchFile(path string, h BatchHeader) (*os.File, error) {
	buf, err := appendFrame([]byte(batchMagic), frameHeader, &h)
	if err != nil {
		return nil, err
	}
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := file.Write(buf); err != nil {
		_ = file.Close()
		return nil, err
	}
	if err := file.Sync(); err != nil {
		_ = file.Close()
		return nil, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return file, nil
}

// produce fills out with credentials from index first on, and frames with their encoded frames, using workers
// goroutines. The chunk's first credential is issued through the full path (profile template, RFC 5280 lint,
// signature) and its certificate becomes the stamp for the rest of the chunk (issuer.Stamp): every chunk holds
// a fully linted certificate, every other certificate is byte for byte what the full path would have made,
// and the chunk's certificates share one issuance time, so their validity is fixed per chunk. A profile that
// cannot be stamped takes the full path for every credential.
//
// The work comes in two steps, so that no worker idles while the first credential and the stamp are made:
// first the first credential and, beside it, every other credential's key, serial and custody record
// (prepare); then, once those and the stamp are done, the other certificates (certify). If anything fails, the
// chunk is not written, and the device keys it generated on a token are destroyed again.
func (j *job) produce(ctx context.Context, first int64, out []Credential, frames [][]byte, workers int) error {
	now := j.f.now()
	n := int64(len(out))
	pend := make([]pending, n)
	var (
		stamp     *issuer.Stamp
		ready     = make(chan struct{}) // closed when every credential is prepared and the stamp made
		remaining atomic.Int64          // credentials not yet prepared
		next      atomic.Int64          // tasks 0..n-1 prepare credential t (0: the whole first one), n.. certify t-n+1
		failed    atomic.Bool
		wg        sync.WaitGroup
		errOnce   sync.Once
		firstEr   error
	)
	tasks := 2*n - 1
	remaining.Store(n)
	prepared := func() {
		if remaining.Add(-1) == 0 {
			close(ready)
		}
	}
	fail := func(err error) {
		errOnce.Do(func() { firstEr = err })
		failed.Store(true)
		next.Store(tasks)
	}
	for range min(int64(workers), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t := next.Add(1) - 1
				if t >= tasks {
					return
				}
				var err error
				switch {
				case t < n && ctx.Err() != nil:
					err = ctx.Err()
					prepared()
				case t == 0:
					// The stamp is set before ready closes, which publishes it to the certifying workers.
					var h issued
					if err = j.prepare(ctx, first, &pend[0]); err == nil {
						err = j.certify(ctx, first, &pend[0], now, nil, &h, &out[0])
					}
					if err == nil && n > 1 {
						stamp, err = j.newStamp(h, now, first)
					}
					if err == nil {
						frames[0], err = appendFrame(frames[0][:0], frameCredential, &out[0])
					}
					if err != nil {
						fail(err)
					}
					prepared()
				case t < n:
					if err = j.prepare(ctx, first+t, &pend[t]); err != nil {
						fail(err)
					}
					prepared()
				default:
					select {
					case <-ready:
					case <-ctx.Done():
						fail(ctx.Err())
						return
					}
					if failed.Load() {
						return
					}
					i := t - n + 1
					if err = j.certify(ctx, first+i, &pend[i], now, stamp, nil, &out[i]); err == nil {
						frames[i], err = appendFrame(frames[i][:0], frameCredential, &out[i])
					}
				}
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstEr == nil {
		firstEr = ctx.Err()
	}
	if firstEr != nil && j.custody != nil {
		// Nothing of the chunk is written, so no record of its token keys would remain; a resumed run makes new
		// ones. Destroy them even if ctx was cancelled.
		for i := range pend {
			if pend[i].keyURI != "" {
				_ = j.custody.Destroy(context.WithoutCancel(ctx), pend[i].keyURI)
			}
		}
	}
	return firstEr
}

// pending is a credential between its two steps: its key, serial and custody record, before its certificate.
type pending struct {
	cn      string
	sym     []SymmetricKey
	pub     crypto.PublicKey
	keyURI  string // PKCS#11 custody
	serial  *big.Int
	wrapped []byte // software custody: the wrapped private key
}

// issued is a certificate that went through the full path, from which a stamp can be made.
type issued struct {
	p   *issuer.Prepared
	der []byte
}

// newStamp makes the chunk's stamp from its first certificate, or returns nil (and records why) when the
// profile's certificates cannot be stamped. The probe NewStamp compares with the full path is named with the
// device serial of a random other index of the batch: a name the profile accepts, of the same width.
func (j *job) newStamp(head issued, now time.Time, index int64) (*issuer.Stamp, error) {
	if j.hdr.Count < 2 || head.p == nil {
		return nil, nil
	}
	r, err := rand.Int(rand.Reader, big.NewInt(j.hdr.Count-1))
	if err != nil {
		return nil, err
	}
	probe := r.Int64()
	if probe >= index {
		probe++
	}
	s, err := j.iss.NewStamp(head.p, head.der, issuer.StampConfig{Template: j.template(now), Check: j.checkSubject,
		ProbeCN: j.serials.At(probe), MaxDERSize: j.prof.MaxDERSize})
	if errors.Is(err, issuer.ErrNotStampable) {
		j.noteRefusal(err)
		return nil, nil
	}
	return s, err
}

func (j *job) noteRefusal(err error) {
	j.refusal.Do(func() { j.refused = err.Error() })
}

// template builds the certificate template of a device at the chunk's issuance time now, as the RA would for
// a factory station's request: the profile's checks (role, key, common name) and template.
func (j *job) template(now time.Time) issuer.TemplateFunc {
	return func(serial *big.Int, cn string, pub crypto.PublicKey) (*x509.Certificate, error) {
		t, err := j.prof.Template(&profile.Request{CSR: deviceCSR(cn, pub), Role: factoryRole}, serial, now, j.site.Cert)
		if err == nil && j.edit != nil {
			j.edit(t)
		}
		return t, err
	}
}

// checkSubject applies the profile's request checks, which Template applies on the full path, to a stamped
// credential.
func (j *job) checkSubject(cn string, pub crypto.PublicKey) error {
	return j.prof.CheckRequest(&profile.Request{CSR: deviceCSR(cn, pub), Role: factoryRole})
}

func deviceCSR(cn string, pub crypto.PublicKey) *x509.CertificateRequest {
	return &x509.CertificateRequest{PublicKey: pub, Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: cn}}}}
}

// prepare makes the first part of credential index: its device serial (checked against the site CA's subject
// rule), its device key, its certificate serial number and the key's custody record (the token's key URI, or
// the wrapped key, which is bound to the certificate serial).
func (j *job) prepare(ctx context.Context, index int64, p *pending) error {
	cn := j.serials.At(index)
	if !j.cnRule.MatchString(cn) {
		return fmt.Errorf("%w: device serial %q is outside site CA %s's subject rule %s", ErrRefused, cn, j.site.CA.ID, j.site.Site.CNPattern)
	}
	serial, err := issuer.NewSerial(time.Now())
	if err != nil {
		return err
	}
	*p = pending{cn: cn, serial: serial}
	if err := j.symmetric(ctx, index, p); err != nil {
		return err
	}
	if j.custody != nil {
		// A key for a device must be able to reach it: where the HSM can, the key is made sensitive and
		// extractable only wrapped (hsmwrap.go), for 'keyward factory inject --wrap-with'.
		generate := j.custody.Generate
		if w, ok := j.custody.(KeyWrapper); ok {
			generate = w.GenerateWrappable
		}
		k, err := generate(ctx, keystore.PurposeDeviceIdentity, j.alg, j.hdr.BatchID+"/"+strconv.FormatInt(index, 10))
		if err != nil {
			return fmt.Errorf("generate device key %d: %w", index, err)
		}
		p.pub, p.keyURI = k.Public, k.URI
		return nil
	}
	k, err := generateSoft(j.alg)
	if err != nil {
		return err
	}
	p.pub = k.Public()
	pkcs8, err := marshalPKCS8(k)
	if err != nil {
		return err
	}
	p.wrapped, err = WrapDeviceKey(j.master, j.hdr.BatchID, index, serial.Text(16), pkcs8)
	clear(pkcs8)
	return err
}

// symmetric fills p's symmetric keys: with software custody derived now by the custodian and sealed at once
// under the device's transport key, bound to the certificate serial and the purpose; with PKCS#11 custody only
// named (purpose and KDK version), for the site HSM to derive and wrap at injection. No clear key is kept.
func (j *job) symmetric(ctx context.Context, index int64, p *pending) error {
	if len(j.kdks) == 0 {
		return nil
	}
	p.sym = make([]SymmetricKey, len(j.kdks))
	for i, k := range j.kdks {
		p.sym[i] = SymmetricKey{Purpose: k.Purpose, KDKVersion: k.Version}
		if j.master == nil {
			continue
		}
		key, err := j.f.CA.DeriveKey(ctx, k.URI, j.device(k, p.cn), false)
		if err != nil {
			return fmt.Errorf("derive the %s key of credential %d (%s): %w", k.Purpose, index, p.cn, err)
		}
		p.sym[i].WrappedKey, err = WrapDeviceSecret(j.master, j.hdr.BatchID, index, p.serial.Text(16), k.Purpose, key)
		clear(key)
		if err != nil {
			return err
		}
	}
	return nil
}

// device names the device key of purpose k for the device with serial cn: what the server derives for the
// same device ('keyward key derive').
func (j *job) device(k BatchKDK, cn string) kbkdf.Device {
	return deviceKey(j.hdr.Environment, j.hdr.ProductLine, cn, k)
}

func deviceKey(env, product, cn string, k BatchKDK) kbkdf.Device {
	return kbkdf.Device{Purpose: k.Purpose, Environment: env, ProductLine: product, Serial: cn, KDKVersion: k.Version, Length: ra.DerivedKeySize}
}

// certify makes the certificate of a prepared credential and fills c. With a stamp the certificate is
// stamped; without one, or for an input the stamp refuses, it goes through the full path (template, lint,
// signature) at the chunk's issuance time now, and head, if not nil, receives it.
func (j *job) certify(ctx context.Context, index int64, p *pending, now time.Time, stamp *issuer.Stamp, head *issued, c *Credential) error {
	// The issuing window is checked before every signature, stamped or not.
	if t := j.f.now(); t.After(j.issueEnd) {
		return fmt.Errorf("%w: site CA %s's issuing window ended at %s", ErrRefused, j.site.CA.ID, j.issueEnd.Format(time.RFC3339))
	}
	var der []byte
	var err error
	if stamp == nil {
		der, err = j.issueFull(ctx, p, now, head)
	} else {
		der, err = stamp.Issue(ctx, p.serial, p.cn, p.pub)
		switch {
		case err == nil:
			j.stamped.Add(1)
		case errors.Is(err, issuer.ErrNotStampable):
			j.noteRefusal(err)
			der, err = j.issueFull(ctx, p, now, nil)
		}
	}
	// Prepare checked the size bound; the stamped certificate is checked too, whatever its path.
	if err == nil && len(der) > j.prof.MaxDERSize {
		err = fmt.Errorf("%w: certificate of %d bytes exceeds profile %q's limit of %d", issuer.ErrTooLarge, len(der), j.prof.Name, j.prof.MaxDERSize)
	}
	if err != nil {
		return fmt.Errorf("credential %d (%s): %w", index, p.cn, err)
	}
	*c = Credential{Index: index, DeviceCN: p.cn, CertSerial: p.serial.Text(16), CertDER: der, KeyURI: p.keyURI, WrappedKey: p.wrapped, Symmetric: p.sym}
	return nil
}

// issueFull issues through the full path: profile template, Prepare (lint, size) and Issue.
func (j *job) issueFull(ctx context.Context, p *pending, now time.Time, head *issued) ([]byte, error) {
	tmpl, err := j.template(now)(p.serial, p.cn, p.pub)
	if err != nil {
		return nil, err
	}
	prep, err := j.iss.Prepare(tmpl, p.pub, j.maxDER)
	if err != nil {
		return nil, err
	}
	der, err := j.iss.Issue(ctx, prep)
	if err != nil {
		return nil, err
	}
	if head != nil {
		*head = issued{p: prep, der: der}
	}
	return der, nil
}

func generateSoft(alg keystore.Algorithm) (crypto.Signer, error) {
	switch alg {
	case keystore.ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case keystore.ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case keystore.Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("software-wrapped device keys support ecdsa-p256, ecdsa-p384 and ed25519, not %s", alg)
}

// Named curves (RFC 5480 section 2.1.1.1) and id-ecPublicKey (section 2.1.1), for marshalPKCS8.
var (
	oidPublicKeyECDSA = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidCurveP256      = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidCurveP384      = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
)

// marshalPKCS8 returns the bytes x509.MarshalPKCS8PrivateKey returns for k. For ECDSA P-256 and P-384 keys it
// writes them with cryptobyte instead of encoding/asn1's reflection, which cost about as much as the key's
// wrapping in a batch: an RFC 5208 PrivateKeyInfo (version 0, id-ecPublicKey with the named curve, RFC 5480)
// holding an RFC 5915 ECPrivateKey (version 1, the private key as an octet string of the curve's size, the
// public key as [1]; the curve is not repeated, as Go omits it). TestMarshalPKCS8 compares the two.
func marshalPKCS8(k crypto.Signer) ([]byte, error) {
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || (ec.Curve != elliptic.P256() && ec.Curve != elliptic.P384()) {
		return x509.MarshalPKCS8PrivateKey(k)
	}
	curve := oidCurveP256
	if ec.Curve == elliptic.P384() {
		curve = oidCurveP384
	}
	d, err := ec.Bytes()
	if err != nil {
		return nil, err
	}
	defer clear(d)
	pub, err := ec.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 64+len(d)+len(pub)))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidPublicKeyECDSA)
			b.AddASN1ObjectIdentifier(curve)
		})
		b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1OctetString(d)
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1BitString(pub)
				})
			})
		})
	})
	return b.Bytes()
}
