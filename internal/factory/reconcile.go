package factory

// Reconciliation at headquarters (issue 4 part 3): a site's export is verified in full before anything is
// stored, and then recorded in one transaction, so a refused export leaves no trace but its error.
//
// An export may hold millions of records, so none is held: OpenExport reads the file once to check its
// structure and chain (pass 1), the signature is verified, and the records are read again (pass 2) inside the
// transaction, each checked against the site's rules as it is recorded. A refused record, or a file that
// changed between the passes, fails the transaction, which rolls back everything recorded before it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// UnusedReason is the revocation reason of a pre-issued credential no device received: cessationOfOperation,
// RFC 5280 5.3.1, "the certificate is no longer needed for the purpose for which it was issued" with no
// suspicion on the key. Not superseded: that says the certificate was replaced by another, and nothing
// replaces a credential that was never used; not keyCompromise: the key never left the site HSM (or left it
// only wrapped), and its destruction is recorded with it.
const UnusedReason = store.ReasonCessationOfOperation

// ReconcileRequest asks to import site exports.
type ReconcileRequest struct {
	Files []string
	// Env and Site, if set, admit only exports of that environment and site; any other is foreign.
	Env, Site string
	// Final closes each batch: its export must be final, and every unused credential is revoked (reason
	// UnusedReason) and its key recorded destroyed.
	Final bool
	// Keys is the site HSM. With it, the unused PKCS#11 keys of a final export are destroyed in it; without
	// it (or for software-wrapped keys, which only the site can erase), AttestedBy must name who attests the
	// destruction.
	Keys       keystore.Keystore
	AttestedBy string
}

// ReconcileResult reports one reconciled export.
type ReconcileResult struct {
	File          string `json:"file"`
	SiteCA        string `json:"site_ca"`
	BatchID       string `json:"batch_id"`
	Seq           int64  `json:"seq"`
	Devices       int64  `json:"devices_recorded"`      // injected credentials new to headquarters
	Certificates  int64  `json:"certificates_recorded"` // all certificates recorded by this import
	Revoked       int64  `json:"revoked"`
	KeysDestroyed int64  `json:"keys_destroyed"`
	Destruction   string `json:"destruction,omitempty"` // "site-hsm" or "attested"
	Final         bool   `json:"final"`
}

