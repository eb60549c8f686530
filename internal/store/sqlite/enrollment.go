package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// Enrollment records (stations, devices). Writes run in the store's IMMEDIATE transactions, which hold SQLite's
// write lock from BEGIN to COMMIT: LockStation and LockDevice are plain reads, because no other writer can
// change the row before the transaction ends.

var (
	_ store.EnrollmentStore = (*Store)(nil)
	_ store.EnrollmentTx    = (*tx)(nil)
)

// InsertStation stores a new station.
func (t *tx) InsertStation(ctx context.Context, s *store.Station) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.InsertStation, codec.StationArgs(s)...)
	switch {
	case err == nil:
		return nil
	case isUnique(err):
		return fmt.Errorf("insert station %q: %w", s.ID, store.ErrExists)
	default:
		return fmt.Errorf("insert station %q: %w", s.ID, err)
	}
}

// LockStation reads station id; the transaction's write lock keeps it from changing until commit.
func (t *tx) LockStation(ctx context.Context, id string) (*store.Station, error) {
	s, err := codec.ScanStation(t.tx.QueryRowContext(ctx, sqlrecord.SelectStation, id))
	if err != nil {
		return nil, fmt.Errorf("lock station %q: %w", id, notFound(err))
	}
	return s, nil
}

// UpdateStation writes the state and usage of s.
func (t *tx) UpdateStation(ctx context.Context, s *store.Station) error {
	res, err := t.tx.ExecContext(ctx, sqlrecord.UpdateStation, codec.UpdateStationArgs(s)...)
	if err != nil {
		return fmt.Errorf("update station %q: %w", s.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update station %q: %w", s.ID, err)
	} else if n == 0 {
		return fmt.Errorf("update station %q: %w", s.ID, store.ErrNotFound)
	}
	return nil
}

// LockDevice reads a device; the transaction's write lock keeps it from changing until commit.
func (t *tx) LockDevice(ctx context.Context, env, product, serial string) (*store.Device, error) {
	d, err := codec.ScanDevice(t.tx.QueryRowContext(ctx, sqlrecord.SelectDevice, env, product, serial))
	if err != nil {
		return nil, fmt.Errorf("lock device %s/%s/%s: %w", env, product, serial, notFound(err))
	}
	return d, nil
}

// PutDevice inserts or replaces d.
func (t *tx) PutDevice(ctx context.Context, d *store.Device) error {
	_, err := t.tx.ExecContext(ctx, sqlrecord.PutDevice, codec.DeviceArgs(d)...)
	if isUnique(err) {
		return fmt.Errorf("put device %s/%s/%s: hardware serial %q: %w", d.Environment, d.ProductLine, d.Serial, d.HardwareSerial, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("put device %s/%s/%s: %w", d.Environment, d.ProductLine, d.Serial, err)
	}
	return nil
}

// SetCertificateStatus moves a certificate from one status to another.
func (t *tx) SetCertificateStatus(ctx context.Context, serial, from, to string) error {
	res, err := t.tx.ExecContext(ctx, sqlrecord.SetCertificateStatus, to, serial, from)
	if err != nil {
		return fmt.Errorf("set certificate %s status %s -> %s: %w", serial, from, to, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("set certificate %s status %s -> %s: %w", serial, from, to, err)
	} else if n == 0 {
		return fmt.Errorf("set certificate %s status %s -> %s: no %s certificate with that serial: %w", serial, from, to, from, store.ErrNotFound)
	}
	return nil
}

// GetStation returns station id.
func (s *Store) GetStation(ctx context.Context, id string) (*store.Station, error) {
	st, err := codec.ScanStation(s.r.QueryRowContext(ctx, sqlrecord.SelectStation, id))
	if err != nil {
		return nil, fmt.Errorf("get station %q: %w", id, notFound(err))
	}
	return st, nil
}

// ListStations returns every station, ordered by id.
func (s *Store) ListStations(ctx context.Context) ([]*store.Station, error) {
	rows, err := s.r.QueryContext(ctx, sqlrecord.ListStations)
	if err != nil {
		return nil, fmt.Errorf("list stations: %w", err)
	}
	out, err := collect(rows, codec.ScanStation)
	if err != nil {
		return nil, fmt.Errorf("list stations: %w", err)
	}
	return out, nil
}

// GetDevice returns one device.
func (s *Store) GetDevice(ctx context.Context, env, product, serial string) (*store.Device, error) {
	d, err := codec.ScanDevice(s.rs[stGetDevice].QueryRowContext(ctx, env, product, serial))
	if err != nil {
		return nil, fmt.Errorf("get device %s/%s/%s: %w", env, product, serial, notFound(err))
	}
	return d, nil
}

// IssuanceFacts reads the certificates of spki and the device, with the two prepared statements.
func (s *Store) IssuanceFacts(ctx context.Context, spki []byte, env, product, serial string) ([]*store.Certificate, *store.Device, error) {
	var certs []*store.Certificate
	if !s.keys.absent(spki) { // most issuances certify a new key: the filter spares them the index
		var err error
		if certs, err = s.CertificatesBySPKI(ctx, spki); err != nil {
			return nil, nil, err
		}
	}
	// Most issuances name a serial the registry does not hold: that answer costs no error value.
	d, err := codec.ScanDevice(s.rs[stGetDevice].QueryRowContext(ctx, env, product, serial))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return certs, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("get device %s/%s/%s: %w", env, product, serial, err)
	}
	return certs, d, nil
}

// ListDevices returns the devices matching f.
func (s *Store) ListDevices(ctx context.Context, f store.DeviceFilter) ([]*store.Device, error) {
	q, args := sqlrecord.ListDevices(f)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list devices %+v: %w", f, err)
	}
	out, err := collect(rows, codec.ScanDevice)
	if err != nil {
		return nil, fmt.Errorf("list devices %+v: %w", f, err)
	}
	return out, nil
}

// CountExpiring counts the valid certificates of profile expiring in (after, before].
func (s *Store) CountExpiring(ctx context.Context, profile string, after, before time.Time) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, sqlrecord.CountExpiring, profile, store.CertStatusValid, codec.BindTime(after), codec.BindTime(before)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s certificates expiring before %s: %w", profile, before.Format(time.RFC3339), err)
	}
	return n, nil
}

// ExpiringCertificates returns valid certificates expiring before before, soonest first.
func (s *Store) ExpiringCertificates(ctx context.Context, before time.Time, limit int) ([]*store.Certificate, error) {
	q, args := sqlrecord.ExpiringCertificates, []any{codec.BindTime(before), store.CertStatusValid}
	if limit > 0 {
		q, args = sqlrecord.ExpiringCertificatesLimit, append(args, limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("expiring certificates before %s: %w", before.Format(time.RFC3339), err)
	}
	out, err := collect(rows, codec.ScanCertificate)
	if err != nil {
		return nil, fmt.Errorf("expiring certificates before %s: %w", before.Format(time.RFC3339), err)
	}
	return out, nil
}
