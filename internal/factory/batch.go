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
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// ErrStopped is returned when BatchRequest.StopAfter ended a run early; the batch file is resumable.
var ErrStopped = errors.New("batch stopped early")

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
	Checkpoint   int // credentials per fsync; default 256
	// Progress is called after every checkpoint with the credentials in the file and the count.
	Progress func(done, total int64)
	// StopAfter, if positive, stops the run with ErrStopped after that many credentials were written by it
	// (a test hook standing in for a crash at a checkpoint).
	StopAfter int64
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
}

// serialRange allocates device serials: a prefix and a zero-padded decimal counter.
type serialRange struct {
	prefix string
	first  uint64
	width  int
}

func parseSerialRange(first string, count int64) (serialRange, error) {
	i := len(first)
	for i > 0 && first[i-1] >= '0' && first[i-1] <= '9' {
		i--
	}
	digits := first[i:]
	if digits == "" || len(digits) > 18 {
		return serialRange{}, badRequest("--first-serial %q must end in 1 to 18 decimal digits, which are counted up for each credential", first)
	}
	n, _ := strconv.ParseUint(digits, 10, 64)
	r := serialRange{prefix: first[:i], first: n, width: len(digits)}
	if last := n + uint64(count) - 1; len(strconv.FormatUint(last, 10)) > r.width {
		return serialRange{}, badRequest("--first-serial %q with --count %d runs past %d digits", first, count, r.width)
	}
	return r, nil
}