// Reconcile imports req.Files in order, each verified in full and then recorded in one transaction; it stops
// at the first refused file, whose error wraps ErrTampered, ErrForeign, ErrReplay, ErrRefused, ErrConflict
// or ErrBadRequest. The files before it stay reconciled; the results say which.
func (f *Factory) Reconcile(ctx context.Context, req ReconcileRequest) ([]*ReconcileResult, error) {
	if len(req.Files) == 0 {
		return nil, badRequest("name at least one export file")
	}
	attester := strings.TrimSpace(req.AttestedBy)
	if len(attester) > 200 || strings.ContainsFunc(attester, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, badRequest("--attested-by %.40q: at most 200 characters and no control characters", attester)
	}
	req.AttestedBy = attester
	var out []*ReconcileResult
	for _, name := range req.Files {
		res, err := f.reconcileFile(ctx, req, name)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

func (f *Factory) reconcileFile(ctx context.Context, req ReconcileRequest, name string) (*ReconcileResult, error) {
	facts := &batchFacts{name: name}
	e, site, err := f.openVerifiedExport(ctx, req, name, ExportChecks{Header: facts.header, Record: facts.record})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	switch k := e.Header().Kind; k {
	case exportKindBatch:
		return f.reconcileBatch(ctx, req, name, e, site, facts)
	case exportKindSiteLog:
		return f.reconcileSiteLog(ctx, req, name, e, site) // sitelog.go
	default:
		return nil, badRequest("%s: export %d is a %s; this keyward reconciles %s and %s exports", name, e.Header().Seq, k, exportKindBatch, exportKindSiteLog)
	}
}

// openVerifiedExport opens the export at name (OpenExport, running checks), and checks what every kind of
// export must satisfy before its records are read again: that it belongs to a site CA of this data directory
// (and to req.Env and req.Site if set), and that its signature verifies with the site's recorded export
// signer, certified by the site CA. The caller closes the export.
func (f *Factory) openVerifiedExport(ctx context.Context, req ReconcileRequest, name string, checks ExportChecks) (*ExportFile, *SiteCA, error) {
	e, err := OpenExport(name, checks)
	if err != nil {
		return nil, nil, err
	}
	site, err := f.verifyExport(ctx, req, name, e)
	if err != nil {
		e.Close()
		return nil, nil, err
	}
	return e, site, nil
}

func (f *Factory) verifyExport(ctx context.Context, req ReconcileRequest, name string, e *ExportFile) (*SiteCA, error) {
	h := e.Header()
	foreign := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrForeign, fmt.Sprintf(format, args...))
	}
	switch {
	case req.Env != "" && h.Environment != req.Env:
		return nil, foreign("it is an export of environment %q, not %q", h.Environment, req.Env)
	case req.Site != "" && h.Site != req.Site:
		return nil, foreign("it is an export of site %q, not %q", h.Site, req.Site)
	case f.Config.Environments[h.Environment] == nil:
		return nil, foreign("environment %q is not declared in this data directory (declared: %v)", h.Environment, f.Config.EnvironmentNames())
	case h.SiteCA != SiteID(h.Environment, h.ProductLine, h.Site):
		return nil, foreign("site CA %q is not the CA of %s/%s/%s", h.SiteCA, h.Environment, h.ProductLine, h.Site)
	}
	site, err := f.loadSite(ctx, h.Environment, h.ProductLine, h.Site)
	if errors.Is(err, ErrNotFound) {
		return nil, foreign("this data directory has no site CA %s", h.SiteCA)
	} else if err != nil {
		return nil, err
	}
	if sum := sha256Hex(site.CA.CertDER); sum != h.SiteCASHA256 {
		return nil, foreign("its site CA certificate (SHA-256 %s) is not the %s recorded here (%s)", short(h.SiteCASHA256), site.CA.ID, short(sum))
	}
	if len(site.Site.AuditCertDER) == 0 {
		return nil, fmt.Errorf("%w: site CA %s has no export signer recorded", ErrBadRequest, site.CA.ID)
	}
	signerCert, err := x509.ParseCertificate(site.Site.AuditCertDER)
	if err != nil {
		return nil, fmt.Errorf("export signer of %s: %w", site.CA.ID, err)
	}
	if err := signerCert.CheckSignatureFrom(site.Cert); err != nil {
		return nil, fmt.Errorf("export signer of %s is not certified by it: %w", site.CA.ID, err)
	}
	if !bytes.Equal(h.SignerCert, site.Site.AuditCertDER) {
		return nil, fmt.Errorf("%s: %w: it names an export signer that is not %s's recorded one (serial %x)", name, ErrTampered, site.CA.ID, signerCert.SerialNumber)
	}
	if err := e.VerifySignature(signerCert); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return site, nil
}

// batchFacts checks a batch injection log's header and records while OpenExport reads them (structure the
// header's counts promise), and keeps the little reconcileBatch needs to know before it reads the records
// again: how the unused keys are held, and which device serials may occur twice.
type batchFacts struct {
	name string
	hdr  *ExportHeader
	// Unused records whose key is in the site HSM (a key URI), and software-wrapped ones.
	hsmKeys, softKeys int64
	// devSeed keys devHashes, a 64-bit hash of each injected record's device serial: 8 bytes a record while
	// OpenExport reads the file, sorted and dropped afterwards, leaving only the hashes seen twice (suspects).
	// Reconciliation compares the serials of those records exactly; two serials that only share a hash are
	// not refused.
	devSeed   maphash.Seed
	devHashes []uint64
}

func (b *batchFacts) header(h *ExportHeader) error {
	b.hdr = h
	if h.Kind != exportKindBatch {
		return nil
	}
	// A batch's export lists its injected credentials and, if final, every other one: Records counts those.
	if h.Injected < 0 || h.Injected > h.Count || h.Records > h.Count ||
		(h.Final && h.Records != h.Count) || (!h.Final && h.Records != h.Injected) {
		return fmt.Errorf("%s: %w: header counts are inconsistent: count %d, injected %d, records %d, final %v", b.name, ErrTampered, h.Count, h.Injected, h.Records, h.Final)
	}
	b.devSeed = maphash.MakeSeed()
	// The file bounds the number of records; the header only claims it.
	b.devHashes = make([]uint64, 0, min(h.Injected, 1<<16))
	return nil
}

