package factory

// The site CA issuance log (issue 4 part 1): the certificates a site CA issued over EST at the site
// ('keyward factory serve'), exported for headquarters in the same signed, chained format as a batch's
// injection log (export.go), with header kind exportKindSiteLog and one record per certificate in issuance order
// (kind RecordEnrolled: certificate, device serial, station, time). The log's identity — and so its chain's
// genesis — is the site CA itself (SiteLogID), so successive exports of the log share the hashes of their common
// records and headquarters checks that each extends what it reconciled before, as for batches.

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// RecordEnrolled: a site CA issued the certificate to a device enrolled by a factory station at the site.
const RecordEnrolled = "enrolled"

// SiteLogID is the log identity of site CA caID's issuance log: its exports' "batch" in the export header and
// in the store's export and reconciliation records.
func SiteLogID(caID string) string { return "site-log:" + caID }

// ExportSiteLog writes a signed export of the issuance log of the site CA this data directory holds (a site
// data directory, see internal/node site.go, or any directory where the site CA enrolled) to out. Like Export,
// the export is recorded with its audit event before the file appears under out.
func (f *Factory) ExportSiteLog(ctx context.Context, env, product, siteName, out string) (*ExportSummary, error) {
	if out == "" {
		return nil, badRequest("--out is required")
	}
	if _, err := os.Stat(out); err == nil {
		return nil, fmt.Errorf("%w: %s exists; an export is never overwritten, choose another --out", ErrConflict, out)
	}
	site, err := f.loadSite(ctx, env, product, siteName)
	if err != nil {
		return nil, err
	}
	if site.Site.AuditKeyURI == "" {
		return nil, fmt.Errorf("%w: site CA %s has no export signer", ErrBadRequest, site.CA.ID)
	}
	signer, err := f.Keys.Signer(ctx, site.Site.AuditKeyURI, keystore.PurposeAuditSigning)
	if err != nil {
		return nil, fmt.Errorf("export signer of %s: %w", site.CA.ID, err)
	}
	logID := SiteLogID(site.CA.ID)
	// The log grows while the site enrolls: the export covers the entries that exist now.
	records, err := f.Store.FactorySiteLogLength(ctx, site.CA.ID)
	if err != nil {
		return nil, err
	}
	now := f.now()
	hdr := ExportHeader{Version: 1, Kind: exportKindSiteLog, SiteCA: site.CA.ID, SiteCASHA256: sha256Hex(site.CA.CertDER), Site: site.Site.Site,
		Environment: site.Site.Environment, ProductLine: site.Site.ProductLine, BatchID: logID, Injected: records, Records: records,
		SignerCert: site.Site.AuditCertDER, CreatedAt: now}
	if err := f.Store.Tx(ctx, func(tx store.Tx) error {
		last, err := tx.LastFactoryExportSeq(ctx, logID)
		hdr.Seq = last + 1
		return err
	}); err != nil {
		return nil, err
	}

	x, err := newExportWriter(out, &hdr)
	if err != nil {
		return nil, err
	}
	defer x.close()
	var n int64
	errDone := errors.New("done")
	err = f.Store.WalkFactorySiteLog(ctx, site.CA.ID, 0, func(e *store.FactorySiteLogEntry) error {
		if e.Index >= records {
			return errDone
		}
		if e.Index != n {
			return fmt.Errorf("%w: site log of %s has index %d where %d was due", ErrCorrupt, site.CA.ID, e.Index, n)
		}
		n++
		return x.add(&ExportRecord{Index: e.Index, Kind: RecordEnrolled, CertDER: e.CertDER, DeviceSerial: e.Device, Station: e.StationID, At: e.CreatedAt.UTC()})
	})
	if err != nil && !errors.Is(err, errDone) {
		return nil, err
	}
	if n != records {
		return nil, fmt.Errorf("%w: site log of %s has %d entries, %d were counted", ErrCorrupt, site.CA.ID, n, records)
	}
	if err := x.seal(signer); err != nil {
		return nil, fmt.Errorf("sign export of the site log of %s: %w", site.CA.ID, err)
	}
	if err := f.recordExport(ctx, &store.FactoryExport{BatchID: logID, Seq: hdr.Seq, CAID: site.CA.ID, Records: records, ChainHead: x.head, CreatedAt: now},
		"the site log of "+site.CA.ID, map[string]string{"log": logID, "kind": exportKindSiteLog, "file": filepath.Base(out)}); err != nil {
		return nil, err
	}
	if err := x.publish(); err != nil {
		return nil, err
	}
	return &ExportSummary{Path: out, BatchID: logID, SiteCA: site.CA.ID, Seq: hdr.Seq, Injected: records, Records: records, Head: hex.EncodeToString(x.head)}, nil
}

