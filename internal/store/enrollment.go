package store

import (
	"context"
	"time"
)

// This file holds the enrollment records (factory stations and the device registry) and the store interfaces
// that carry them; Store and Tx embed EnrollmentStore and EnrollmentTx.

// Station states. A station that is not active is refused at once, on its next request.
const (
	StationActive    = "active"
	StationSuspended = "suspended"
	StationRevoked   = "revoked" // final
)

// Station is a factory station: an mTLS client that forwards device CSRs for one environment and the product
// lines it is scoped to, within a quota and a validity window.
type Station struct {
	ID           string // e.g. "site-a-3f2a9c01"; the common name of its certificate
	Environment  string
	Site         string
	ProductLines []string
	CertSerial   string // serial of its factory-station certificate (lower-case hex)
	SPKISHA256   []byte // of its key
	Quota        int64  // enrollments allowed; 0 means no limit
	Used         int64  // enrollments made
	ValidFrom    time.Time
	ValidUntil   time.Time
	State        string
	CreatedAt    time.Time
	StateChanged time.Time
}

// Device states, ARCHITECTURE.md "Device". A device is recorded when it is first enrolled, so it starts active.
const (
	DeviceActive         = "active"
	DeviceSuspended      = "suspended"
	DeviceDecommissioned = "decommissioned" // final
)

// Device is one entry of the device registry: a serial number, unique within (environment, product line).
type Device struct {
	Environment string
	ProductLine string
	Serial      string // the subject common name of its identity certificate
	State       string
	StationID   string // who enrolled it, at which site and when
	Site        string
	EnrolledAt  time.Time
	CertSerial  string // its current identity certificate
	SPKISHA256  []byte // its current key
	// ReprovisionAllowed lets the next initial enrollment of this serial replace the current identity; it is
	// cleared by that enrollment.
	ReprovisionAllowed bool
	// ForceRenew lets the next renewal happen outside the profile's renewal window; it is cleared by it.
	ForceRenew bool
	UpdatedAt  time.Time
	// HardwareSerial is the serial of the hardware a pre-issued credential was injected into ('keyward
	// factory inject'), recorded at reconciliation; "" when the device's identity serial is its own. It is
	// unique per environment and product line (PutDevice: ErrExists).
	HardwareSerial string
}

// DeviceFilter narrows ListDevices. Zero fields do not filter.
type DeviceFilter struct {
	Environment string
	ProductLine string
	Serial      string
	State       string
	StationID   string
	Site        string // the factory site that provisioned the device (station's site, or the batch's)
	// HardwareSerial selects the device a pre-issued credential was injected into.
	HardwareSerial string
	Limit          int // 0: no limit
}

// EnrollmentTx is the transactional part of the enrollment store.
type EnrollmentTx interface {
	// InsertStation stores a new station (ErrExists if the id is taken).
	InsertStation(ctx context.Context, s *Station) error
	// LockStation returns station id and holds it until the transaction ends, so a quota check and the
	// increment that follows cannot interleave with another transaction's (ErrNotFound if there is none).
	LockStation(ctx context.Context, id string) (*Station, error)
	// UpdateStation writes s's State, StateChanged and Used (ErrNotFound if there is no such station).
	UpdateStation(ctx context.Context, s *Station) error
	// LockDevice returns the device and holds it until the transaction ends (ErrNotFound if there is none).
	LockDevice(ctx context.Context, env, productLine, serial string) (*Device, error)
	// PutDevice inserts d, or replaces the device with the same (Environment, ProductLine, Serial).
	PutDevice(ctx context.Context, d *Device) error
	// SetCertificateStatus moves certificate serial from status from to status to (ErrNotFound unless a
	// certificate with that serial has status from).
	SetCertificateStatus(ctx context.Context, serial, from, to string) error
}

// EnrollmentStore is the read side of the enrollment store.
type EnrollmentStore interface {
	// GetStation returns station id (ErrNotFound if none).
	GetStation(ctx context.Context, id string) (*Station, error)
	// ListStations returns every station, ordered by id.
	ListStations(ctx context.Context) ([]*Station, error)
	// GetDevice returns the device (ErrNotFound if none).
	GetDevice(ctx context.Context, env, productLine, serial string) (*Device, error)
	// ListDevices returns the devices that match f, ordered by environment, product line and serial.
	ListDevices(ctx context.Context, f DeviceFilter) ([]*Device, error)
	// ExpiringCertificates returns valid certificates whose NotAfter is before before, soonest first, at most
	// limit of them when limit is positive.
	ExpiringCertificates(ctx context.Context, before time.Time, limit int) ([]*Certificate, error)
	// CountExpiring counts the valid certificates of profile whose NotAfter is after after and not after
	// before: a range of the not_after index.
	CountExpiring(ctx context.Context, profile string, after, before time.Time) (int64, error)
}
