package postgres

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// The fleet key-hygiene scan's records (migration 0016). A certificate's CSR signature is written by the
// certificate's own insert statement (insertCertificateCSR in tx.go), so it costs no round trip of its own.

var (
	_ store.HygieneTx    = (*tx)(nil)
	_ store.HygieneStore = (*Store)(nil)
)

// scanPage is the number of rows the scan's walks read per query.
const scanPage = 2000

// InsertImportedCertificate uses ON CONFLICT, like every insert here that can meet an existing row: an error
// would abort the whole transaction (see tx).
func (t *tx) InsertImportedCertificate(ctx context.Context, c *store.ImportedCertificate) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertImportedCertificate+` ON CONFLICT (environment, der_sha256) DO NOTHING`, codec.ImportedCertificateArgs(c)...)
	switch {
	case err != nil:
		return fmt.Errorf("import certificate %x for %s: %w", c.DERSHA256, c.Environment, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("import certificate %x for %s: %w", c.DERSHA256, c.Environment, store.ErrExists)
	}
	return nil
}

// WalkCertificates implements store.HygieneStore.
func (s *Store) WalkCertificates(ctx context.Context, fn func(*store.Certificate) error) error {
	after := ""
	for {
		page, err := collect(ctx, s.pool, codec.ScanCertificate, sqlrecord.WalkCertificates, after, scanPage)
		if err != nil {
			return fmt.Errorf("walk certificates: %w", err)
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
			after = c.Serial
		}
		if len(page) < scanPage {
			return nil
		}
	}
}

// WalkImportedCertificates implements store.HygieneStore.
func (s *Store) WalkImportedCertificates(ctx context.Context, env string, fn func(*store.ImportedCertificate) error) error {
	after := []byte{}
	for {
		page, err := collect(ctx, s.pool, codec.ScanImportedCertificate, sqlrecord.WalkImportedCertificates, env, after, scanPage)
		if err != nil {
			return fmt.Errorf("walk imported certificates of %s: %w", env, err)
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
			after = c.DERSHA256
		}
		if len(page) < scanPage {
			return nil
		}
	}
}

// ImportedBySPKI implements store.HygieneStore.
func (s *Store) ImportedBySPKI(ctx context.Context, h []byte) ([]*store.ImportedCertificate, error) {
	certs, err := collect(ctx, s.pool, codec.ScanImportedCertificate, sqlrecord.ImportedBySPKI, h)
	if err != nil {
		return nil, fmt.Errorf("imported certificates by SPKI %x: %w", h, err)
	}
	return certs, nil
}

// SharedKeys implements store.HygieneStore.
func (s *Store) SharedKeys(ctx context.Context) ([][]byte, error) {
	keys, err := collect(ctx, s.pool, func(r sqlrecord.Row) ([]byte, error) {
		var h []byte
		return h, r.Scan(&h)
	}, sqlrecord.SharedKeys)
	if err != nil {
		return nil, fmt.Errorf("keys shared by subjects: %w", err)
	}
	return keys, nil
}

// CSRNonceCollisions implements store.HygieneStore.
func (s *Store) CSRNonceCollisions(ctx context.Context) ([]*store.SignedCertificate, error) {
	out, err := collect(ctx, s.pool, codec.ScanSignedCertificate, sqlrecord.CSRNonceCollisions)
	if err != nil {
		return nil, fmt.Errorf("CSR signatures sharing a nonce: %w", err)
	}
	return out, nil
}
