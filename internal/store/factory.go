package store

import (
	"context"
	"time"
)

// This file holds the offline-manufacturing records: the constraints and quota of a factory site's
// subordinate CA. The CA itself is an ordinary CA row of kind CAKindSite. Store and Tx embed FactoryStore and
// FactoryTx.

// CAKindSite is a factory site's constrained subordinate CA, under its environment's root.
const CAKindSite = "site"

// FactorySite is what Keyward enforces for a site CA beyond its certificate: the one product line and profile
// it issues for, the subject rule (the profile's common-name pattern at creation), the quota of certificates
// and the issuing window.
type FactorySite struct {
	CAID        string // the CA row, e.g. "dev/demo-implant/site-a"
	Environment string
	ProductLine string
	Site        string
	Profile     string
	CNPattern   string // anchored RE2 pattern every subject common name must match
	Quota       int64  // certificates this CA may issue in total
	Reserved    int64  // certificates reserved by batches (a batch reserves its whole count when it starts)
	IssueUntil  time.Time
	CreatedAt   time.Time
	// AuditKeyURI and AuditCertDER are the site's export signer: a key of purpose audit-signing and its
	// certificate (id-kp-documentSigning, RFC 9336) issued by the site CA. Exports of the site's logs are
	// signed with it, and headquarters verifies them against this record.
	AuditKeyURI  string
	AuditCertDER []byte
}

// FactoryExport is one signed export a site made of a batch's injection log: its sequence number is taken
// before the export is signed, so no two exports of a batch share one.
type FactoryExport struct {
	BatchID   string
	Seq       int64
	CAID      string
	Records   int64  // records in the export (injected, plus unused in a final export)
	ChainHead []byte // SHA-256 chain head the signature covers
	Final     bool
	CreatedAt time.Time
}

// FactoryBatch is what headquarters has reconciled of a batch: the last export sequence number imported, the
// injected credentials recorded so far and the chain hash after the last of them (a later export must extend
// that chain), and whether the batch is closed (its unused credentials revoked and their keys destroyed).
type FactoryBatch struct {
	BatchID     string
	CAID        string
	Count       int64
	FirstSerial string
	LastSeq     int64
	Injected    int64
	ChainHead   []byte
	Final       bool
	UpdatedAt   time.Time
}

// FactorySiteLogEntry is one certificate a site CA issued at the site over EST ('keyward factory serve'), in
// issuance order: the log 'keyward factory export' signs for headquarters. Index is assigned by
// AppendFactorySiteLog (0, 1, 2, ... per site CA) while the caller holds the site row (LockFactorySite), so the
// log has no gaps and a later export extends an earlier one.
type FactorySiteLogEntry struct {
	CAID       string
	Index      int64
	CertSerial string
	Device     string // the device serial: the certificate's common name
	StationID  string
	CreatedAt  time.Time
	// CertDER is the certificate, filled by WalkFactorySiteLog.
	CertDER []byte
}

// FactoryTx is the transactional part of the factory store.
type FactoryTx interface {
	// InsertFactorySite stores s (ErrExists if its CA already has one).
	InsertFactorySite(ctx context.Context, s *FactorySite) error
	// LockFactorySite returns the site of CA caID and holds it until the transaction ends (ErrNotFound if none).
	LockFactorySite(ctx context.Context, caID string) (*FactorySite, error)
	// SetFactorySiteReserved writes the reserved count of site caID (ErrNotFound if none).
	SetFactorySiteReserved(ctx context.Context, caID string, reserved int64) error
	// LastFactoryExportSeq returns the highest export sequence number of batchID (0 if none).
	LastFactoryExportSeq(ctx context.Context, batchID string) (int64, error)
	// InsertFactoryExport records an export (ErrExists if its batch and sequence number are taken).
	InsertFactoryExport(ctx context.Context, e *FactoryExport) error
	// LockFactoryBatch returns the reconciled state of batchID and holds it until the transaction ends
	// (ErrNotFound if none).
	LockFactoryBatch(ctx context.Context, batchID string) (*FactoryBatch, error)
	// PutFactoryBatch inserts b, or replaces the batch with the same BatchID (a site CA issuance log grows its
	// Count with each export).
	PutFactoryBatch(ctx context.Context, b *FactoryBatch) error
	// FactoryBatchCounts returns the total Count of the reconciled batches of site CA caID other than
	// exceptBatch: the certificates of its quota that headquarters has already seen.
	FactoryBatchCounts(ctx context.Context, caID, exceptBatch string) (int64, error)
	// AppendFactorySiteLog appends e to the issuance log of site CA e.CAID, setting e.Index to the next index.
	// The caller must hold the site row (LockFactorySite) and have inserted the certificate in the same
	// transaction (ErrExists if the certificate is logged already).
	AppendFactorySiteLog(ctx context.Context, e *FactorySiteLogEntry) error
}

// FactoryStore is the read side of the factory store.
type FactoryStore interface {
	// GetFactorySite returns the site of CA caID (ErrNotFound if none).
	GetFactorySite(ctx context.Context, caID string) (*FactorySite, error)
	// GetFactoryBatch returns the reconciled state of batchID (ErrNotFound if none).
	GetFactoryBatch(ctx context.Context, batchID string) (*FactoryBatch, error)
	// WalkFactorySiteLog calls fn for every entry of site CA caID's issuance log with Index >= from, in index
	// order, with the certificate's DER, stopping at the first error (returned unwrapped). It reads in pages
	// and holds no transaction across calls of fn.
	WalkFactorySiteLog(ctx context.Context, caID string, from int64, fn func(*FactorySiteLogEntry) error) error
	// FactorySiteLogLength returns the number of entries of site CA caID's issuance log.
	FactorySiteLogLength(ctx context.Context, caID string) (int64, error)
}
