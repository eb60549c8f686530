package client

import (
	"encoding/json"
	"time"
)

// CA is a certificate authority.
type CA struct {
	ID               string     `json:"id"`
	Kind             string     `json:"kind"`
	Environment      string     `json:"environment"`
	ProductLine      string     `json:"product_line,omitempty"`
	Parent           string     `json:"parent,omitempty"`
	KeyURI           string     `json:"key_uri"`
	Subject          string     `json:"subject"`
	NotBefore        time.Time  `json:"not_before"`
	NotAfter         time.Time  `json:"not_after"`
	Status           string     `json:"status"`
	Generation       int        `json:"generation"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	RevocationReason string     `json:"revocation_reason,omitempty"`
	PEM              string     `json:"pem,omitempty"`
}

// Certificate is an issued certificate.
type Certificate struct {
	Serial         string     `json:"serial"`
	Issuer         string     `json:"issuer"`
	Profile        string     `json:"profile"`
	ProfileVersion int        `json:"profile_version"`
	Subject        string     `json:"subject"`
	NotBefore      time.Time  `json:"not_before"`
	NotAfter       time.Time  `json:"not_after"`
	Status         string     `json:"status"`
	SPKISHA256     string     `json:"spki_sha256"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	DERSize        int        `json:"der_size"`
	PEM            string     `json:"pem,omitempty"`
}

// IssueRequest asks for a certificate from a CSR under a profile.
type IssueRequest struct {
	Profile     string `json:"profile"`
	Environment string `json:"environment,omitempty"`
	ProductLine string `json:"product_line,omitempty"`
	// CSR is PEM, or base64 of DER.
	CSR string `json:"csr"`
}

// CertificateFilter narrows a certificate listing; zero fields do not.
type CertificateFilter struct {
	Profile, Status, Issuer, Subject string
	Limit                            int // 0: the server's default (100)
}

// Revocation is a certificate's revocation state after a revocation or a release from hold.
type Revocation struct {
	Serial         string     `json:"serial"`
	Issuer         string     `json:"issuer"`
	Status         string     `json:"status"`
	Reason         string     `json:"reason,omitempty"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"`
}

// RevokeRequest revokes one certificate.
type RevokeRequest struct {
	Reason         string     `json:"reason"` // RFC 5280 5.3.1 name, e.g. "keyCompromise"
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"`
}

// BulkRevokeRequest revokes every certificate matching all the selectors given.
type BulkRevokeRequest struct {
	Issuers        []string   `json:"issuers,omitempty"`
	Profile        string     `json:"profile,omitempty"`
	Subject        string     `json:"subject,omitempty"`
	IssuedFrom     *time.Time `json:"issued_from,omitempty"`
	IssuedTo       *time.Time `json:"issued_to,omitempty"`
	Reason         string     `json:"reason"`
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"`
	DryRun         bool       `json:"dry_run,omitempty"`
	Environment    string     `json:"environment,omitempty"`
	ProductLine    string     `json:"product_line,omitempty"`
	Device         string     `json:"device,omitempty"`
	Station        string     `json:"station,omitempty"`
	Site           string     `json:"site,omitempty"`
	Batch          string     `json:"batch,omitempty"`
}

// BulkResult reports a bulk revocation.
type BulkResult struct {
	Matched        int64    `json:"matched"`
	AlreadyRevoked int64    `json:"already_revoked"`
	Revoked        int64    `json:"revoked"`
	DryRun         bool     `json:"dry_run"`
	Sample         []string `json:"sample,omitempty"`
}

// Key is an entry of the key glossary.
type Key struct {
	URI            string     `json:"uri"`
	Purpose        string     `json:"purpose"`
	Algorithm      string     `json:"algorithm"`
	Location       string     `json:"location"`
	State          string     `json:"state"`
	Owner          string     `json:"owner"`
	SPKISHA256     string     `json:"spki_sha256"`
	CreatedAt      time.Time  `json:"created_at"`
	StateChangedAt time.Time  `json:"state_changed_at"`
	DestroyedAt    *time.Time `json:"destroyed_at,omitempty"`
}

// Event is an audit event, its chain hashes in hex.
type Event struct {
	Seq      int64             `json:"seq"`
	Time     time.Time         `json:"time"`
	Actor    string            `json:"actor"`
	Action   string            `json:"action"`
	Subject  string            `json:"subject"`
	Outcome  string            `json:"outcome"`
	Details  map[string]string `json:"details,omitempty"`
	PrevHash string            `json:"prev_hash"`
	Hash     string            `json:"hash"`
}

