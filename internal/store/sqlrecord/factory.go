package sqlrecord

import (
	"github.com/keyward/keyward/internal/store"
)

// Column lists of the factory tables, in the order of the Scan and Args functions below.
const (
	FactorySiteColumns   = `ca_id, environment, product_line, site, profile, cn_pattern, quota, reserved, issue_until, created_at, audit_key_uri, audit_cert_der`
	FactoryExportColumns = `batch_id, seq, ca_id, records, chain_head, final, created_at`
	FactoryBatchColumns  = `batch_id, ca_id, count, first_serial, last_seq, injected, chain_head, final, updated_at`
	SiteLogColumns       = `ca_id, idx, cert_serial, device, station_id, created_at`
	// SiteLogEntryColumns reads a site log entry with its certificate: factory_site_log l joined with
	// certificates c.
	SiteLogEntryColumns = `l.ca_id, l.idx, l.cert_serial, l.device, l.station_id, l.created_at, c.der`
)

// ScanFactorySite reads a row of FactorySiteColumns.
func (c Codec) ScanFactorySite(r Row) (*store.FactorySite, error) {
	var s store.FactorySite
	if err := r.Scan(&s.CAID, &s.Environment, &s.ProductLine, &s.Site, &s.Profile, &s.CNPattern, &s.Quota, &s.Reserved,
		c.ScanTime(&s.IssueUntil), c.ScanTime(&s.CreatedAt), &s.AuditKeyURI, &s.AuditCertDER); err != nil {
		return nil, err
	}
	return &s, nil
}

// FactorySiteArgs returns s's values in the order of FactorySiteColumns.
func (c Codec) FactorySiteArgs(s *store.FactorySite) []any {
	return []any{s.CAID, s.Environment, s.ProductLine, s.Site, s.Profile, s.CNPattern, s.Quota, s.Reserved,
		c.BindTime(s.IssueUntil), c.BindTime(s.CreatedAt), s.AuditKeyURI, s.AuditCertDER}
}

// FactoryExportArgs returns e's values in the order of FactoryExportColumns.
func (c Codec) FactoryExportArgs(e *store.FactoryExport) []any {
	return []any{e.BatchID, e.Seq, e.CAID, e.Records, e.ChainHead, e.Final, c.BindTime(e.CreatedAt)}
}

// ScanFactoryBatch reads a row of FactoryBatchColumns.
func (c Codec) ScanFactoryBatch(r Row) (*store.FactoryBatch, error) {
	var b store.FactoryBatch
	if err := r.Scan(&b.BatchID, &b.CAID, &b.Count, &b.FirstSerial, &b.LastSeq, &b.Injected, &b.ChainHead,
		c.ScanBool(&b.Final), c.ScanTime(&b.UpdatedAt)); err != nil {
		return nil, err
	}
	return &b, nil
}

// FactoryBatchArgs returns b's values in the order of FactoryBatchColumns.
func (c Codec) FactoryBatchArgs(b *store.FactoryBatch) []any {
	return []any{b.BatchID, b.CAID, b.Count, b.FirstSerial, b.LastSeq, b.Injected, b.ChainHead, b.Final,
		c.BindTime(b.UpdatedAt)}
}

// SiteLogArgs returns e's values in the order of SiteLogColumns, with index idx: AppendFactorySiteLog sets
// e.Index only once the row is stored.
func (c Codec) SiteLogArgs(e *store.FactorySiteLogEntry, idx int64) []any {
	return []any{e.CAID, idx, e.CertSerial, e.Device, e.StationID, c.BindTime(e.CreatedAt)}
}

// ScanSiteLogEntry reads a row of SiteLogEntryColumns.
func (c Codec) ScanSiteLogEntry(r Row) (*store.FactorySiteLogEntry, error) {
	var e store.FactorySiteLogEntry
	if err := r.Scan(&e.CAID, &e.Index, &e.CertSerial, &e.Device, &e.StationID, c.ScanTime(&e.CreatedAt),
		&e.CertDER); err != nil {
		return nil, err
	}
	return &e, nil
}
