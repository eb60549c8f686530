package sqlrecord

import (
	"crypto/sha256"
	"fmt"

	"github.com/keyward/keyward/internal/store"
)

// Audit log checkpoints.
const (
	CheckpointColumns = `size, root, frontier, note, created_at`
	InsertCheckpoint  = `INSERT INTO audit_checkpoints (` + CheckpointColumns + `) VALUES ($1, $2, $3, $4, $5)`
	LatestCheckpoint  = `SELECT ` + CheckpointColumns + ` FROM audit_checkpoints ORDER BY size DESC LIMIT 1`
	// WalkCheckpoints reads the checkpoints larger than $1, at most $2 of them.
	WalkCheckpoints = `SELECT ` + CheckpointColumns + ` FROM audit_checkpoints WHERE size > $1 ORDER BY size LIMIT $2`
)

// The audit log's identity: one row.
const (
	AuditLogColumns = `origin, key_uri, created_at`
	InsertAuditLog  = `INSERT INTO audit_log (id, ` + AuditLogColumns + `) VALUES (1, $1, $2, $3)`
	GetAuditLog     = `SELECT ` + AuditLogColumns + ` FROM audit_log WHERE id = 1`
)

// ScanAuditLog reads a row of AuditLogColumns.
func (c Codec) ScanAuditLog(r Row) (*store.AuditLog, error) {
	var l store.AuditLog
	if err := r.Scan(&l.Origin, &l.KeyURI, c.ScanTime(&l.CreatedAt)); err != nil {
		return nil, err
	}
	return &l, nil
}

// AuditLogArgs returns l's values in the order of AuditLogColumns.
func (c Codec) AuditLogArgs(l *store.AuditLog) []any {
	return []any{l.Origin, l.KeyURI, c.BindTime(l.CreatedAt)}
}

// ScanCheckpoint reads a row of CheckpointColumns.
func (c Codec) ScanCheckpoint(r Row) (*store.Checkpoint, error) {
	var (
		x        store.Checkpoint
		frontier []byte
	)
	if err := r.Scan(&x.Size, &x.Root, &frontier, &x.Note, c.ScanTime(&x.CreatedAt)); err != nil {
		return nil, err
	}
	if len(frontier)%sha256.Size != 0 {
		return nil, fmt.Errorf("audit checkpoint %d: frontier of %d bytes is not a list of SHA-256 hashes", x.Size, len(frontier))
	}
	for i := 0; i < len(frontier); i += sha256.Size {
		x.Frontier = append(x.Frontier, frontier[i:i+sha256.Size:i+sha256.Size])
	}
	return &x, nil
}

// CheckpointArgs returns x's values in the order of CheckpointColumns.
func (c Codec) CheckpointArgs(x *store.Checkpoint) []any {
	frontier := make([]byte, 0, len(x.Frontier)*sha256.Size)
	for _, h := range x.Frontier {
		frontier = append(frontier, h...)
	}
	return []any{x.Size, x.Root, frontier, x.Note, c.BindTime(x.CreatedAt)}
}