func (r serialRange) at(i int64) string {
	s := strconv.FormatUint(r.first+uint64(i), 10)
	return r.prefix + strings.Repeat("0", r.width-len(s)) + s
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// job is one batch run's state shared by the workers.
type job struct {
	f        *Factory
	hdr      BatchHeader
	site     *SiteCA
	prof     *profile.Profile
	cnRule   *regexp.Regexp
	serials  serialRange
	iss      *issuer.Issuer
	custody  keystore.Keystore
	alg      keystore.Algorithm
	master   []byte
	maxDER   issuer.PrepareOption
	issueEnd time.Time
}

// Batch generates (or resumes) the credential batch req.Out: req.Count device keys and their certificates under
// the site CA of (Env, Product, Site). Memory does not grow with Count: credentials are produced in chunks of
// Checkpoint, written in index order and fsynced. If req.Out exists, its header must describe the same job,
// and the run continues after its last whole credential (a torn last frame is cut off). A new batch reserves
// Count from the site CA's quota before anything is signed.
func (f *Factory) Batch(ctx context.Context, req BatchRequest) (*BatchSummary, error) {
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
	site, err := f.loadSite(ctx, req.Env, req.Product, req.Site)
	if err != nil {
		return nil, err
	}
	prof := f.Profiles[site.Site.Profile]
	if prof == nil {
		return nil, fmt.Errorf("%w: site CA %s issues profile %q, which is not loaded", ErrBadRequest, site.CA.ID, site.Site.Profile)
	}
	cnRule, err := regexp.Compile(site.Site.CNPattern)
	if err != nil {
		return nil, fmt.Errorf("site CA %s: recorded subject rule %q: %w", site.CA.ID, site.Site.CNPattern, err)
	}
	j := &job{f: f, site: site, prof: prof, cnRule: cnRule, custody: req.Custody, issueEnd: site.Site.IssueUntil}
	custody := CustodyPKCS11
	switch {
	case req.Custody == nil:
		custody = CustodyWrapped
		if req.Env != "dev" {
			return nil, badRequest("environment %q: software-wrapped device keys are for dev only; name the site HSM with --keystore pkcs11:...", req.Env)
		}
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
	if j.serials, err = parseSerialRange(req.FirstSerial, req.Count); err != nil {
		return nil, err
	}
	for _, sn := range []string{j.serials.at(0), j.serials.at(req.Count - 1)} {
		if !cnRule.MatchString(sn) || !prof.Subject.CommonName.MatchString(sn) {
			return nil, fmt.Errorf("%w: device serial %q is outside site CA %s's subject rule %s", ErrRefused, sn, site.CA.ID, site.Site.CNPattern)
		}
	}
	caSum := sha256.Sum256(site.CA.CertDER)
	want := BatchHeader{Version: 1, Environment: req.Env, ProductLine: req.Product, Site: req.Site, SiteCA: site.CA.ID,
		SiteCASHA256: hex.EncodeToString(caSum[:]), Profile: prof.Name, ProfileVersion: prof.Version, Count: req.Count,
		FirstSerial: req.FirstSerial, Custody: custody}
	if j.master != nil {
		want.TransportKCV = TransportKCV(j.master)
	}

	var file *os.File
	var have int64
	switch _, statErr := os.Stat(req.Out); {
	case statErr == nil:
		res, err := scanFile(req.Out, nil, nil)
		if err != nil {
			return nil, err
		}
		if err := sameJob(req.Out, res.Header, want); err != nil {
			return nil, err
		}
		j.hdr, have = res.Header, res.Credentials
		if file, err = os.OpenFile(req.Out, os.O_RDWR, 0); err != nil {
			return nil, err
		}
		// Cut a torn last frame: everything after the last whole credential is rewritten.
		if err := file.Truncate(res.End); err != nil {
			file.Close()
			return nil, fmt.Errorf("cut the torn tail of %s: %w", req.Out, err)
		}
		if _, err := file.Seek(res.End, 0); err != nil {
			file.Close()
			return nil, err
		}
	case errors.Is(statErr, os.ErrNotExist):
		want.CreatedAt = f.now()
		var id [16]byte
		if _, err := rand.Read(id[:]); err != nil {
			return nil, err
		}
		want.BatchID = hex.EncodeToString(id[:])
		if err := f.reserve(ctx, site, want, j.serials.at(req.Count-1)); err != nil {
			return nil, err
		}
		if file, err = createBatchFile(req.Out, want); err != nil {
			return nil, err
		}
		j.hdr = want
	default:
		return nil, statErr
	}
	defer file.Close()

	sum := &BatchSummary{Path: req.Out, BatchID: j.hdr.BatchID, SiteCA: site.CA.ID, Custody: custody, Count: req.Count, Resumed: have,
		FirstSerial: j.serials.at(0), LastSerial: j.serials.at(req.Count - 1)}
	finish := func() *BatchSummary {
		sum.Elapsed = time.Since(start)
		if sum.Elapsed > 0 {
			sum.PerSecond = float64(sum.Written) / sum.Elapsed.Seconds()
		}
		if st, err := file.Stat(); err == nil {
			sum.Bytes = st.Size()
		}
		return sum
	}
	if have == req.Count {
		return finish(), nil
	}

	signer, err := f.Keys.Signer(ctx, site.CA.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		return nil, fmt.Errorf("site CA %s signer: %w", site.CA.ID, err)
	}
	if j.iss, err = issuer.New(site.Cert, signer); err != nil {
		return nil, err
	}
	j.maxDER = issuer.MaxDERSize(prof.MaxDERSize)
	if have > 0 {
		if err := f.audit(ctx, "factory.batch.resume", site.CA.ID, map[string]string{"batch": j.hdr.BatchID, "from_index": fmt.Sprint(have)}); err != nil {
			return nil, err
		}
	}

	workers := req.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	chunk := req.Checkpoint
	if chunk <= 0 {
		chunk = 256
	}
	creds := make([]Credential, chunk)
	buf := make([]byte, 0, chunk*1024)
	for have < req.Count {
		n := min(int64(chunk), req.Count-have)
		if req.StopAfter > 0 {
			n = min(n, req.StopAfter-sum.Written)
		}
		if err := j.produce(ctx, have, creds[:n], workers); err != nil {
			return finish(), err
		}
		buf = buf[:0]
		for i := range creds[:n] {
			if buf, err = appendFrame(buf, frameCredential, &creds[i]); err != nil {
				return finish(), err
			}
			creds[i] = Credential{}
		}
		if _, err := file.Write(buf); err != nil {
			return finish(), fmt.Errorf("write %s: %w", req.Out, err)
		}
		if err := file.Sync(); err != nil {
			return finish(), fmt.Errorf("sync %s: %w", req.Out, err)
		}
		have += n
		sum.Written += n
		if req.Progress != nil {
			req.Progress(have, req.Count)
		}
		if req.StopAfter > 0 && sum.Written >= req.StopAfter && have < req.Count {
			return finish(), ErrStopped
		}
	}
	if err := f.audit(ctx, "factory.batch.complete", site.CA.ID, map[string]string{"batch": j.hdr.BatchID, "count": fmt.Sprint(req.Count),
		"first_serial": sum.FirstSerial, "last_serial": sum.LastSerial, "custody": custody}); err != nil {
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
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s belongs to batch %s and cannot be resumed by this run: %s; rerun with the flags it was started with, or write to another --out",
		ErrConflict, path, have.BatchID, strings.Join(diffs, "; "))
}

// reserve takes count from the site CA's quota, checking its issuing window, with the audit event.
func (f *Factory) reserve(ctx context.Context, site *SiteCA, h BatchHeader, last string) error {
	now := f.now()
	return f.Store.Tx(ctx, func(tx store.Tx) error {
		s, err := tx.LockFactorySite(ctx, site.CA.ID)
		if err != nil {
			return err
		}
		if now.After(s.IssueUntil) {
			return fmt.Errorf("%w: site CA %s's issuing window ended at %s", ErrRefused, s.CAID, s.IssueUntil.Format(time.RFC3339))
		}
		if s.Reserved+h.Count > s.Quota {
			return fmt.Errorf("%w: site CA %s has %d of its quota of %d certificates left; the batch needs %d", ErrRefused, s.CAID, s.Quota-s.Reserved, s.Quota, h.Count)
		}
		if err := tx.SetFactorySiteReserved(ctx, s.CAID, s.Reserved+h.Count); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "factory.batch.start", Subject: s.CAID, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"batch": h.BatchID, "count": fmt.Sprint(h.Count), "first_serial": h.FirstSerial, "last_serial": last,
				"custody": h.Custody, "quota_left": fmt.Sprint(s.Quota - s.Reserved - h.Count)}})
	})
}