// Token is an operator token as listings show it: never the token.
type Token struct {
	ID               string     `json:"id"`
	Name             string     `json:"name"`
	Role             string     `json:"role"`
	CreatedAt        time.Time  `json:"created_at"`
	LastUsedAt       *time.Time `json:"last_used_at"`
	ExpiresAt        *time.Time `json:"expires_at"`
	State            string     `json:"state"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	RevocationReason string     `json:"revocation_reason,omitempty"`
}

// TokenRequest asks for an operator token.
type TokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"` // admin, ca-officer, auditor or release-signer
	// Expires is a validity ("90d", "720h", "1y") or "never"; empty is 90 days.
	Expires string `json:"expires,omitempty"`
}

// NewToken is a token just created: Token is shown this once.
type NewToken struct {
	Token     string     `json:"token"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// Station is a factory station.
type Station struct {
	ID           string    `json:"id"`
	Environment  string    `json:"environment"`
	Site         string    `json:"site"`
	ProductLines []string  `json:"product_lines"`
	Certificate  string    `json:"certificate"`
	Quota        int64     `json:"quota"`
	Used         int64     `json:"used"`
	ValidFrom    time.Time `json:"valid_from"`
	ValidUntil   time.Time `json:"valid_until"`
	State        string    `json:"state"`
}

// StationRequest describes a new factory station.
type StationRequest struct {
	Environment  string     `json:"environment"`
	Site         string     `json:"site"`
	ProductLines []string   `json:"product_lines"`
	Name         string     `json:"name,omitempty"`
	Quota        int64      `json:"quota,omitempty"`
	ValidUntil   *time.Time `json:"valid_until,omitempty"`
}

// StationCredentials is a new station and what it needs: its certificate chain, its private key (the only
// copy) and the anchor that validates the server's TLS certificate, all PEM.
type StationCredentials struct {
	Station        Station `json:"station"`
	CertificatePEM string  `json:"certificate_pem"`
	KeyPEM         string  `json:"key_pem"`
	TrustPEM       string  `json:"trust_pem"`
}

// Device is an entry of the device registry.
type Device struct {
	Environment        string    `json:"environment"`
	ProductLine        string    `json:"product_line"`
	Serial             string    `json:"serial"`
	State              string    `json:"state"`
	Station            string    `json:"station"`
	Site               string    `json:"site"`
	EnrolledAt         time.Time `json:"enrolled_at"`
	Certificate        string    `json:"certificate"`
	ReprovisionAllowed bool      `json:"reprovision_allowed"`
	ForceRenew         bool      `json:"force_renew"`
	HardwareSerial     string    `json:"hardware_serial,omitempty"`
}

// DeviceRef names a device of the registry.
type DeviceRef struct {
	Environment, ProductLine, Serial string
}

// DeviceFilter narrows a registry listing; zero fields do not.
type DeviceFilter struct {
	Environment, ProductLine, Serial, State, Station, Site, HardwareSerial string
	Limit                                                                  int // 0: the server's default (1000)
}

// Device registry actions (DeviceAction).
const (
	Suspend          = "suspend"
	Resume           = "resume"
	AllowReprovision = "allow-reprovision"
	ForceRenew       = "force-renew"
)

// DecommissionResult reports a decommissioned device.
type DecommissionResult struct {
	Environment   string    `json:"environment"`
	ProductLine   string    `json:"product_line"`
	Serial        string    `json:"serial"`
	State         string    `json:"state"`
	At            time.Time `json:"decommissioned_at"`
	AttestedBy    string    `json:"attested_by"`
	Revoked       []string  `json:"revoked"`
	Untouched     []string  `json:"untouched,omitempty"`
	KeysDestroyed []string  `json:"keys_destroyed"`
}

// History is the forensic record of a device.
type History struct {
	Device       Device               `json:"device"`
	Events       []Event              `json:"events"`
	Certificates []HistoryCertificate `json:"certificates"`
	Keys         []HistoryKey         `json:"keys"`
	At           *HistoryAt           `json:"at,omitempty"`
	// Proofs are the inclusion proofs of Events, in their order, when asked for; each is the JSON that
	// 'keyward audit check-proof' and Keyward's pkg/auditproof read.
	Proofs []json.RawMessage `json:"proofs,omitempty"`
}

// HistoryCertificate is one certificate of a device over time; sequence numbers name audit events.
type HistoryCertificate struct {
	Serial           string     `json:"serial"`
	Issuer           string     `json:"issuer"`
	NotBefore        time.Time  `json:"not_before"`
	NotAfter         time.Time  `json:"not_after"`
	SPKI             string     `json:"spki_sha256"`
	IssuedEvent      int64      `json:"issued_event"`
	IssuedAt         time.Time  `json:"issued_at"`
	EndedEvent       int64      `json:"ended_event,omitempty"`
	EndedAt          *time.Time `json:"ended_at,omitempty"`
	EndedBy          string     `json:"ended_by,omitempty"`
	RevokedEvent     int64      `json:"revoked_event,omitempty"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	RevocationReason string     `json:"revocation_reason,omitempty"`
}

