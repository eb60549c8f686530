package sqlrecord

import "github.com/keyward/keyward/internal/store"

// AuditSinkColumns are the columns of audit_sinks, in the order of ScanAuditSink.
const AuditSinkColumns = `name, delivered_seq, updated_at`

// Statements on audit sink cursors that both dialects run as they are. AdvanceAuditSink moves a cursor forward
// only: the WHERE of its ON CONFLICT leaves a cursor at or ahead of $2 alone (SQLite 3.24 and PostgreSQL 9.5
// share the upsert syntax).
const (
	AdvanceAuditSink = `INSERT INTO audit_sinks (` + AuditSinkColumns + `) VALUES ($1, $2, $3) ` +
		`ON CONFLICT (name) DO UPDATE SET delivered_seq = excluded.delivered_seq, updated_at = excluded.updated_at ` +
		`WHERE audit_sinks.delivered_seq < excluded.delivered_seq`
	SelectAuditSink = `SELECT ` + AuditSinkColumns + ` FROM audit_sinks WHERE name = $1`
	ListAuditSinks  = `SELECT ` + AuditSinkColumns + ` FROM audit_sinks ORDER BY name`
)

// ScanAuditSink reads a row of AuditSinkColumns.
func (c Codec) ScanAuditSink(r Row) (*store.AuditSink, error) {
	var s store.AuditSink
	if err := r.Scan(&s.Name, &s.Seq, c.ScanTime(&s.UpdatedAt)); err != nil {
		return nil, err
	}
	return &s, nil
}
