package sqlite

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// The fleet key-hygiene scan's records (migration 0016). Reads run on the reader pool.

var (
	_ store.HygieneTx    = (*tx)(nil)
	_ store.HygieneStore = (*Store)(nil)
)

// scanPage is the number of rows the scan's walks read per query.
const scanPage = 2000

func (t *tx) InsertImportedCertificate(ctx context.Context, c *store.ImportedCertificate) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertImportedCertificate, codec.ImportedCertificateArgs(c)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("import certificate %x for %s: %w", c.DERSHA256, c.Environment, store.ErrExists)
	default:
		return fmt.Errorf("import certificate %x for %s: %w", c.DERSHA256, c.Environment, err)
	}
}

// WalkCertificates implements store.HygieneStore.
func (s *Store) WalkCertificates(ctx context.Context, fn func(*store.Certificate) error) error {
	after := ""
	for {
		rows, err := s.r.QueryContext(ctx, sqlrecord.WalkCertificates, after, scanPage)
		if err != nil {
			return fmt.Errorf("walk certificates: %w", err)
		}
		page, err := collect(rows, codec.ScanCertificate)
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
		rows, err := s.r.QueryContext(ctx, sqlrecord.WalkImportedCertificates, env, after, scanPage)
		if err != nil {
			return fmt.Errorf("walk imported certificates of %s: %w", env, err)
		}
		page, err := collect(rows, codec.ScanImportedCertificate)
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
	rows, err := s.r.QueryContext(ctx, sqlrecord.ImportedBySPKI, h)
	if err != nil {
		return nil, fmt.Errorf("imported certificates by SPKI %x: %w", h, err)
	}
	certs, err := collect(rows, codec.ScanImportedCertificate)
	if err != nil {
		return nil, fmt.Errorf("imported certificates by SPKI %x: %w", h, err)
	}
	return certs, nil
}

// SharedKeys implements store.HygieneStore.
func (s *Store) SharedKeys(ctx context.Context) ([][]byte, error) {
	rows, err := s.r.QueryContext(ctx, sqlrecord.SharedKeys)
	if err != nil {
		return nil, fmt.Errorf("keys shared by subjects: %w", err)
	}
	keys, err := collect(rows, func(r sqlrecord.Row) ([]byte, error) {
		var h []byte
		return h, r.Scan(&h)
	})
	if err != nil {
		return nil, fmt.Errorf("keys shared by subjects: %w", err)
	}
	return keys, nil
}

// CSRNonceCollisions implements store.HygieneStore.
func (s *Store) CSRNonceCollisions(ctx context.Context) ([]*store.SignedCertificate, error) {
	rows, err := s.r.QueryContext(ctx, sqlrecord.CSRNonceCollisions)
	if err != nil {
		return nil, fmt.Errorf("CSR signatures sharing a nonce: %w", err)
	}
	out, err := collect(rows, codec.ScanSignedCertificate)
	if err != nil {
		return nil, fmt.Errorf("CSR signatures sharing a nonce: %w", err)
	}
	return out, nil
}
