package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlrecord"
)

// Enrollment records (stations, devices). Transactions run at READ COMMITTED, so LockStation and LockDevice
// take row locks (SELECT ... FOR UPDATE): a second transaction that locks the same station waits, and then
// reads the committed quota usage, which makes "check the quota, then use one" atomic across nodes.

var (
	_ store.EnrollmentStore = (*Store)(nil)
	_ store.EnrollmentTx    = (*tx)(nil)
)

// InsertStation stores a new station.
func (t *tx) InsertStation(ctx context.Context, s *store.Station) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.InsertStation+` ON CONFLICT (id) DO NOTHING`, codec.StationArgs(s)...)
	switch {
	case err != nil:
		return fmt.Errorf("insert station %q: %w", s.ID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("insert station %q: %w", s.ID, store.ErrExists)
	}
	return nil
}

// LockStation reads station id and locks its row until the transaction ends.
func (t *tx) LockStation(ctx context.Context, id string) (*store.Station, error) {
	s, err := codec.ScanStation(t.tx.QueryRow(ctx, sqlrecord.SelectStation+` FOR UPDATE`, id))
	if err != nil {
		return nil, fmt.Errorf("lock station %q: %w", id, notFound(err))
	}
	return s, nil
}

// UpdateStation writes the state and usage of s.
func (t *tx) UpdateStation(ctx context.Context, s *store.Station) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.UpdateStation, codec.UpdateStationArgs(s)...)
	switch {
	case err != nil:
		return fmt.Errorf("update station %q: %w", s.ID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("update station %q: %w", s.ID, store.ErrNotFound)
	}
	return nil
}

// LockDevice reads a device and locks its row until the transaction ends.
func (t *tx) LockDevice(ctx context.Context, env, product, serial string) (*store.Device, error) {
	d, err := codec.ScanDevice(t.tx.QueryRow(ctx, sqlrecord.SelectDevice+` FOR UPDATE`, env, product, serial))
	if err != nil {
		return nil, fmt.Errorf("lock device %s/%s/%s: %w", env, product, serial, notFound(err))
	}
	return d, nil
}

// PutDevice inserts or replaces d.
func (t *tx) PutDevice(ctx context.Context, d *store.Device) error {
	_, err := t.tx.Exec(ctx, sqlrecord.PutDevice, codec.DeviceArgs(d)...)
	if pgCode(err) == uniqueViolation {
		return fmt.Errorf("put device %s/%s/%s: hardware serial %q: %w", d.Environment, d.ProductLine, d.Serial, d.HardwareSerial, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("put device %s/%s/%s: %w", d.Environment, d.ProductLine, d.Serial, err)
	}
	return nil
}

// SetCertificateStatus moves a certificate from one status to another.
func (t *tx) SetCertificateStatus(ctx context.Context, serial, from, to string) error {
	tag, err := t.tx.Exec(ctx, sqlrecord.SetCertificateStatus, to, serial, from)
	switch {
	case err != nil:
		return fmt.Errorf("set certificate %s status %s -> %s: %w", serial, from, to, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("set certificate %s status %s -> %s: no %s certificate with that serial: %w", serial, from, to, from, store.ErrNotFound)
	}
	return nil
}

// GetStation returns station id.
func (s *Store) GetStation(ctx context.Context, id string) (*store.Station, error) {
	st, err := codec.ScanStation(s.pool.QueryRow(ctx, sqlrecord.SelectStation, id))
	if err != nil {
		return nil, fmt.Errorf("get station %q: %w", id, notFound(err))
	}
	return st, nil
}

// ListStations returns every station, ordered by id.
func (s *Store) ListStations(ctx context.Context) ([]*store.Station, error) {
	out, err := collect(ctx, s.pool, codec.ScanStation, sqlrecord.ListStations)
	if err != nil {
		return nil, fmt.Errorf("list stations: %w", err)
	}
	return out, nil
}

// GetDevice returns one device.
func (s *Store) GetDevice(ctx context.Context, env, product, serial string) (*store.Device, error) {
	d, err := codec.ScanDevice(s.pool.QueryRow(ctx, sqlrecord.SelectDevice, env, product, serial))
	if err != nil {
		return nil, fmt.Errorf("get device %s/%s/%s: %w", env, product, serial, notFound(err))
	}
	return d, nil
}

// ListDevices returns the devices matching f.
func (s *Store) ListDevices(ctx context.Context, f store.DeviceFilter) ([]*store.Device, error) {
	q, args := sqlrecord.ListDevices(f)
	out, err := collect(ctx, s.pool, codec.ScanDevice, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list devices %+v: %w", f, err)
	}
	return out, nil
}

// CountExpiring counts the valid certificates of profile expiring in (after, before].
func (s *Store) CountExpiring(ctx context.Context, profile string, after, before time.Time) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, sqlrecord.CountExpiring, profile, store.CertStatusValid, codec.BindTime(after), codec.BindTime(before)).Scan(&n); err != nil {
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
	out, err := collect(ctx, s.pool, codec.ScanCertificate, q, args...)
	if err != nil {
		return nil, fmt.Errorf("expiring certificates before %s: %w", before.Format(time.RFC3339), err)
	}
	return out, nil
}
