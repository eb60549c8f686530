package store

import (
	"context"
	"time"
)

// Checkpoint is a signed checkpoint of the audit log's Merkle tree (c2sp.org/tlog-checkpoint): the tree of the
// first Size events, its RFC 9162 root hash, the compact range from which the next checkpoint's tree continues
// without rereading earlier events, and the signed note itself.
type Checkpoint struct {
	Size      int64
	Root      []byte
	Frontier  [][]byte // the compact range of the tree (audit.Tree.Frontier)
	Note      []byte   // the signed note, as served and written to files
	CreatedAt time.Time
}

// AuditLog is the audit log's identity: its origin (the first line of every checkpoint, and the name of its
// key) and the Ed25519 key of purpose audit-signing that signs its checkpoints. One per installation.
type AuditLog struct {
	Origin    string
	KeyURI    string
	CreatedAt time.Time
}

// AuditLogTx is what the registration authority records of the audit log beside its events.
type AuditLogTx interface {
	// InsertCheckpoint stores c (ErrExists if a checkpoint of the same size is stored).
	InsertCheckpoint(ctx context.Context, c *Checkpoint) error
	// InsertAuditLog records the log's identity (ErrExists if one is recorded).
	InsertAuditLog(ctx context.Context, l *AuditLog) error
}

// AuditLogStore reads the stored checkpoints.
type AuditLogStore interface {
	// LatestCheckpoint returns the checkpoint of the largest size (ErrNotFound if there is none).
	LatestCheckpoint(ctx context.Context) (*Checkpoint, error)
	// WalkCheckpoints calls fn for every stored checkpoint by increasing size, stopping at fn's first error,
	// which it returns unwrapped.
	WalkCheckpoints(ctx context.Context, fn func(*Checkpoint) error) error
	// GetAuditLog returns the log's identity (ErrNotFound before the first checkpoint).
	GetAuditLog(ctx context.Context) (*AuditLog, error)
}
