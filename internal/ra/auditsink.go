package ra

import (
	"context"

	"github.com/keyward/keyward/internal/store"
)

// AdvanceAuditSink records that audit sink name has received every event up to seq. It is a counter, not a
// decision: it appends no audit event (one per delivery would give the sink a new event to deliver forever),
// and the cursor only moves forward (store.AuditSinkTx), so nodes delivering to one sink never open a gap.
func (r *RA) AdvanceAuditSink(ctx context.Context, name string, seq int64) error {
	return r.counter(ctx, func(tx store.Tx) error { return tx.AdvanceAuditSink(ctx, name, seq, r.now()) })
}
