package store

import (
	"context"
	"time"
)

// AuditSink is the delivery cursor of one audit sink ('keyward serve --audit-sink'): every event up to Seq has
// been delivered to it at least once. It lives in the store so that a restarted server, or another node, resumes
// where delivery stopped.
type AuditSink struct {
	Name      string // the sink as configured, e.g. "file:/var/log/keyward/audit.jsonl", "https://siem.example/in"
	Seq       int64
	UpdatedAt time.Time
}

// AuditSinkTx moves sink cursors.
type AuditSinkTx interface {
	// AdvanceAuditSink records that sink name has received every event up to seq, at at. A cursor only moves
	// forward: a seq at or behind the stored one changes nothing, so nodes that deliver to the same sink
	// concurrently never move it back. The sink is created on its first advance.
	AdvanceAuditSink(ctx context.Context, name string, seq int64, at time.Time) error
}

// AuditSinkStore reads sink cursors.
type AuditSinkStore interface {
	// AuditSinkCursor returns the cursor of sink name: 0 and a zero time for a sink never advanced.
	AuditSinkCursor(ctx context.Context, name string) (*AuditSink, error)
	// ListAuditSinks returns every sink's cursor, by name.
	ListAuditSinks(ctx context.Context) ([]*AuditSink, error)
}
