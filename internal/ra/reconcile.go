package ra

// Reconciliation at headquarters: a site's export (internal/factory reads its file format) is verified in full
// before anything is stored, and then recorded in one transaction, so a refused export leaves no trace but its
// error.
//
// An export may hold millions of records, so none is held: the factory reads the file once to check its
// structure and chain (pass 1) before it hands it here; the export is checked against what headquarters
// recorded of the site and its signature verified; then the records are read again (pass 2) inside the
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
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// Export kinds.
const (
	// ExportKindBatch is a batch's injection log: one record per injected credential (RecordInjected) and, in
	// a final export, one per credential never injected (RecordUnused).
	ExportKindBatch = "batch-injection-log"
	// ExportKindSiteLog is a site CA's issuance log: one record per certificate it issued over EST at the site
	// (RecordEnrolled).
	ExportKindSiteLog = "site-ca-issuance-log"
)

// Record kinds.
const (
	// RecordInjected: the credential was bound to a device at injection.
	RecordInjected = "injected"
	// RecordUnused: a final export's credential that no device received; headquarters revokes it.
	RecordUnused = "unused"
	// RecordEnrolled: a site CA issued the certificate to a device enrolled by a factory station at the site.
	RecordEnrolled = "enrolled"
)

// SiteLogID is the log identity of site CA caID's issuance log: its exports' "batch" in the export header and in
// the store's export and reconciliation records.
func SiteLogID(caID string) string { return "site-log:" + caID }

// UnusedReason is the revocation reason of a pre-issued credential no device received: cessationOfOperation,
// RFC 5280 5.3.1, "the certificate is no longer needed for the purpose for which it was issued" with no
// suspicion on the key. Not superseded: that says the certificate was replaced by another, and nothing
// replaces a credential that was never used; not keyCompromise: the key never left the site HSM (or left it
// only wrapped), and its destruction is recorded with it.
const UnusedReason = store.ReasonCessationOfOperation

// SiteExportHeader is what reconciliation reads of an export's header.
type SiteExportHeader struct {
	Kind         string // ExportKindBatch or ExportKindSiteLog
	SiteCA       string
	SiteCASHA256 string // of the site CA certificate DER, hex
	Site         string
	Environment  string
	ProductLine  string
	BatchID      string // the log's identity: a batch id, or SiteLogID
	Seq          int64  // export sequence number of the log, from 1
	Count        int64  // a batch's credentials; 0 for a site log
	FirstSerial  string // a batch's first device serial; "" for a site log
	Injected     int64
	Records      int64 // Injected, plus Count-Injected unused records if Final
	Final        bool
	SignerCert   []byte // the export signer certificate the export names (DER)
}

// SiteExportRecord is one record of an export.
type SiteExportRecord struct {
	Index        int64
	Kind         string // RecordInjected, RecordUnused or RecordEnrolled
	CertDER      []byte
	DeviceSerial string // the hardware (injected) or the device (enrolled)
	At           time.Time
	KeyURI       string // the key in the site HSM of a batch credential (PKCS#11 custody)
	Station      string // the factory station that enrolled the device (site log)
	Symmetric    string // an injected device's symmetric keys: purpose:KDK version, comma-separated
	Hash         []byte // chain hash over the previous record's hash and this record
}

// SiteExport is a site's signed export whose structure and chain a first pass over it checked, holding none of
// its records but the few facts below.
type SiteExport interface {
	// Name names the export (its file) in errors.
	Name() string
	Header() *SiteExportHeader
	// Head is the chain head the signature covers: the hash of the last record, or the genesis hash.
	Head() []byte
	// UnusedKeys counts a batch log's unused records whose key is in the site HSM (a key URI) and those whose
	// key was software-wrapped.
	UnusedKeys() (hsm, soft int64)
	// MayRepeat reports whether device serial s may occur in more than one injected record: false when the
	// first pass proved it does not, so only the few that may are remembered here.
	MayRepeat(s string) bool
	// VerifySignature checks the export's signature with signer's public key (an error wrapping
	// ErrExportTampered if it does not verify).
	VerifySignature(signer *x509.Certificate) error
	// Records reads the export again and calls fn with each record in index order, each a record of its own.
	// If the file is not the one the first pass read, it fails with an error matching ErrExportChanged (and
	// ErrExportTampered), also when fn failed on the way; otherwise it returns fn's first error.
	Records(fn func(*SiteExportRecord) error) error
}

// ErrExportChanged is matched (errors.Is) by the error of SiteExport.Records for a file that changed after the
// first pass: the change explains any failure of the records read.
var ErrExportChanged = errors.New("export changed after it was verified")