func (b *batchFacts) record(r *ExportRecord) error {
	h := b.hdr
	if h.Kind != exportKindBatch {
		return nil
	}
	// The injections come first, in index order (export.go).
	want := RecordInjected
	if r.Index >= h.Injected {
		want = RecordUnused
	}
	if r.Kind != want {
		return fmt.Errorf("%s: %w: record %d is %q; the header's %d injections make it %q", b.name, ErrTampered, r.Index, r.Kind, h.Injected, want)
	}
	switch {
	case r.Kind == RecordInjected:
		b.devHashes = append(b.devHashes, maphash.String(b.devSeed, r.DeviceSerial))
	case r.KeyURI != "":
		b.hsmKeys++
	default:
		b.softKeys++
	}
	return nil
}

// suspects returns the device-serial hashes that occur more than once, and drops the rest.
func (b *batchFacts) suspects() map[uint64]bool {
	slices.Sort(b.devHashes)
	out := map[uint64]bool{}
	for i := 1; i < len(b.devHashes); i++ {
		if b.devHashes[i] == b.devHashes[i-1] {
			out[b.devHashes[i]] = true
		}
	}
	b.devHashes = nil
	return out
}

// reconcileBatch records a batch injection log whose structure, chain and signature are verified (e), in one
// transaction: the records are read again and each is checked while it is recorded, so that any refusal rolls
// everything back, and holding the export costs the same memory for a thousand records as for millions.
func (f *Factory) reconcileBatch(ctx context.Context, req ReconcileRequest, name string, e *ExportFile, site *SiteCA, facts *batchFacts) (*ReconcileResult, error) {
	h := e.Header()
	refused := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrRefused, fmt.Sprintf(format, args...))
	}

	// The signature holds: from here on, a failure is the site's (or a policy's), not tampering.
	switch {
	case req.Final && !h.Final:
		return nil, badRequest("%s: export %d of batch %s is not final; make one with 'keyward factory export --final' to close the batch", name, h.Seq, h.BatchID)
	case !req.Final && h.Final:
		return nil, badRequest("%s: export %d of batch %s is final; reconcile it with --final, which revokes its %d unused credentials", name, h.Seq, h.BatchID, h.Count-h.Injected)
	}
	destruction := ""
	if h.Final && h.Records > h.Injected {
		useHSM := req.Keys != nil && req.Keys.Location() == keystore.LocationPKCS11 && facts.softKeys == 0
		switch {
		case useHSM:
			destruction = "site-hsm"
		case req.AttestedBy != "":
			destruction = "attested"
		default:
			return nil, badRequest("%s: closing batch %s destroys %d unused keys; name the site HSM with --keystore pkcs11:..., or who attests their destruction with --attested-by", name, h.BatchID, h.Count-h.Injected)
		}
	}

	rules, err := f.siteRules(site)
	if err != nil {
		return nil, err
	}
	serials, err := parseSerialRange(h.FirstSerial, h.Count)
	if err != nil {
		return nil, refused("batch %s: %v", h.BatchID, err)
	}
	suspects := facts.suspects()
	devices := map[string]int64{} // device serial -> index, for suspects only

	// check applies the site's rules to one record's certificate and device serial.
	check := func(r *ExportRecord) (*x509.Certificate, []byte, error) {
		// The site's serial rule: credential i has the device serial FirstSerial + i (siteca.go).
		c, spki, err := rules.check(r, serials.at(r.Index))
		if err != nil {
			return nil, nil, refused("record %d: %v", r.Index, err)
		}
		if r.Kind == RecordInjected {
			if err := checkDeviceSerial(r.DeviceSerial); err != nil {
				return nil, nil, refused("record %d: %v", r.Index, err)
			}
			// A device gets one credential. Only serials whose hash OpenExport saw twice can repeat.
			if suspects[maphash.String(facts.devSeed, r.DeviceSerial)] {
				if prev, dup := devices[r.DeviceSerial]; dup {
					return nil, nil, refused("device %q received credentials %d and %d; a device gets one", r.DeviceSerial, prev, r.Index)
				}
				devices[r.DeviceSerial] = r.Index
			}
		}
		return c, spki, nil
	}

	now := f.now()
	res := &ReconcileResult{File: name, SiteCA: site.CA.ID, BatchID: h.BatchID, Seq: h.Seq, Final: h.Final, Destruction: destruction}
	err = f.Store.Tx(ctx, func(tx store.Tx) error {
		b, err := tx.LockFactoryBatch(ctx, h.BatchID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			b = &store.FactoryBatch{BatchID: h.BatchID, CAID: site.CA.ID, Count: h.Count, FirstSerial: h.FirstSerial, ChainHead: []byte{}}
		case err != nil:
			return err
		case b.Final:
			return fmt.Errorf("%s: %w: batch %s was closed by export %d at %s; no later export is accepted", name, ErrReplay, h.BatchID, b.LastSeq, b.UpdatedAt.Format(time.RFC3339))
		case h.Seq <= b.LastSeq:
			return fmt.Errorf("%s: %w: export %d of batch %s is not newer than export %d, reconciled at %s", name, ErrReplay, h.Seq, h.BatchID, b.LastSeq, b.UpdatedAt.Format(time.RFC3339))
		case b.CAID != site.CA.ID || b.Count != h.Count || b.FirstSerial != h.FirstSerial:
			return fmt.Errorf("%s: %w: batch %s was reconciled as %d credentials from %s under %s, the export says %d from %s under %s",
				name, ErrTampered, h.BatchID, b.Count, b.FirstSerial, b.CAID, h.Count, h.FirstSerial, site.CA.ID)
		case h.Injected < b.Injected:
			return fmt.Errorf("%s: %w: export %d of batch %s lists %d injections; %d were reconciled from export %d", name, ErrTampered, h.Seq, h.BatchID, h.Injected, b.Injected, b.LastSeq)
		}
		// Quota (recorded with the site CA): every batch headquarters has seen counts in full.
		seen, err := tx.FactoryBatchCounts(ctx, site.CA.ID, h.BatchID)
		if err != nil {
			return err
		}
		if seen+h.Count > site.Site.Quota {
			return refused("batch %s of %d credentials and the %d already reconciled exceed site CA %s's quota of %d", h.BatchID, h.Count, seen, site.CA.ID, site.Site.Quota)
		}
		// The unused keys to destroy in the site HSM, spooled to a temporary file until every record is
		// recorded and the export is known to be the one verified.
		var spool *uriSpool
		if destruction == "site-hsm" {
			if spool, err = newURISpool(); err != nil {
				return err
			}
			defer spool.Close()
		}
		// Two stages: a reader goroutine reads the records again and checks them (JSON, certificate parse and
		// signature: about half the cost of recording one), handing the records new to headquarters over in
		// order, at most a small channel's worth ahead; this goroutine records them in the transaction.
		start := b.Injected
		var lastInjected []byte // chain hash of the last injected record: where the next export must continue
		work := make(chan checkedRecord, 256)
		quit, readDone := make(chan struct{}), make(chan struct{})
		var readErr error
		go func() {
			defer close(readDone)
			defer close(work)
			readErr = e.Records(func(r *ExportRecord) error {
				if r.Index == h.Injected-1 {
					lastInjected = r.Hash
				}
				c, spki, err := check(r)
				if err != nil {
					return err
				}
				if r.Index < start {
					// Reconciled before: the chain must pass through the head recorded then, before anything new
					// is recorded.
					if r.Index == start-1 && !bytes.Equal(r.Hash, b.ChainHead) {
						return fmt.Errorf("%s: %w: export %d of batch %s does not extend the log reconciled from export %d (record %d differs)", name, ErrTampered, h.Seq, h.BatchID, b.LastSeq, r.Index)
					}
					return nil
				}
				select {
				case work <- checkedRecord{r, c, spki}:
					return nil
				case <-quit:
					return errRecordingStopped
				}
			})
		}()
		var recErr error
		for w := range work {
			if recErr != nil {
				continue // drain until the reader has stopped
			}
			if recErr = f.recordBatchEntry(ctx, tx, req, name, h, site, w.r, w.cert, w.spki, destruction, spool, now, res); recErr != nil {
				close(quit)
			}
		}
		<-readDone
		// A record fails to record only after every record before it was checked, so its error comes first,
		// unless the file changed, which explains any failure.
		var changed *exportChangedError
		switch {
		case recErr != nil && !errors.As(readErr, &changed):
			return recErr
		case readErr != nil:
			return readErr
		}
		b.LastSeq, b.Injected, b.Final, b.UpdatedAt = h.Seq, h.Injected, h.Final, now
		if h.Injected > 0 {
			b.ChainHead = lastInjected
		}
		if err := tx.PutFactoryBatch(ctx, b); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "factory.reconcile", Subject: site.CA.ID, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"batch": h.BatchID, "export_seq": fmt.Sprint(h.Seq), "injected": fmt.Sprint(h.Injected), "devices_recorded": fmt.Sprint(res.Devices),
				"certificates_recorded": fmt.Sprint(res.Certificates), "revoked": fmt.Sprint(res.Revoked), "keys_destroyed": fmt.Sprint(res.KeysDestroyed),
				"final": fmt.Sprint(h.Final), "destruction": destruction, "chain_head": fmt.Sprintf("%x", e.Head())}}); err != nil {
			return err
		}
		// Last, with everything else written and the export read to its end unchanged: destroy the unused keys
		// in the site HSM, so that only a failing commit (or destruction) can roll back after a key is gone. A
		// key already gone (an earlier attempt whose commit failed) is fine; any other failure rolls the whole
		// import back.
		if spool == nil {
			return nil
		}
		return spool.each(func(uri string) error {
			if err := req.Keys.Destroy(ctx, uri); err != nil && !errors.Is(err, keystore.ErrNotFound) {
				return fmt.Errorf("destroy unused key %s in the site HSM: %w", uri, err)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// checkedRecord is a record that passed the site's rules, with its parsed certificate and SPKI hash.
type checkedRecord struct {
	r    *ExportRecord
	cert *x509.Certificate
	spki []byte
}

// errRecordingStopped tells the reader of an export that recording failed; the recording error is reported.
var errRecordingStopped = errors.New("recording stopped")

// recordBatchEntry records one checked record of a batch log new to headquarters: its certificate, and the
// device it was injected into, or its revocation and key destruction if it is unused.
func (f *Factory) recordBatchEntry(ctx context.Context, tx store.Tx, req ReconcileRequest, name string, h *ExportHeader, site *SiteCA, r *ExportRecord,
	c *x509.Certificate, spki []byte, destruction string, spool *uriSpool, now time.Time, res *ReconcileResult) error {
	refused := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrRefused, fmt.Sprintf(format, args...))
	}
	alg, err := keystore.AlgorithmOf(c.PublicKey)
	if err != nil {
		return refused("record %d: %v", r.Index, err)
	}
	serial, err := f.recordCertificate(ctx, tx, name, site, r, c, spki, now, map[string]string{"batch": h.BatchID, "export_seq": fmt.Sprint(h.Seq)})
	if err != nil {
		return err
	}
	res.Certificates++
	if r.Kind == RecordInjected {
		// The registry is keyed by the identity's common name, as enrollment keys it; the station is the
		// batch that provisioned the device, and the hardware it was injected into is recorded with it, once
		// per product line: hardware that got a credential from an earlier batch is refused.
		dev := &store.Device{Environment: h.Environment, ProductLine: h.ProductLine, Serial: c.Subject.CommonName, StationID: "batch:" + h.BatchID,
			Site: h.Site, HardwareSerial: r.DeviceSerial}
		if err := f.registerDevice(ctx, tx, name, r, spki, alg, serial, dev, now, map[string]string{"batch": h.BatchID,
			"device_serial": r.DeviceSerial, "injected_at": r.At.Format(time.RFC3339Nano)}); err != nil {
			return err
		}
		res.Devices++
		return nil
	}
	// Unused: revoke, and record the key destroyed.
	rev, err := tx.Revoke(ctx, &store.Revocation{Serial: serial, Reason: UnusedReason, RevokedAt: now.Truncate(time.Second)})
	if err != nil {
		return fmt.Errorf("revoke unused credential %d (%s): %w", r.Index, serial, err)
	}
	if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "cert.revoke", Subject: serial, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"issuer": site.CA.ID, "reason": "cessationOfOperation", "seq": fmt.Sprint(rev.Seq), "batch": h.BatchID,
			"index": fmt.Sprint(r.Index), "unused": "true"}}); err != nil {
		return err
	}
	res.Revoked++
	uri, loc := ra.DeviceKeyURI(spki), keystore.LocationSoftware
	if r.KeyURI != "" {
		uri, loc = r.KeyURI, keystore.LocationPKCS11
	}
	if err := tx.InsertKey(ctx, &store.Key{URI: uri, Purpose: string(keystore.PurposeDeviceIdentity), Algorithm: string(alg), Location: string(loc),
		State: store.KeyActive, Owner: serial, SPKISHA256: spki, CreatedAt: c.NotBefore, StateChangedAt: now}); err != nil {
		return fmt.Errorf("record %d: key %s: %w", r.Index, uri, err)
	}
	if err := tx.SetKeyState(ctx, uri, store.KeyDestroyed, now); err != nil {
		return err
	}
	kd := map[string]string{"purpose": string(keystore.PurposeDeviceIdentity), "location": string(loc), "owner": serial, "subject": c.Subject.CommonName,
		"reason": "unused pre-issued credential", "batch": h.BatchID, "index": fmt.Sprint(r.Index), "method": destruction}
	if destruction == "attested" {
		kd["attested_by"] = req.AttestedBy
	}
	if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "key.destroy", Subject: uri, Outcome: audit.OutcomeSuccess, Details: kd}); err != nil {
		return err
	}
	res.KeysDestroyed++
	if spool != nil {
		if r.KeyURI == "" {
			// OpenExport counted no software-wrapped key; Records will report how the file changed.
			return fmt.Errorf("%s: %w: record %d has no key in the site HSM", name, ErrTampered, r.Index)
		}
		return spool.add(r.KeyURI)
	}
	return nil
}

