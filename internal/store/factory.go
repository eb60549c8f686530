package store

import (
	"context"
	"time"
)

// This file holds the offline-manufacturing records (issue 4): the constraints and quota of a factory site's
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
}

// FactoryTx is the transactional part of the factory store.
type FactoryTx interface {
	// InsertFactorySite stores s (ErrExists if its CA already has one).
	InsertFactorySite(ctx context.Context, s *FactorySite) error
	// LockFactorySite returns the site of CA caID and holds it until the transaction ends (ErrNotFound if none).
	LockFactorySite(ctx context.Context, caID string) (*FactorySite, error)
	// SetFactorySiteReserved writes the reserved count of site caID (ErrNotFound if none).
	SetFactorySiteReserved(ctx context.Context, caID string, reserved int64) error
}

// FactoryStore is the read side of the factory store.
type FactoryStore interface {
	// GetFactorySite returns the site of CA caID (ErrNotFound if none).
	GetFactorySite(ctx context.Context, caID string) (*FactorySite, error)
}
