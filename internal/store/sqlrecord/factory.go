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

// Statements on the factory tables that both dialects run as they are. PostgreSQL locks a site or batch it
// reads in a transaction by appending FOR UPDATE.
const (
	InsertFactorySite = `INSERT INTO factory_sites (` + FactorySiteColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`
	SelectFactorySite = `SELECT ` + FactorySiteColumns + ` FROM factory_sites WHERE ca_id = $1`
	// SetFactorySiteReserved sets the reserved count of site $2 to $1.
	SetFactorySiteReserved = `UPDATE factory_sites SET reserved = $1 WHERE ca_id = $2`

	InsertFactoryExport = `INSERT INTO factory_exports (` + FactoryExportColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7)`
	// LastFactoryExportSeq reads the highest export sequence number of batch $1, 0 if none.
	LastFactoryExportSeq = `SELECT COALESCE(MAX(seq), 0) FROM factory_exports WHERE batch_id = $1`

	SelectFactoryBatch = `SELECT ` + FactoryBatchColumns + ` FROM factory_batches WHERE batch_id = $1`
	// PutFactoryBatch inserts a batch or replaces the one with its id.
	PutFactoryBatch = `INSERT INTO factory_batches (` + FactoryBatchColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (batch_id) DO UPDATE SET count = excluded.count, last_seq = excluded.last_seq, injected = excluded.injected, chain_head = excluded.chain_head,
		final = excluded.final, updated_at = excluded.updated_at`
	// FactoryBatchCounts sums the counts of the batches of site CA $1 other than batch $2. The sum is cast
	// because PostgreSQL's SUM of a BIGINT is a numeric.
	FactoryBatchCounts = `SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM factory_batches WHERE ca_id = $1 AND batch_id <> $2`

	InsertSiteLog = `INSERT INTO factory_site_log (` + SiteLogColumns + `) VALUES ($1, $2, $3, $4, $5, $6)`
	// SiteLogLength reads the length of the issuance log of site CA $1, which is also the next index.
	SiteLogLength = `SELECT COALESCE(MAX(idx) + 1, 0) FROM factory_site_log WHERE ca_id = $1`
	// WalkSiteLog reads the entries of the log of site CA $1 from index $2 on, at most $3 of them.
	WalkSiteLog = `SELECT ` + SiteLogEntryColumns + `
		FROM factory_site_log l JOIN certificates c ON c.serial = l.cert_serial
		WHERE l.ca_id = $1 AND l.idx >= $2 ORDER BY l.idx LIMIT $3`
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