// reconcileSiteLog records, at headquarters, the records of a site CA issuance log export that are new since
// the last export reconciled — every certificate and device, with their audit events — in one transaction.
// The export's structure, chain, site, signer and signature were verified by the caller. Each record is
// checked while it is recorded; any refusal rolls the whole import back.
func (f *Factory) reconcileSiteLog(ctx context.Context, req ReconcileRequest, name string, e *ExportFile, site *SiteCA) (*ReconcileResult, error) {
	h := e.Header()
	refused := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrRefused, fmt.Sprintf(format, args...))
	}
	switch {
	case h.BatchID != SiteLogID(site.CA.ID):
		return nil, fmt.Errorf("%s: %w: a site CA issuance log of %s names log %q", name, ErrTampered, site.CA.ID, h.BatchID)
	case h.Final:
		return nil, badRequest("%s: a site CA issuance log is never final", name)
	case req.Final:
		return nil, badRequest("%s: --final closes batches; a site CA issuance log has no unused credentials to revoke", name)
	case h.Injected != h.Records || h.Count != 0 || h.FirstSerial != "":
		return nil, fmt.Errorf("%s: %w: header of a site CA issuance log with count %d, first serial %q, %d injected of %d records", name, ErrTampered, h.Count, h.FirstSerial, h.Injected, h.Records)
	}
	rules, err := f.siteRules(site)
	if err != nil {
		return nil, err
	}
	logID := h.BatchID
	now := f.now()
	res := &ReconcileResult{File: name, SiteCA: site.CA.ID, BatchID: logID, Seq: h.Seq}
	err = f.Store.Tx(ctx, func(tx store.Tx) error {
		b, err := tx.LockFactoryBatch(ctx, logID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			b = &store.FactoryBatch{BatchID: logID, CAID: site.CA.ID, ChainHead: []byte{}}
		case err != nil:
			return err
		case h.Seq <= b.LastSeq:
			return fmt.Errorf("%s: %w: export %d of the site log of %s is not newer than export %d, reconciled at %s", name, ErrReplay, h.Seq, site.CA.ID, b.LastSeq, b.UpdatedAt.Format(time.RFC3339))
		case b.CAID != site.CA.ID:
			return fmt.Errorf("%s: %w: log %s was reconciled under %s", name, ErrTampered, logID, b.CAID)
		case h.Records < b.Injected:
			return fmt.Errorf("%s: %w: export %d of the site log of %s lists %d certificates; %d were reconciled from export %d", name, ErrTampered, h.Seq, site.CA.ID, h.Records, b.Injected, b.LastSeq)
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
		err = e.Records(func(r *ExportRecord) error {
			head = r.Hash
			if r.Index < b.Injected {
				// Reconciled before: the chain must pass through the head recorded then.
				if r.Index == b.Injected-1 && !bytes.Equal(r.Hash, b.ChainHead) {
					return fmt.Errorf("%s: %w: export %d of the site log of %s does not extend the log reconciled from export %d (record %d differs)", name, ErrTampered, h.Seq, site.CA.ID, b.LastSeq, r.Index)
				}
				return nil
			}
			return f.recordSiteLogEntry(ctx, tx, name, h, site, rules, stations, r, now, res)
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
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "factory.reconcile", Subject: site.CA.ID, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"log": logID, "kind": exportKindSiteLog, "export_seq": fmt.Sprint(h.Seq), "records": fmt.Sprint(h.Records),
				"devices_recorded": fmt.Sprint(res.Devices), "certificates_recorded": fmt.Sprint(res.Certificates), "chain_head": hex.EncodeToString(head)}})
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// recordSiteLogEntry checks one new record of a site log and records its certificate, device key and device.
func (f *Factory) recordSiteLogEntry(ctx context.Context, tx store.Tx, name string, h *ExportHeader, site *SiteCA, rules *siteRules,
	stations map[string]bool, r *ExportRecord, now time.Time, res *ReconcileResult) error {
	refused := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: record %d: %s", name, ErrRefused, r.Index, fmt.Sprintf(format, args...))
	}
	if r.Kind != RecordEnrolled {
		return fmt.Errorf("%s: %w: record %d is of kind %q; a site CA issuance log holds %q records only", name, ErrTampered, r.Index, r.Kind, RecordEnrolled)
	}
	c, spki, err := rules.check(r, r.DeviceSerial)
	if err != nil {
		return refused("%v", err)
	}
	// The station must be one headquarters registered for this site and product line.
	if !stations[r.Station] {
		st, err := tx.LockStation(ctx, r.Station)
		if errors.Is(err, store.ErrNotFound) {
			return refused("station %q is not registered here", r.Station)
		} else if err != nil {
			return err
		}
		if st.Environment != h.Environment || st.Site != h.Site {
			return refused("station %s is registered for %s/%s, not for site %s of %s", st.ID, st.Environment, st.Site, h.Site, h.Environment)
		}
		stations[r.Station] = true
	}
	alg, err := keystore.AlgorithmOf(c.PublicKey)
	if err != nil {
		return refused("%v", err)
	}
	serial, err := f.recordCertificate(ctx, tx, name, site, r, c, spki, now, map[string]string{"log": h.BatchID, "export_seq": fmt.Sprint(h.Seq),
		"station": r.Station, "issued_at": r.At.Format(time.RFC3339Nano)})
	if err != nil {
		return err
	}
	res.Certificates++
	dev := &store.Device{Environment: h.Environment, ProductLine: h.ProductLine, Serial: c.Subject.CommonName, StationID: r.Station, Site: h.Site}
	if err := f.registerDevice(ctx, tx, name, r, spki, alg, serial, dev, now, map[string]string{"station": r.Station, "log": h.BatchID,
		"enrolled_at": r.At.Format(time.RFC3339Nano)}); err != nil {
		return err
	}
	res.Devices++
	return nil
}