// uriSpool holds the key URIs to destroy in the site HSM outside memory, in an unnamed temporary file (removed
// as soon as it is created): about the URI's length and 4 bytes a key. The SHA-256 of what was written is
// checked in a full read before the first key is destroyed, so a damaged spool destroys nothing.
type uriSpool struct {
	f   *os.File
	w   *bufio.Writer
	sum hash.Hash
	n   int64
}

func newURISpool() (*uriSpool, error) {
	f, err := os.CreateTemp("", "keyward-reconcile-*")
	if err != nil {
		return nil, fmt.Errorf("spool of the unused keys to destroy: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool of the unused keys to destroy: %w", err)
	}
	return &uriSpool{f: f, w: bufio.NewWriterSize(f, 64<<10), sum: sha256.New()}, nil
}

func (s *uriSpool) add(uri string) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(uri)))
	s.sum.Write(n[:])
	s.sum.Write([]byte(uri))
	s.n++
	s.w.Write(n[:])
	_, err := s.w.WriteString(uri)
	return err
}

// each calls fn with every URI added, in order, once the whole spool reads back as it was written.
func (s *uriSpool) each(fn func(string) error) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("spool of the unused keys to destroy: %w", err)
	}
	read := func(fn func(string) error) error {
		r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, math.MaxInt64), 64<<10)
		var n [4]byte
		for range s.n {
			if _, err := io.ReadFull(r, n[:]); err != nil {
				return err
			}
			uri := make([]byte, binary.BigEndian.Uint32(n[:]))
			if _, err := io.ReadFull(r, uri); err != nil {
				return err
			}
			if err := fn(string(uri)); err != nil {
				return err
			}
		}
		return nil
	}
	sum := sha256.New()
	if err := read(func(uri string) error {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(uri)))
		sum.Write(n[:])
		sum.Write([]byte(uri))
		return nil
	}); err != nil || !bytes.Equal(sum.Sum(nil), s.sum.Sum(nil)) {
		return fmt.Errorf("spool of the unused keys to destroy does not read back as written (%v); nothing was destroyed", err)
	}
	return read(fn)
}

func (s *uriSpool) Close() error { return s.f.Close() }

func profileVersion(f *Factory, name string) int {
	if p := f.Profiles[name]; p != nil {
		return p.Version
	}
	return 0
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