func (f *Factory) audit(ctx context.Context, action, subject string, details map[string]string) error {
	now := f.now()
	return f.Store.Tx(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: action, Subject: subject, Outcome: audit.OutcomeSuccess, Details: details})
	})
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
		file.Close()
		return nil, err
	}
	if err := file.Sync(); err != nil {
		file.Close()
		return nil, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return file, nil
}

// produce fills out with credentials from index first on, using workers goroutines.
func (j *job) produce(ctx context.Context, first int64, out []Credential, workers int) error {
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		firstEr error
	)
	for range min(workers, len(out)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(out)) || ctx.Err() != nil {
					return
				}
				if err := j.credential(ctx, first+i, &out[i]); err != nil {
					errOnce.Do(func() { firstEr = err })
					next.Store(int64(len(out)))
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstEr != nil {
		return firstEr
	}
	return ctx.Err()
}

// credential makes credential index: the device key, the certificate (profile template, lint, signature) and
// the key's custody record.
func (j *job) credential(ctx context.Context, index int64, c *Credential) error {
	now := j.f.now()
	if now.After(j.issueEnd) {
		return fmt.Errorf("%w: site CA %s's issuing window ended at %s", ErrRefused, j.site.CA.ID, j.issueEnd.Format(time.RFC3339))
	}
	cn := j.serials.at(index)
	if !j.cnRule.MatchString(cn) {
		return fmt.Errorf("%w: device serial %q is outside site CA %s's subject rule %s", ErrRefused, cn, j.site.CA.ID, j.site.Site.CNPattern)
	}
	var (
		pub    crypto.PublicKey
		priv   crypto.Signer
		keyURI string
	)
	if j.custody == nil {
		k, err := generateSoft(j.alg)
		if err != nil {
			return err
		}
		priv, pub = k, k.Public()
	} else {
		k, err := j.custody.Generate(ctx, keystore.PurposeDeviceIdentity, j.alg, j.hdr.BatchID+"/"+strconv.FormatInt(index, 10))
		if err != nil {
			return fmt.Errorf("generate device key %d: %w", index, err)
		}
		pub, keyURI = k.Public, k.URI
	}
	der, serial, err := j.certify(ctx, cn, pub, now)
	if err != nil {
		if keyURI != "" {
			_ = j.custody.Destroy(ctx, keyURI)
		}
		return fmt.Errorf("credential %d (%s): %w", index, cn, err)
	}
	*c = Credential{Index: index, DeviceCN: cn, CertSerial: serial, CertDER: der, KeyURI: keyURI}
	if priv != nil {
		pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return err
		}
		c.WrappedKey, err = WrapDeviceKey(j.master, j.hdr.BatchID, index, serial, pkcs8)
		clear(pkcs8)
		if err != nil {
			return err
		}
	}
	return nil
}

func (j *job) certify(ctx context.Context, cn string, pub crypto.PublicKey, now time.Time) ([]byte, string, error) {
	serial, err := issuer.RandomSerial()
	if err != nil {
		return nil, "", err
	}
	csr := &x509.CertificateRequest{PublicKey: pub, Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: cn}}}}
	tmpl, err := j.prof.Template(&profile.Request{CSR: csr, Role: "factory-station"}, serial, now, j.site.Cert)
	if err != nil {
		return nil, "", err
	}
	p, err := j.iss.Prepare(tmpl, pub, j.maxDER)
	if err != nil {
		return nil, "", err
	}
	der, err := j.iss.Issue(ctx, p)
	if err != nil {
		return nil, "", err
	}
	return der, serial.Text(16), nil
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
