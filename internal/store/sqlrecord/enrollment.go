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