// ReconcileRequest says how to reconcile a site's export.
type ReconcileRequest struct {
	// Environment and Site, if set, admit only exports of that environment and site; any other is foreign.
	Environment, Site string
	// Final closes a batch: its export must be final, and every unused credential is revoked (UnusedReason)
	// and its key recorded destroyed.
	Final bool
	// SiteHSM is the site HSM, one of the custodian's keystores. With it, the unused PKCS#11 keys of a final
	// export are destroyed in it; without it (or for software-wrapped keys, which only the site can erase),
	// AttestedBy must name who attests the destruction.
	SiteHSM    keystore.Keystore
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

// Reconcile records the export x at headquarters: it checks that x belongs to a site CA recorded here (and to
// req's environment and site, if set) and that its signature verifies with the site's recorded export signer,
// then reads its records again and records what is new since the last export of its log reconciled (every
// certificate and device, and for a final batch export the revocation of every unused credential and the
// destruction of its key) with their audit events in one transaction. Its refusals wrap ErrExportTampered,
// ErrExportForeign, ErrExportReplay, ErrSiteRefused, ErrFactoryConflict or ErrFactoryBadRequest and store
// nothing.
func (r *RA) Reconcile(ctx context.Context, p Principal, req ReconcileRequest, x SiteExport) (*ReconcileResult, error) {
	if err := r.authorize(ctx, p, audit.ActionFactoryReconcile, x.Header().SiteCA, "reconcile site exports", batchRoles...); err != nil {
		return nil, err
	}
	attester := strings.TrimSpace(req.AttestedBy)
	if len(attester) > 200 || strings.ContainsFunc(attester, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, factoryErr(ErrFactoryBadRequest, "--attested-by %.40q: at most 200 characters and no control characters", attester)
	}
	req.AttestedBy = attester
	site, err := r.verifyExport(ctx, req, x)
	if err != nil {
		return nil, err
	}
	switch k := x.Header().Kind; k {
	case ExportKindBatch:
		return r.reconcileBatch(ctx, p, req, x, site)
	case ExportKindSiteLog:
		return r.reconcileSiteLog(ctx, p, req, x, site)
	default:
		return nil, factoryErr(ErrFactoryBadRequest, "%s: export %d is a %s; this keyward reconciles %s and %s exports", x.Name(), x.Header().Seq, k, ExportKindBatch, ExportKindSiteLog)
	}
}

// verifyExport checks what every kind of export must satisfy before its records are read again: that it
// belongs to a site CA of this data directory (and to req's environment and site if set), and that its
// signature verifies with the site's recorded export signer, certified by the site CA.
func (r *RA) verifyExport(ctx context.Context, req ReconcileRequest, x SiteExport) (*SiteCA, error) {
	h, name := x.Header(), x.Name()
	foreign := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrExportForeign, fmt.Sprintf(format, args...))
	}
	switch {
	case req.Environment != "" && h.Environment != req.Environment:
		return nil, foreign("it is an export of environment %q, not %q", h.Environment, req.Environment)
	case req.Site != "" && h.Site != req.Site:
		return nil, foreign("it is an export of site %q, not %q", h.Site, req.Site)
	case r.Hierarchy().Environments[h.Environment] == nil:
		return nil, foreign("environment %q is not declared in this data directory (declared: %v)", h.Environment, r.Hierarchy().EnvironmentNames())
	case h.SiteCA != SiteCAID(h.Environment, h.ProductLine, h.Site):
		return nil, foreign("site CA %q is not the CA of %s/%s/%s", h.SiteCA, h.Environment, h.ProductLine, h.Site)
	}
	site, err := r.FactorySite(ctx, h.Environment, h.ProductLine, h.Site)
	if errors.Is(err, ErrFactoryNotFound) {
		return nil, foreign("this data directory has no site CA %s", h.SiteCA)
	} else if err != nil {
		return nil, err
	}
	if sum := sha256Hex(site.CA.CertDER); sum != h.SiteCASHA256 {
		return nil, foreign("its site CA certificate (SHA-256 %s) is not the %s recorded here (%s)", short(h.SiteCASHA256), site.CA.ID, short(sum))
	}
	if len(site.Site.AuditCertDER) == 0 {
		return nil, factoryErr(ErrFactoryBadRequest, "site CA %s has no export signer recorded", site.CA.ID)
	}
	signerCert, err := x509.ParseCertificate(site.Site.AuditCertDER)
	if err != nil {
		return nil, fmt.Errorf("export signer of %s: %w", site.CA.ID, err)
	}
	if err := signerCert.CheckSignatureFrom(site.Cert); err != nil {
		return nil, fmt.Errorf("export signer of %s is not certified by it: %w", site.CA.ID, err)
	}
	if !bytes.Equal(h.SignerCert, site.Site.AuditCertDER) {
		return nil, fmt.Errorf("%s: %w: it names an export signer that is not %s's recorded one (serial %x)", name, ErrExportTampered, site.CA.ID, signerCert.SerialNumber)
	}
	if err := x.VerifySignature(signerCert); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return site, nil
}

