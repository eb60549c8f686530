package factory

// The site CA issuance log: the certificates a site CA issued over EST at the site ('keyward factory serve'),
// exported for headquarters in the same signed, chained format as a batch's injection log (export.go), with
// header kind exportKindSiteLog and one record per certificate in issuance order (kind RecordEnrolled:
// certificate, device serial, station, time). The log's identity — and so its chain's genesis — is the site CA
// itself (SiteLogID), so successive exports of the log share the hashes of their common records and
// headquarters checks that each extends what it reconciled before, as for batches.

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// RecordEnrolled: a site CA issued the certificate to a device enrolled by a factory station at the site.
const RecordEnrolled = ra.RecordEnrolled

// SiteLogID is the log identity of site CA caID's issuance log: its exports' "batch" in the export header and
// in the store's export and reconciliation records.
func SiteLogID(caID string) string { return ra.SiteLogID(caID) }

// ExportSiteLog writes a signed export of the issuance log of the site CA this data directory holds (a site
// data directory, see internal/node site.go, or any directory where the site CA enrolled) to out. Like Export,
// the RA records the export with its audit event before the file appears under out.
func (f *Factory) ExportSiteLog(ctx context.Context, env, product, siteName, out string) (*ExportSummary, error) {
	sum, err := f.exportSiteLog(ctx, env, product, siteName, out)
	return sum, notFound(err)
}

func (f *Factory) exportSiteLog(ctx context.Context, env, product, siteName, out string) (*ExportSummary, error) {
	if out == "" {
		return nil, badRequest("--out is required")
	}
	if _, err := os.Stat(out); err == nil {
		return nil, fmt.Errorf("%w: %s exists; an export is never overwritten, choose another --out", ErrConflict, out)
	}
	site, err := f.RA.FactorySite(ctx, env, product, siteName)
	if err != nil {
		return nil, err
	}
	if site.Site.AuditKeyURI == "" {
		return nil, fmt.Errorf("%w: site CA %s has no export signer", ErrBadRequest, site.CA.ID)
	}
	logID := SiteLogID(site.CA.ID)
	// The log grows while the site enrolls: the export covers the entries that exist now.
	log := f.RA.Reader()
	records, err := log.FactorySiteLogLength(ctx, site.CA.ID)
	if err != nil {
		return nil, err
	}
	now := f.now()
	hdr := ExportHeader{Version: 1, Kind: exportKindSiteLog, SiteCA: site.CA.ID, SiteCASHA256: sha256Hex(site.CA.CertDER), Site: site.Site.Site,
		Environment: site.Site.Environment, ProductLine: site.Site.ProductLine, BatchID: logID, Injected: records, Records: records,
		SignerCert: site.Site.AuditCertDER, CreatedAt: now}
	if hdr.Seq, err = f.RA.NextExportSeq(ctx, logID); err != nil {
		return nil, err
	}

	x, err := newExportWriter(out, &hdr)
	if err != nil {
		return nil, err
	}
	defer x.close()
	var n int64
	errDone := errors.New("done")
	err = log.WalkFactorySiteLog(ctx, site.CA.ID, 0, func(e *store.FactorySiteLogEntry) error {
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
	if err := x.seal(f.exportSignature(ctx, site)); err != nil {
		return nil, fmt.Errorf("sign export of the site log of %s: %w", site.CA.ID, err)
	}
	if err := f.RA.RecordExport(ctx, f.Principal, &store.FactoryExport{BatchID: logID, Seq: hdr.Seq, CAID: site.CA.ID, Records: records, ChainHead: x.head, CreatedAt: now},
		"the site log of "+site.CA.ID, map[string]string{"log": logID, "kind": exportKindSiteLog, "file": filepath.Base(out)}); err != nil {
		return nil, err
	}
	if err := x.publish(); err != nil {
		return nil, err
	}
	return &ExportSummary{Path: out, BatchID: logID, SiteCA: site.CA.ID, Seq: hdr.Seq, Injected: records, Records: records, Head: hex.EncodeToString(x.head)}, nil
}