// HistoryKey is one key of a device over time.
type HistoryKey struct {
	URI        string     `json:"uri"`
	SPKI       string     `json:"spki_sha256"`
	SinceEvent int64      `json:"since_event"`
	Since      time.Time  `json:"since"`
	UntilEvent int64      `json:"until_event,omitempty"`
	Until      *time.Time `json:"until,omitempty"`
	EndedBy    string     `json:"ended_by,omitempty"`
}

// HistoryAt is what a device held at an instant.
type HistoryAt struct {
	Time         time.Time `json:"time"`
	AsOfEvent    int64     `json:"as_of_event"`
	State        string    `json:"state"`
	Certificates []struct {
		Serial           string    `json:"serial"`
		Issuer           string    `json:"issuer"`
		NotBefore        time.Time `json:"not_before"`
		NotAfter         time.Time `json:"not_after"`
		Held             bool      `json:"held"`
		Valid            bool      `json:"valid"`
		Revoked          bool      `json:"revoked"`
		RevocationReason string    `json:"revocation_reason,omitempty"`
	} `json:"certificates"`
	Keys []struct {
		URI  string `json:"uri"`
		SPKI string `json:"spki_sha256"`
		Held bool   `json:"held"`
	} `json:"keys"`
}

// FirmwareRelease is a firmware release with the signers who approved it, in order.
type FirmwareRelease struct {
	ID            string     `json:"id"`
	Environment   string     `json:"environment"`
	ProductLine   string     `json:"product_line"`
	Version       string     `json:"version"`
	Sequence      int64      `json:"sequence"`
	ImageSHA256   string     `json:"image_sha256"`
	ImageSize     int64      `json:"image_size"`
	MinBootloader string     `json:"min_bootloader,omitempty"`
	Threshold     int        `json:"threshold"`
	Hybrid        bool       `json:"hybrid"`
	Status        string     `json:"status"`
	Approvers     []string   `json:"approvers"`
	CreatedAt     time.Time  `json:"created_at"`
	SignedAt      *time.Time `json:"signed_at,omitempty"`
}

// ReleaseRequest describes a draft firmware release; the image travels as the request body.
type ReleaseRequest struct {
	Environment, ProductLine, Version string
	MinBootloader                     string // optional
}

// ReconcileOptions are the terms on which headquarters accepts a factory export.
type ReconcileOptions struct {
	// Environment and Site, if set, admit only exports of that environment and site.
	Environment, Site string
	// Final closes the export's batch: its unused credentials are revoked and their keys recorded destroyed
	// on the word of AttestedBy.
	Final      bool
	AttestedBy string
}

// ReconcileResult reports a reconciled export.
type ReconcileResult struct {
	File          string `json:"file"`
	SiteCA        string `json:"site_ca"`
	BatchID       string `json:"batch_id"`
	Seq           int64  `json:"seq"`
	Devices       int64  `json:"devices_recorded"`
	Certificates  int64  `json:"certificates_recorded"`
	Revoked       int64  `json:"revoked"`
	KeysDestroyed int64  `json:"keys_destroyed"`
	Destruction   string `json:"destruction,omitempty"`
	Final         bool   `json:"final"`
}

// Readiness is the server's readiness and each of its checks.
type Readiness struct {
	Status string `json:"status"`
	Checks []struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error,omitempty"`
		Note  string `json:"note,omitempty"`
	} `json:"checks"`
}