// siteRules are the site CA's rules as headquarters recorded them (factory.go).
type siteRules struct {
	site     *SiteCA
	cnRule   *regexp.Regexp
	backdate time.Duration
}

func (r *RA) recordedRules(site *SiteCA) (*siteRules, error) {
	cnRule, err := r.siteRule(site.Site.CNPattern)
	if err != nil {
		return nil, fmt.Errorf("site CA %s: recorded subject rule %q: %w", site.CA.ID, site.Site.CNPattern, err)
	}
	s := &siteRules{site: site, cnRule: cnRule}
	if p := r.Profiles()[site.Site.Profile]; p != nil {
		s.backdate = p.Backdate
	}
	return s, nil
}

// check parses a record's certificate and checks that the site CA issued it, that its subject is wantCN and
// inside the site's subject rule, and that it was issued inside the site CA's issuing window; it returns the
// certificate and its SPKI hash. Errors describe the rule broken, for the caller to place.
func (s *siteRules) check(rec *SiteExportRecord, wantCN string) (*x509.Certificate, []byte, error) {
	site := s.site
	c, err := x509.ParseCertificate(rec.CertDER)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %v", err)
	}
	if err := c.CheckSignatureFrom(site.Cert); err != nil {
		return nil, nil, fmt.Errorf("certificate %x was not issued by site CA %s: %v", c.SerialNumber, site.CA.ID, err)
	}
	if cn := c.Subject.CommonName; cn != wantCN || !s.cnRule.MatchString(cn) {
		return nil, nil, fmt.Errorf("certificate subject %q is not %q under site CA %s's subject rule %s", cn, wantCN, site.CA.ID, site.Site.CNPattern)
	}
	if issued := c.NotBefore.Add(s.backdate); issued.After(site.Site.IssueUntil) || issued.Before(site.CA.NotBefore) {
		return nil, nil, fmt.Errorf("certificate %x was issued at %s, outside site CA %s's issuing window (%s to %s)", c.SerialNumber, issued.Format(time.RFC3339),
			site.CA.ID, site.CA.NotBefore.Format(time.RFC3339), site.Site.IssueUntil.Format(time.RFC3339))
	}
	spki, err := goodkey.SPKIHash(c.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return c, spki, nil
}

// CheckHardwareSerial checks the serial of the hardware a credential is injected into: 1 to 64 printable ASCII
// characters without spaces, so that it prints and compares as it was typed.
func CheckHardwareSerial(s string) error {
	if s == "" || len(s) > 64 {
		return factoryErr(ErrFactoryBadRequest, "--device-serial %q: give the device's serial number, 1 to 64 characters", s)
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' {
			return factoryErr(ErrFactoryBadRequest, "--device-serial %q: use printable ASCII without spaces", s)
		}
	}
	return nil
}

// checkedRecord is a record that passed the site's rules, with its parsed certificate and SPKI hash.
type checkedRecord struct {
	r    *SiteExportRecord
	cert *x509.Certificate
	spki []byte
}

// errRecordingStopped tells the reader of an export that recording failed; the recording error is reported.
var errRecordingStopped = errors.New("recording stopped")

