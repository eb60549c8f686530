package store

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/internal/audit"
)

// This file holds the bulk path of the benchmarks' fixtures ('keyward bench issue --prefill'): a store grown
// to millions of enrolled devices in minutes, where issuing them would take hours. Nothing in the product uses
// it: the registration authority writes through Tx, one checked decision at a time.

// Enrolled is one device enrollment as a bulk load stores it: the certificate, the glossary row of its key
// (stored as Tx.InsertCertificateKey stores it: Key.Algorithm, State and StateChangedAt beside the certificate;
// the rest is the certificate's), the registry's row of the device, and the audit event that records the three
// (the load seals it into the chain).
type Enrolled struct {
	Cert   Certificate
	Key    Key
	Device Device
	Event  audit.Event
}

// CheckDeviceKey refuses a record whose Key is not its certificate's device key: a bulk load stores it as
// Tx.InsertCertificateKey does, beside the certificate.
func (r *Enrolled) CheckDeviceKey() error {
	k := &r.Key
	if k.Owner != r.Cert.Serial || k.URI != DeviceKeyURI(r.Cert.SPKISHA256) || k.Purpose != DeviceKeyPurpose || k.Location != DeviceKeyLocation {
		return fmt.Errorf("key %q of certificate %s is not the certificate's device key", k.URI, r.Cert.Serial)
	}
	return nil
}

// BulkLoader is a backend's bulk path for benchmark fixtures. Both backends implement it; an architecture test
// holds its callers to internal/bench.
type BulkLoader interface {
	// LoadEnrolled stores every record next returns until it returns (nil, nil), in large transactions
	// through the backend's bulk path (SQLite: prepared statements on its writer connection; PostgreSQL:
	// COPY), and returns how many it stored. Each record's event is sealed into the audit chain after the
	// head, in the order next returns them, under the same serialisation as AppendAudit. A failure of next
	// stops the load and is returned; the transactions committed before it stay.
	//
	// It checks what the schema checks (unique serials, key URIs and devices; on PostgreSQL also one subject
	// per key) and nothing else: the caller vouches for the rules the registration authority applies.
	// progress, if not nil, is called with the running total after each commit.
	LoadEnrolled(ctx context.Context, next func() (*Enrolled, error), progress func(loaded int64)) (int64, error)
	// SettleBulk leaves the store after a bulk load as a store that grew by issuance would be when a
	// measurement starts, and says what it did: SQLite copies the WAL into the database and truncates it;
	// PostgreSQL vacuums and analyzes the loaded tables (as autovacuum would have by then) and checkpoints.
	SettleBulk(ctx context.Context) (string, error)
	// SizeBytes returns the bytes the store occupies: SQLite's database file and WAL; PostgreSQL's tables of
	// the store's schema with their indexes and TOAST.
	SizeBytes(ctx context.Context) (int64, error)
}
