package sqlrecord

import (
	"strings"

	"github.com/keyward/keyward/internal/store"
)

// Column lists of the enrollment tables (stations, devices), in the order of the Scan and Args functions below.
const (
	StationColumns = `id, environment, site, product_lines, cert_serial, spki_sha256, quota, used, valid_from, valid_until, state, created_at, state_changed`
	DeviceColumns  = `environment, product_line, serial, state, station_id, site, enrolled_at, cert_serial, spki_sha256, reprovision_allowed, force_renew, updated_at, hardware_serial`
)

// Statements on the enrollment tables that both dialects run as they are. PostgreSQL locks a station or
// device it reads in a transaction by appending FOR UPDATE; SQLite's transactions hold the database's write
// lock already.
const (
	InsertStation = `INSERT INTO stations (` + StationColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`
	SelectStation = `SELECT ` + StationColumns + ` FROM stations WHERE id = $1`
	ListStations  = `SELECT ` + StationColumns + ` FROM stations ORDER BY id`
	// UpdateStation writes a station's state, when it changed and its usage; see UpdateStationArgs.
	UpdateStation = `UPDATE stations SET state = $1, state_changed = $2, used = $3 WHERE id = $4`

	// SelectDevice reads the device of environment $1, product line $2 and serial $3.
	SelectDevice = `SELECT ` + DeviceColumns + ` FROM devices WHERE environment = $1 AND product_line = $2 AND serial = $3`
	// PutDevice inserts a device or replaces the one with its environment, product line and serial.
	PutDevice = `INSERT INTO devices (` + DeviceColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (environment, product_line, serial) DO UPDATE SET state = excluded.state, station_id = excluded.station_id,
		site = excluded.site, enrolled_at = excluded.enrolled_at, cert_serial = excluded.cert_serial,
		spki_sha256 = excluded.spki_sha256, reprovision_allowed = excluded.reprovision_allowed,
		force_renew = excluded.force_renew, updated_at = excluded.updated_at, hardware_serial = excluded.hardware_serial`

	// SetCertificateStatus moves certificate $2 to status $1 if its status is $3.
	SetCertificateStatus = `UPDATE certificates SET status = $1 WHERE serial = $2 AND status = $3`
	// ExpiringCertificates reads the certificates of status $2 expiring before $1, soonest first;
	// ExpiringCertificatesLimit at most $3 of them.
	ExpiringCertificates      = `SELECT ` + CertificateColumns + ` FROM certificates WHERE not_after < $1 AND status = $2 ORDER BY not_after, serial`
	ExpiringCertificatesLimit = ExpiringCertificates + ` LIMIT $3`
	// CountExpiring counts the certificates of profile $1 and status $2 with $3 < not_after <= $4.
	CountExpiring = `SELECT count(*) FROM certificates WHERE not_after > $3 AND not_after <= $4 AND status = $2 AND profile = $1`
)

// UpdateStationArgs returns the arguments of UpdateStation.
func (c Codec) UpdateStationArgs(s *store.Station) []any {
	return []any{s.State, c.BindTime(s.StateChanged), s.Used, s.ID}
}

// ListDevices returns the query of store.EnrollmentStore.ListDevices and its arguments.
func ListDevices(f store.DeviceFilter) (string, []any) {
	var w where
	w.eq("environment", f.Environment)
	w.eq("product_line", f.ProductLine)
	w.eq("serial", f.Serial)
	w.eq("state", f.State)
	w.eq("station_id", f.StationID)
	w.eq("site", f.Site)
	w.eq("hardware_serial", f.HardwareSerial)
	q := `SELECT ` + DeviceColumns + ` FROM devices` + w.clause() + ` ORDER BY environment, product_line, serial`
	if f.Limit > 0 {
		q += ` LIMIT ` + w.arg(f.Limit)
	}
	return q, w.args
}

// ScanStation reads a row of StationColumns. The product lines are stored as one comma-separated column.
func (c Codec) ScanStation(r Row) (*store.Station, error) {
	var (
		s     store.Station
		lines string
	)
	if err := r.Scan(&s.ID, &s.Environment, &s.Site, &lines, &s.CertSerial, &s.SPKISHA256, &s.Quota, &s.Used,
		c.ScanTime(&s.ValidFrom), c.ScanTime(&s.ValidUntil), &s.State, c.ScanTime(&s.CreatedAt),
		c.ScanTime(&s.StateChanged)); err != nil {
		return nil, err
	}
	if lines != "" {
		s.ProductLines = strings.Split(lines, ",")
	}
	return &s, nil
}

// StationArgs returns s's values in the order of StationColumns.
func (c Codec) StationArgs(s *store.Station) []any {
	return []any{s.ID, s.Environment, s.Site, strings.Join(s.ProductLines, ","), s.CertSerial, s.SPKISHA256, s.Quota,
		s.Used, c.BindTime(s.ValidFrom), c.BindTime(s.ValidUntil), s.State, c.BindTime(s.CreatedAt),
		c.BindTime(s.StateChanged)}
}

// ScanDevice reads a row of DeviceColumns.
func (c Codec) ScanDevice(r Row) (*store.Device, error) {
	var d store.Device
	if err := r.Scan(&d.Environment, &d.ProductLine, &d.Serial, &d.State, &d.StationID, &d.Site,
		c.ScanTime(&d.EnrolledAt), &d.CertSerial, &d.SPKISHA256, c.ScanBool(&d.ReprovisionAllowed),
		c.ScanBool(&d.ForceRenew), c.ScanTime(&d.UpdatedAt), &d.HardwareSerial); err != nil {
		return nil, err
	}
	return &d, nil
}

// DeviceArgs returns d's values in the order of DeviceColumns.
func (c Codec) DeviceArgs(d *store.Device) []any {
	return []any{d.Environment, d.ProductLine, d.Serial, d.State, d.StationID, d.Site, c.BindTime(d.EnrolledAt),
		d.CertSerial, d.SPKISHA256, d.ReprovisionAllowed, d.ForceRenew, c.BindTime(d.UpdatedAt), d.HardwareSerial}
}