// reconcileBatch records a batch injection log whose signature is verified, in one transaction: the records
// are read again and each is checked while it is recorded, so that any refusal rolls everything back, and
// holding the export costs the same memory for a thousand records as for millions.
func (r *RA) reconcileBatch(ctx context.Context, p Principal, req ReconcileRequest, x SiteExport, site *SiteCA) (*ReconcileResult, error) {
	h, name := x.Header(), x.Name()
	refused := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrSiteRefused, fmt.Sprintf(format, args...))
	}
	bad := func(format string, args ...any) error { return factoryErr(ErrFactoryBadRequest, format, args...) }

	// The signature holds: from here on, a failure is the site's (or a policy's), not tampering.
	switch {
	case req.Final && !h.Final:
		return nil, bad("%s: export %d of batch %s is not final; make one with 'keyward factory export --final' to close the batch", name, h.Seq, h.BatchID)
	case !req.Final && h.Final:
		return nil, bad("%s: export %d of batch %s is final; reconcile it with --final, which revokes its %d unused credentials", name, h.Seq, h.BatchID, h.Count-h.Injected)
	}
	destruction := ""
	if h.Final && h.Records > h.Injected {
		_, softKeys := x.UnusedKeys()
		useHSM := req.SiteHSM != nil && req.SiteHSM.Location() == keystore.LocationPKCS11 && softKeys == 0
		switch {
		case useHSM:
			destruction = "site-hsm"
		case req.AttestedBy != "":
			destruction = "attested"
		default:
			return nil, bad("%s: closing batch %s destroys %d unused keys; name the site HSM with --keystore pkcs11:..., or who attests their destruction with --attested-by", name, h.BatchID, h.Count-h.Injected)
		}
	}

	rules, err := r.recordedRules(site)
	if err != nil {
		return nil, err
	}
	serials, err := ParseSerialRange(h.FirstSerial, h.Count)
	if err != nil {
		return nil, refused("batch %s: %v", h.BatchID, err)
	}
	devices := map[string]int64{} // device serial -> index, for those that may repeat only

	// check applies the site's rules to one record's certificate and device serial.
	check := func(rec *SiteExportRecord) (*x509.Certificate, []byte, error) {
		// The site's serial rule: credential i has the device serial FirstSerial + i.
		c, spki, err := rules.check(rec, serials.At(rec.Index))
		if err != nil {
			return nil, nil, refused("record %d: %v", rec.Index, err)
		}
		if rec.Kind == RecordInjected {
			if err := CheckHardwareSerial(rec.DeviceSerial); err != nil {
				return nil, nil, refused("record %d: %v", rec.Index, err)
			}
			// A device gets one credential.
			if x.MayRepeat(rec.DeviceSerial) {
				if prev, dup := devices[rec.DeviceSerial]; dup {
					return nil, nil, refused("device %q received credentials %d and %d; a device gets one", rec.DeviceSerial, prev, rec.Index)
				}
				devices[rec.DeviceSerial] = rec.Index
			}
		}
		return c, spki, nil
	}

	now := r.now()
	res := &ReconcileResult{File: name, SiteCA: site.CA.ID, BatchID: h.BatchID, Seq: h.Seq, Final: h.Final, Destruction: destruction}
	err = r.tx(ctx, func(tx store.Tx) error {
		b, err := tx.LockFactoryBatch(ctx, h.BatchID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			b = &store.FactoryBatch{BatchID: h.BatchID, CAID: site.CA.ID, Count: h.Count, FirstSerial: h.FirstSerial, ChainHead: []byte{}}
		case err != nil:
			return err
		case b.Final:
			return fmt.Errorf("%s: %w: batch %s was closed by export %d at %s; no later export is accepted", name, ErrExportReplay, h.BatchID, b.LastSeq, b.UpdatedAt.Format(time.RFC3339))
		case h.Seq <= b.LastSeq:
			return fmt.Errorf("%s: %w: export %d of batch %s is not newer than export %d, reconciled at %s", name, ErrExportReplay, h.Seq, h.BatchID, b.LastSeq, b.UpdatedAt.Format(time.RFC3339))
		case b.CAID != site.CA.ID || b.Count != h.Count || b.FirstSerial != h.FirstSerial:
			return fmt.Errorf("%s: %w: batch %s was reconciled as %d credentials from %s under %s, the export says %d from %s under %s",
				name, ErrExportTampered, h.BatchID, b.Count, b.FirstSerial, b.CAID, h.Count, h.FirstSerial, site.CA.ID)
		case h.Injected < b.Injected:
			return fmt.Errorf("%s: %w: export %d of batch %s lists %d injections; %d were reconciled from export %d", name, ErrExportTampered, h.Seq, h.BatchID, h.Injected, b.Injected, b.LastSeq)
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
			readErr = x.Records(func(rec *SiteExportRecord) error {
				if rec.Index == h.Injected-1 {
					lastInjected = rec.Hash
				}
				c, spki, err := check(rec)
				if err != nil {
					return err
				}
				if rec.Index < start {
					// Reconciled before: the chain must pass through the head recorded then, before anything new
					// is recorded.
					if rec.Index == start-1 && !bytes.Equal(rec.Hash, b.ChainHead) {
						return fmt.Errorf("%s: %w: export %d of batch %s does not extend the log reconciled from export %d (record %d differs)", name, ErrExportTampered, h.Seq, h.BatchID, b.LastSeq, rec.Index)
					}
					return nil
				}
				select {
				case work <- checkedRecord{rec, c, spki}:
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
			if recErr = r.recordBatchEntry(ctx, tx, p, req, name, h, site, w, destruction, spool, now, res); recErr != nil {
				close(quit)
			}
		}
		<-readDone
		// A record fails to record only after every record before it was checked, so its error comes first,
		// unless the file changed, which explains any failure.
		switch {
		case recErr != nil && !errors.Is(readErr, ErrExportChanged):
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
		if err := r.success(ctx, tx, p, audit.ActionFactoryReconcile, site.CA.ID, now, map[string]string{"batch": h.BatchID, "export_seq": fmt.Sprint(h.Seq),
			"injected": fmt.Sprint(h.Injected), "devices_recorded": fmt.Sprint(res.Devices), "certificates_recorded": fmt.Sprint(res.Certificates),
			"revoked": fmt.Sprint(res.Revoked), "keys_destroyed": fmt.Sprint(res.KeysDestroyed), "final": fmt.Sprint(h.Final), "destruction": destruction,
			"chain_head": fmt.Sprintf("%x", x.Head())}); err != nil {
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
			if err := r.cfg.CA.Destroy(ctx, uri); err != nil && !errors.Is(err, keystore.ErrNotFound) {
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

// recordBatchEntry records one checked record of a batch log new to headquarters: its certificate, and the
// device it was injected into, or its revocation and key destruction if it is unused.
func (r *RA) recordBatchEntry(ctx context.Context, tx store.Tx, p Principal, req ReconcileRequest, name string, h *SiteExportHeader, site *SiteCA,
	w checkedRecord, destruction string, spool *uriSpool, now time.Time, res *ReconcileResult) error {
	rec, c, spki := w.r, w.cert, w.spki
	alg, err := keystore.AlgorithmOf(c.PublicKey)
	if err != nil {
		return fmt.Errorf("%s: %w: record %d: %v", name, ErrSiteRefused, rec.Index, err)
	}
	serial, err := r.recordSiteCertificate(ctx, tx, p, name, site, rec, c, spki, now, map[string]string{"batch": h.BatchID, "export_seq": fmt.Sprint(h.Seq)})
	if err != nil {
		return err
	}
	res.Certificates++
	if rec.Kind == RecordInjected {
		// The registry is keyed by the identity's common name, as enrollment keys it; the station is the
		// batch that provisioned the device, and the hardware it was injected into is recorded with it, once
		// per product line: hardware that got a credential from an earlier batch is refused.
		dev := &store.Device{Environment: h.Environment, ProductLine: h.ProductLine, Serial: c.Subject.CommonName, StationID: "batch:" + h.BatchID,
			Site: h.Site, HardwareSerial: rec.DeviceSerial}
		details := map[string]string{"batch": h.BatchID, "device_serial": rec.DeviceSerial, "injected_at": rec.At.Format(time.RFC3339Nano)}
		if rec.Symmetric != "" {
			if err := r.recordSymmetric(ctx, tx, name, h, rec, c.Subject.CommonName, now); err != nil {
				return err
			}
			details["symmetric"] = rec.Symmetric
		}
		if err := r.registerSiteDevice(ctx, tx, p, name, rec, spki, alg, serial, dev, now, details); err != nil {
			return err
		}
		res.Devices++
		return nil
	}
	// Unused: revoke, and record the key destroyed.
	if _, err := r.revokeTx(ctx, tx, p, serial, UnusedReason, nil, now, map[string]string{"batch": h.BatchID, "index": fmt.Sprint(rec.Index), "unused": "true"}); err != nil {
		return fmt.Errorf("revoke unused credential %d (%s): %w", rec.Index, serial, err)
	}
	res.Revoked++
	uri, loc := DeviceKeyURI(spki), keystore.LocationSoftware
	if rec.KeyURI != "" {
		uri, loc = rec.KeyURI, keystore.LocationPKCS11
	}
	if err := tx.InsertKey(ctx, &store.Key{URI: uri, Purpose: string(keystore.PurposeDeviceIdentity), Algorithm: string(alg), Location: string(loc),
		State: store.KeyActive, Owner: serial, SPKISHA256: spki, CreatedAt: c.NotBefore, StateChangedAt: now}); err != nil {
		return fmt.Errorf("record %d: key %s: %w", rec.Index, uri, err)
	}
	if err := tx.SetKeyState(ctx, uri, store.KeyDestroyed, now); err != nil {
		return err
	}
	kd := map[string]string{"purpose": string(keystore.PurposeDeviceIdentity), "location": string(loc), "owner": serial, "subject": c.Subject.CommonName,
		"reason": "unused pre-issued credential", "batch": h.BatchID, "index": fmt.Sprint(rec.Index), "method": destruction}
	if destruction == "attested" {
		kd["attested_by"] = req.AttestedBy
	}
	if err := r.success(ctx, tx, p, audit.ActionKeyDestroy, uri, now, kd); err != nil {
		return err
	}
	res.KeysDestroyed++
	if spool != nil {
		if rec.KeyURI == "" {
			// The first pass counted no software-wrapped key; Records will report how the file changed.
			return fmt.Errorf("%s: %w: record %d has no key in the site HSM", name, ErrExportTampered, rec.Index)
		}
		return spool.add(rec.KeyURI)
	}
	return nil
}

// reconcileSiteLog records, at headquarters, the records of a site CA issuance log export that are new since
// the last export reconciled — every certificate and device, with their audit events — in one transaction.
// Each record is checked while it is recorded; any refusal rolls the whole import back.
func (r *RA) reconcileSiteLog(ctx context.Context, p Principal, req ReconcileRequest, x SiteExport, site *SiteCA) (*ReconcileResult, error) {
	h, name := x.Header(), x.Name()
	refused := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrSiteRefused, fmt.Sprintf(format, args...))
	}
	switch {
	case h.BatchID != SiteLogID(site.CA.ID):
		return nil, fmt.Errorf("%s: %w: a site CA issuance log of %s names log %q", name, ErrExportTampered, site.CA.ID, h.BatchID)
	case h.Final:
		return nil, factoryErr(ErrFactoryBadRequest, "%s: a site CA issuance log is never final", name)
	case req.Final:
		return nil, factoryErr(ErrFactoryBadRequest, "%s: --final closes batches; a site CA issuance log has no unused credentials to revoke", name)
	case h.Injected != h.Records || h.Count != 0 || h.FirstSerial != "":
		return nil, fmt.Errorf("%s: %w: header of a site CA issuance log with count %d, first serial %q, %d injected of %d records", name, ErrExportTampered, h.Count, h.FirstSerial, h.Injected, h.Records)
	}
	rules, err := r.recordedRules(site)
	if err != nil {
		return nil, err
	}
	logID := h.BatchID
	now := r.now()
	res := &ReconcileResult{File: name, SiteCA: site.CA.ID, BatchID: logID, Seq: h.Seq}
	err = r.tx(ctx, func(tx store.Tx) error {
		b, err := tx.LockFactoryBatch(ctx, logID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			b = &store.FactoryBatch{BatchID: logID, CAID: site.CA.ID, ChainHead: []byte{}}
		case err != nil:
			return err
		case h.Seq <= b.LastSeq:
			return fmt.Errorf("%s: %w: export %d of the site log of %s is not newer than export %d, reconciled at %s", name, ErrExportReplay, h.Seq, site.CA.ID, b.LastSeq, b.UpdatedAt.Format(time.RFC3339))
		case b.CAID != site.CA.ID:
			return fmt.Errorf("%s: %w: log %s was reconciled under %s", name, ErrExportTampered, logID, b.CAID)
		case h.Records < b.Injected:
			return fmt.Errorf("%s: %w: export %d of the site log of %s lists %d certificates; %d were reconciled from export %d", name, ErrExportTampered, h.Seq, site.CA.ID, h.Records, b.Injected, b.LastSeq)
		}
		// Quota: the batches headquarters has seen count in full, the log by its length.
		seen, err := tx.FactoryBatchCounts(ctx, site.CA.ID, logID)
		if err != nil {
			return err
		}
		if seen+h.Records > site.Site.Quota {
			return refused("the site log's %d certificates and the %d of reconciled batches exceed site CA %s's quota of %d", h.Records, seen, site.CA.ID, site.Site.Quota)
		}
		stations := map[string]bool{}
		var head []byte
		err = x.Records(func(rec *SiteExportRecord) error {
			head = rec.Hash
			if rec.Index < b.Injected {
				// Reconciled before: the chain must pass through the head recorded then.
				if rec.Index == b.Injected-1 && !bytes.Equal(rec.Hash, b.ChainHead) {
					return fmt.Errorf("%s: %w: export %d of the site log of %s does not extend the log reconciled from export %d (record %d differs)", name, ErrExportTampered, h.Seq, site.CA.ID, b.LastSeq, rec.Index)
				}
				return nil
			}
			return r.recordSiteLogEntry(ctx, tx, p, name, h, site, rules, stations, rec, now, res)
		})
		if err != nil {
			return err
		}
		if head == nil {
			head = []byte{}
		}
		b.LastSeq, b.Count, b.Injected, b.ChainHead, b.UpdatedAt = h.Seq, h.Records, h.Records, head, now
		if err := tx.PutFactoryBatch(ctx, b); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionFactoryReconcile, site.CA.ID, now, map[string]string{"log": logID, "kind": ExportKindSiteLog,
			"export_seq": fmt.Sprint(h.Seq), "records": fmt.Sprint(h.Records), "devices_recorded": fmt.Sprint(res.Devices),
			"certificates_recorded": fmt.Sprint(res.Certificates), "chain_head": hex.EncodeToString(head)})
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// recordSiteLogEntry checks one new record of a site log and records its certificate, device key and device.
func (r *RA) recordSiteLogEntry(ctx context.Context, tx store.Tx, p Principal, name string, h *SiteExportHeader, site *SiteCA, rules *siteRules,
	stations map[string]bool, rec *SiteExportRecord, now time.Time, res *ReconcileResult) error {
	refused := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: record %d: %s", name, ErrSiteRefused, rec.Index, fmt.Sprintf(format, args...))
	}
	if rec.Kind != RecordEnrolled {
		return fmt.Errorf("%s: %w: record %d is of kind %q; a site CA issuance log holds %q records only", name, ErrExportTampered, rec.Index, rec.Kind, RecordEnrolled)
	}
	c, spki, err := rules.check(rec, rec.DeviceSerial)
	if err != nil {
		return refused("%v", err)
	}
	// The station must be one headquarters registered for this site and product line.
	if !stations[rec.Station] {
		st, err := tx.LockStation(ctx, rec.Station)
		if errors.Is(err, store.ErrNotFound) {
			return refused("station %q is not registered here", rec.Station)
		} else if err != nil {
			return err
		}
		if st.Environment != h.Environment || st.Site != h.Site {
			return refused("station %s is registered for %s/%s, not for site %s of %s", st.ID, st.Environment, st.Site, h.Site, h.Environment)
		}
		stations[rec.Station] = true
	}
	alg, err := keystore.AlgorithmOf(c.PublicKey)
	if err != nil {
		return refused("%v", err)
	}
	serial, err := r.recordSiteCertificate(ctx, tx, p, name, site, rec, c, spki, now, map[string]string{"log": h.BatchID, "export_seq": fmt.Sprint(h.Seq),
		"station": rec.Station, "issued_at": rec.At.Format(time.RFC3339Nano)})
	if err != nil {
		return err
	}
	res.Certificates++
	dev := &store.Device{Environment: h.Environment, ProductLine: h.ProductLine, Serial: c.Subject.CommonName, StationID: rec.Station, Site: h.Site}
	if err := r.registerSiteDevice(ctx, tx, p, name, rec, spki, alg, serial, dev, now, map[string]string{"station": rec.Station, "log": h.BatchID,
		"enrolled_at": rec.At.Format(time.RFC3339Nano)}); err != nil {
		return err
	}
	res.Devices++
	return nil
}

// recordSiteCertificate stores a checked record's certificate, issued by the site CA, with its cert.issue
// audit event (details added to the issuer and subject), and returns its serial.
func (r *RA) recordSiteCertificate(ctx context.Context, tx store.Tx, p Principal, name string, site *SiteCA, rec *SiteExportRecord, c *x509.Certificate,
	spki []byte, now time.Time, details map[string]string) (string, error) {
	serial := SerialString(c)
	version := 0
	if prof := r.Profiles()[site.Site.Profile]; prof != nil {
		version = prof.Version
	}
	if err := tx.InsertCertificate(ctx, &store.Certificate{Serial: serial, IssuerID: site.CA.ID, Profile: site.Site.Profile, ProfileVersion: version,
		Subject: c.Subject.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter, SPKISHA256: spki, DER: rec.CertDER,
		Status: store.CertStatusValid, CreatedAt: now}); err != nil {
		if errors.Is(err, store.ErrDuplicateSerial) || errors.Is(err, store.ErrDuplicateKey) {
			return "", fmt.Errorf("%s: %w: record %d: certificate %s: %v", name, ErrFactoryConflict, rec.Index, serial, err)
		}
		return "", err
	}
	d := map[string]string{"issuer": site.CA.ID, "subject": c.Subject.CommonName, "index": fmt.Sprint(rec.Index), "source": "factory reconcile"}
	for k, v := range details {
		d[k] = v
	}
	return serial, r.success(ctx, tx, p, audit.ActionCertIssue, serial, now, d)
}

// registerSiteDevice records the device a record's certificate (serial certSerial) now identifies: its key,
// held by the device, and the registry entry dev, with the device.register audit event (details added to the
// registry fields). It refuses an identity the registry holds already — saying so if it is decommissioned,
// whose serial is never certified again — and, for a batch device, hardware registered already.
func (r *RA) registerSiteDevice(ctx context.Context, tx store.Tx, p Principal, name string, rec *SiteExportRecord, spki []byte, alg keystore.Algorithm,
	certSerial string, dev *store.Device, now time.Time, details map[string]string) error {
	uri := DeviceKeyURI(spki)
	// The key's owner is its certificate, as enrollment records it.
	if err := tx.InsertKey(ctx, &store.Key{URI: uri, Purpose: string(keystore.PurposeDeviceIdentity), Algorithm: string(alg), Location: string(keystore.LocationDevice),
		State: store.KeyActive, Owner: certSerial, SPKISHA256: spki, CreatedAt: rec.At, StateChangedAt: rec.At}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("record %d: key %s: %w", rec.Index, uri, err)
	}
	if d, err := tx.LockDevice(ctx, dev.Environment, dev.ProductLine, dev.Serial); err == nil {
		if d.State == store.DeviceDecommissioned {
			return fmt.Errorf("%s: %w: record %d: device %s of %s/%s was decommissioned at %s: its serial is never certified again", name, ErrFactoryConflict, rec.Index,
				dev.Serial, dev.Environment, dev.ProductLine, d.UpdatedAt.UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("%s: %w: record %d: device %s of %s/%s is registered already (by %s at site %s, %s)", name, ErrFactoryConflict, rec.Index, dev.Serial,
			dev.Environment, dev.ProductLine, d.StationID, d.Site, d.EnrolledAt.Format(time.RFC3339))
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	dev.State, dev.EnrolledAt, dev.CertSerial, dev.SPKISHA256, dev.UpdatedAt = store.DeviceActive, rec.At, certSerial, spki, now
	if err := tx.PutDevice(ctx, dev); err != nil {
		if errors.Is(err, store.ErrExists) && dev.HardwareSerial != "" {
			who := "another device"
			if prev, _ := r.cfg.Store.ListDevices(ctx, store.DeviceFilter{Environment: dev.Environment, ProductLine: dev.ProductLine, HardwareSerial: dev.HardwareSerial, Limit: 1}); len(prev) == 1 {
				who = fmt.Sprintf("device %s (from %s)", prev[0].Serial, prev[0].StationID)
				if prev[0].State == store.DeviceDecommissioned {
					who += ", decommissioned"
				}
			}
			return fmt.Errorf("%s: %w: record %d: hardware %q received a credential already: it is registered as %s; a device gets one identity",
				name, ErrFactoryConflict, rec.Index, dev.HardwareSerial, who)
		}
		return err
	}
	d := map[string]string{"environment": dev.Environment, "product_line": dev.ProductLine, "site": dev.Site, "index": fmt.Sprint(rec.Index), "certificate": certSerial}
	for k, v := range details {
		d[k] = v
	}
	return r.success(ctx, tx, p, audit.ActionDeviceRegister, dev.Serial, now, d)
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
		_ = f.Close()
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
	_, _ = s.w.Write(n[:]) // a bufio.Writer keeps its first error: WriteString and Flush return it
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

// recordSymmetric records in the key glossary the symmetric keys an injected device received (rec.Symmetric,
// purpose:KDK version), each under a KDK version headquarters holds for the export's environment and product
// line; the device's registration event carries the list.
func (r *RA) recordSymmetric(ctx context.Context, tx store.Tx, name string, h *SiteExportHeader, rec *SiteExportRecord, cn string, now time.Time) error {
	refs, err := ParseSymmetricList(rec.Symmetric)
	if err != nil {
		return fmt.Errorf("%s: %w: record %d: %v", name, ErrExportTampered, rec.Index, err)
	}
	for _, ref := range refs {
		kdks, err := r.cfg.Store.ListKDKs(ctx, h.Environment, h.ProductLine, ref.Purpose)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(kdks, func(k *store.KDK) bool { return k.Version == ref.Version }) {
			return fmt.Errorf("%s: %w: record %d's device got a %s key of KDK version %d, which headquarters does not hold for %s/%s",
				name, ErrExportForeign, rec.Index, ref.Purpose, ref.Version, h.Environment, h.ProductLine)
		}
		uri := DerivedKeyURI(h.Environment, h.ProductLine, cn, ref.Purpose, ref.Version)
		if err := tx.InsertKey(ctx, derivedKeyRow(uri, ref.Purpose, cn, now)); err != nil {
			return fmt.Errorf("record %d: key %s: %w", rec.Index, uri, err)
		}
	}
	return nil
}

// SymmetricRef names a device's symmetric key by purpose and KDK version.
type SymmetricRef struct {
	Purpose string
	Version int
}

// ParseSymmetricList reads an export record's symmetric keys: "purpose:version" items of distinct symmetric
// purposes, comma-separated, versions written in decimal without sign or leading zero.
func ParseSymmetricList(s string) ([]SymmetricRef, error) {
	const maxItems = 16
	items := strings.Split(s, ",")
	if len(items) > maxItems {
		return nil, fmt.Errorf("symmetric key list has %d items; at most %d", len(items), maxItems)
	}
	out := make([]SymmetricRef, 0, len(items))
	for _, item := range items {
		purpose, v, ok := strings.Cut(item, ":")
		version, err := strconv.Atoi(v)
		switch {
		case !ok || err != nil || version < 1 || strconv.Itoa(version) != v:
			return nil, fmt.Errorf("symmetric key %.40q: want purpose:version with a version of 1 or more", item)
		case !keystore.Purpose(purpose).Symmetric():
			return nil, fmt.Errorf("symmetric key %.40q: unknown purpose; known: %v", item, keystore.SymmetricPurposes)
		case slices.ContainsFunc(out, func(r SymmetricRef) bool { return r.Purpose == purpose }):
			return nil, fmt.Errorf("symmetric key list names %s twice", purpose)
		}
		out = append(out, SymmetricRef{Purpose: purpose, Version: version})
	}
	return out, nil
}
