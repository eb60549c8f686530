package store

import (
	"context"
	"time"
)

// Firmware release states.
const (
	FirmwareDraft    = "draft"    // created, awaiting approvals
	FirmwareApproved = "approved" // the product line's threshold of distinct release signers approved it
	FirmwareSigned   = "signed"   // the manifest is signed and stored
)

// Firmware signing-key states.
const (
	FirmwareKeyActive  = "active"  // signs new manifests
	FirmwareKeyRetired = "retired" // replaced in a rotation; its manifests stay valid while its root is trusted
	FirmwareKeyRevoked = "revoked" // compromised: listed in every later trust version, its manifests refused
)

// FirmwareRoot is one version of an environment's firmware trust: the root that certifies firmware-signing
// keys, the ML-DSA-65 root beside it, and the signing keys revoked so far. Version 1 is what devices pin at
// manufacture; every later version has Update, the signed trust update that moves a device to it.
type FirmwareRoot struct {
	Environment string
	Version     int64
	KeyURI      string // ECDSA root key (purpose root-signing)
	CertDER     []byte // self-signed root certificate
	PQKeyURI    string // ML-DSA-65 root key (purpose root-signing)
	PQPublic    []byte // its FIPS 204 public key encoding
	Revoked     [][]byte
	Update      []byte // COSE_Sign trust update to this version; nil for version 1
	CreatedAt   time.Time
}

// FirmwareSigningKey is a firmware-signing key of one environment, ECDSA (certified by an X.509 certificate from
// the firmware root) or ML-DSA-65 (certified by a COSE key certificate from the ML-DSA root).
type FirmwareSigningKey struct {
	KID         []byte // manifest.KeyID of the public key
	Environment string
	Algorithm   string
	KeyURI      string
	Cert        []byte // DER X.509 certificate, or the COSE_Sign1 ML-DSA key certificate
	RootVersion int64  // the trust version whose root certified it
	Status      string
	CreatedAt   time.Time
	RevokedAt   *time.Time
}

// FirmwareRelease is a firmware image on its way from draft through approvals to a signed manifest.
type FirmwareRelease struct {
	ID            string
	Environment   string
	ProductLine   string
	Version       string // semantic version
	Sequence      int64  // unique and increasing per (environment, product line)
	ImageSHA256   []byte
	ImageSize     int64
	MinBootloader string
	NotBefore     time.Time
	NotAfter      time.Time
	Threshold     int  // approvals required, fixed when the release is created
	Hybrid        bool // ECDSA + ML-DSA-65 required by the product line's policy
	Status        string
	CreatedBy     string
	CreatedAt     time.Time
	Manifest      []byte // the signed manifest, once signed
	SignerKID     []byte
	SignedAt      *time.Time
}

// FirmwareApproval is one release signer's approval of a release.
type FirmwareApproval struct {
	ReleaseID  string
	Signer     string
	ApprovedAt time.Time
}

// FirmwareTx is what a transaction offers for firmware signing; Tx embeds it.
type FirmwareTx interface {
	// InsertFirmwareRoot stores a trust version (ErrExists if the version exists).
	InsertFirmwareRoot(ctx context.Context, r *FirmwareRoot) error
	// LatestFirmwareRoot returns env's newest trust version (ErrNotFound if none).
	LatestFirmwareRoot(ctx context.Context, env string) (*FirmwareRoot, error)
	// InsertFirmwareSigningKey stores a signing key (ErrExists for a duplicate key id).
	InsertFirmwareSigningKey(ctx context.Context, k *FirmwareSigningKey) error
	// SetFirmwareSigningKeyStatus sets a signing key's status; revokedAt is recorded for FirmwareKeyRevoked.
	SetFirmwareSigningKeyStatus(ctx context.Context, kid []byte, status string, at time.Time) error
	// FirmwareSigningKeys returns env's signing keys, oldest first.
	FirmwareSigningKeys(ctx context.Context, env string) ([]*FirmwareSigningKey, error)
	// NextFirmwareSequence returns one more than the highest sequence of (env, product line), 1 for the first.
	NextFirmwareSequence(ctx context.Context, env, product string) (int64, error)
	// InsertFirmwareRelease stores a release (ErrExists for a taken id, sequence or version).
	InsertFirmwareRelease(ctx context.Context, r *FirmwareRelease) error
	// GetFirmwareRelease reads release id and holds it against concurrent change until the transaction ends.
	GetFirmwareRelease(ctx context.Context, id string) (*FirmwareRelease, error)
	// UpdateFirmwareRelease writes r's Status, Manifest, SignerKID and SignedAt.
	UpdateFirmwareRelease(ctx context.Context, r *FirmwareRelease) error
	// InsertFirmwareApproval records an approval (ErrExists if that signer approved the release already).
	InsertFirmwareApproval(ctx context.Context, a *FirmwareApproval) error
	// FirmwareApprovals returns a release's approvals, oldest first.
	FirmwareApprovals(ctx context.Context, releaseID string) ([]*FirmwareApproval, error)
}

// FirmwareStore is the read side of firmware signing. Backends' Store values implement it.
type FirmwareStore interface {
	// FirmwareRoots returns every trust version of env, oldest first.
	FirmwareRoots(ctx context.Context, env string) ([]*FirmwareRoot, error)
	// FirmwareSigningKeys returns env's signing keys, oldest first; env "" means every environment.
	FirmwareSigningKeys(ctx context.Context, env string) ([]*FirmwareSigningKey, error)
	// GetFirmwareRelease returns release id (ErrNotFound if none).
	GetFirmwareRelease(ctx context.Context, id string) (*FirmwareRelease, error)
	// ListFirmwareReleases returns releases, filtered by env and product line when not empty, by sequence.
	ListFirmwareReleases(ctx context.Context, env, product string) ([]*FirmwareRelease, error)
	// FirmwareApprovals returns a release's approvals, oldest first.
	FirmwareApprovals(ctx context.Context, releaseID string) ([]*FirmwareApproval, error)
}
