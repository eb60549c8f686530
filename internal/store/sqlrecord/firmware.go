package sqlrecord

import (
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// Column lists of the firmware signing tables, in the order of the Scan and Args functions below.
const (
	FirmwareRootColumns    = `environment, version, key_uri, cert_der, pq_key_uri, pq_public, revoked, update_cbor, created_at`
	FirmwareKeyColumns     = `kid, environment, algorithm, key_uri, cert, root_version, status, created_at, revoked_at`
	FirmwareReleaseColumns = `id, environment, product_line, version, sequence, image_sha256, image_size, min_bootloader, not_before, ` +
		`not_after, threshold, hybrid, status, created_by, created_at, manifest, signer_kid, signed_at`
	FirmwareApprovalColumns = `release_id, signer, approved_at`
)

// Statements on the firmware signing tables that both dialects run as they are. PostgreSQL locks a release it
// reads in a transaction by appending FOR UPDATE.
const (
	InsertFirmwareRoot = `INSERT INTO firmware_roots (` + FirmwareRootColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
	// FirmwareRoots reads every trust version of environment $1, oldest first.
	FirmwareRoots = `SELECT ` + FirmwareRootColumns + ` FROM firmware_roots WHERE environment = $1 ORDER BY version`
	// LatestFirmwareRoot reads the newest trust version of environment $1.
	LatestFirmwareRoot = `SELECT ` + FirmwareRootColumns + ` FROM firmware_roots WHERE environment = $1 ORDER BY version DESC LIMIT 1`

	InsertFirmwareKey = `INSERT INTO firmware_signing_keys (` + FirmwareKeyColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
	// SetFirmwareKeyStatus sets the status of key $3 to $1, and its revocation time to $2 unless $2 is NULL.
	SetFirmwareKeyStatus = `UPDATE firmware_signing_keys SET status = $1, revoked_at = COALESCE($2, revoked_at) WHERE kid = $3`
	// FirmwareKeys reads the signing keys of environment $1, or of every environment if $1 is empty.
	FirmwareKeys = `SELECT ` + FirmwareKeyColumns + ` FROM firmware_signing_keys WHERE $1 = '' OR environment = $1 ORDER BY created_at, kid`

	// NextFirmwareSequence reads one more than the highest release sequence of environment $1 and product line $2.
	NextFirmwareSequence  = `SELECT COALESCE(MAX(sequence), 0) + 1 FROM firmware_releases WHERE environment = $1 AND product_line = $2`
	InsertFirmwareRelease = `INSERT INTO firmware_releases (` + FirmwareReleaseColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`
	SelectFirmwareRelease = `SELECT ` + FirmwareReleaseColumns + ` FROM firmware_releases WHERE id = $1`
	// UpdateFirmwareRelease writes a release's status, manifest, signer and signing time; see
	// UpdateFirmwareReleaseArgs.
	UpdateFirmwareRelease = `UPDATE firmware_releases SET status = $1, manifest = $2, signer_kid = $3, signed_at = $4 WHERE id = $5`
	// ListFirmwareReleases reads the releases of environment $1 and product line $2, an empty one matching any.
	ListFirmwareReleases = `SELECT ` + FirmwareReleaseColumns + ` FROM firmware_releases
		WHERE ($1 = '' OR environment = $1) AND ($2 = '' OR product_line = $2) ORDER BY environment, product_line, sequence`

	InsertFirmwareApproval = `INSERT INTO firmware_approvals (` + FirmwareApprovalColumns + `) VALUES ($1, $2, $3)`
	// FirmwareApprovals reads the approvals of release $1, oldest first.
	FirmwareApprovals = `SELECT ` + FirmwareApprovalColumns + ` FROM firmware_approvals WHERE release_id = $1 ORDER BY approved_at, signer`
)

// SetFirmwareKeyStatusArgs returns the arguments of SetFirmwareKeyStatus: the revocation time is at if status
// is store.FirmwareKeyRevoked, and left as it is otherwise.
func (c Codec) SetFirmwareKeyStatusArgs(kid []byte, status string, at time.Time) []any {
	var revoked *time.Time
	if status == store.FirmwareKeyRevoked {
		revoked = &at
	}
	return []any{status, c.BindNullTime(revoked), kid}
}

// UpdateFirmwareReleaseArgs returns the arguments of UpdateFirmwareRelease.
func (c Codec) UpdateFirmwareReleaseArgs(r *store.FirmwareRelease) []any {
	return []any{r.Status, Blob(r.Manifest), Blob(r.SignerKID), c.BindNullTime(r.SignedAt), r.ID}
}

// kidSize is the length of a firmware key id (manifest.KeyID, a SHA-256).
const kidSize = 32

// joinKIDs and splitKIDs store a list of key ids as one byte column.
func joinKIDs(kids [][]byte) []byte {
	var b []byte
	for _, k := range kids {
		b = append(b, k...)
	}
	return b
}

func splitKIDs(b []byte) ([][]byte, error) {
	if len(b)%kidSize != 0 {
		return nil, fmt.Errorf("revoked key list is %d bytes, not a multiple of %d", len(b), kidSize)
	}
	var out [][]byte
	for i := 0; i < len(b); i += kidSize {
		out = append(out, append([]byte(nil), b[i:i+kidSize]...))
	}
	return out, nil
}

// ScanFirmwareRoot reads a row of FirmwareRootColumns.
func (c Codec) ScanFirmwareRoot(r Row) (*store.FirmwareRoot, error) {
	var (
		fr      store.FirmwareRoot
		revoked []byte
	)
	if err := r.Scan(&fr.Environment, &fr.Version, &fr.KeyURI, &fr.CertDER, &fr.PQKeyURI, &fr.PQPublic, &revoked,
		&fr.Update, c.ScanTime(&fr.CreatedAt)); err != nil {
		return nil, err
	}
	var err error
	if fr.Revoked, err = splitKIDs(revoked); err != nil {
		return nil, fmt.Errorf("firmware root %s v%d: %w", fr.Environment, fr.Version, err)
	}
	fr.Update = nonEmpty(fr.Update)
	return &fr, nil
}

// FirmwareRootArgs returns fr's values in the order of FirmwareRootColumns.
func (c Codec) FirmwareRootArgs(fr *store.FirmwareRoot) []any {
	return []any{fr.Environment, fr.Version, fr.KeyURI, fr.CertDER, fr.PQKeyURI, fr.PQPublic, Blob(joinKIDs(fr.Revoked)),
		Blob(fr.Update), c.BindTime(fr.CreatedAt)}
}

// ScanFirmwareKey reads a row of FirmwareKeyColumns.
func (c Codec) ScanFirmwareKey(r Row) (*store.FirmwareSigningKey, error) {
	var k store.FirmwareSigningKey
	if err := r.Scan(&k.KID, &k.Environment, &k.Algorithm, &k.KeyURI, &k.Cert, &k.RootVersion, &k.Status,
		c.ScanTime(&k.CreatedAt), c.ScanNullTime(&k.RevokedAt)); err != nil {
		return nil, err
	}
	return &k, nil
}

// FirmwareKeyArgs returns k's values in the order of FirmwareKeyColumns.
func (c Codec) FirmwareKeyArgs(k *store.FirmwareSigningKey) []any {
	return []any{k.KID, k.Environment, k.Algorithm, k.KeyURI, k.Cert, k.RootVersion, k.Status, c.BindTime(k.CreatedAt),
		c.BindNullTime(k.RevokedAt)}
}

// ScanFirmwareRelease reads a row of FirmwareReleaseColumns.
func (c Codec) ScanFirmwareRelease(r Row) (*store.FirmwareRelease, error) {
	var fr store.FirmwareRelease
	if err := r.Scan(&fr.ID, &fr.Environment, &fr.ProductLine, &fr.Version, &fr.Sequence, &fr.ImageSHA256, &fr.ImageSize,
		&fr.MinBootloader, c.ScanTime(&fr.NotBefore), c.ScanTime(&fr.NotAfter), &fr.Threshold,
		c.ScanBool(&fr.Hybrid), &fr.Status, &fr.CreatedBy, c.ScanTime(&fr.CreatedAt), &fr.Manifest, &fr.SignerKID,
		c.ScanNullTime(&fr.SignedAt)); err != nil {
		return nil, err
	}
	fr.Manifest, fr.SignerKID = nonEmpty(fr.Manifest), nonEmpty(fr.SignerKID)
	return &fr, nil
}

// FirmwareReleaseArgs returns fr's values in the order of FirmwareReleaseColumns.
func (c Codec) FirmwareReleaseArgs(fr *store.FirmwareRelease) []any {
	return []any{fr.ID, fr.Environment, fr.ProductLine, fr.Version, fr.Sequence, fr.ImageSHA256, fr.ImageSize,
		fr.MinBootloader, c.BindTime(fr.NotBefore), c.BindTime(fr.NotAfter), fr.Threshold, fr.Hybrid, fr.Status,
		fr.CreatedBy, c.BindTime(fr.CreatedAt), Blob(fr.Manifest), Blob(fr.SignerKID), c.BindNullTime(fr.SignedAt)}
}

// ScanFirmwareApproval reads a row of FirmwareApprovalColumns.
func (c Codec) ScanFirmwareApproval(r Row) (*store.FirmwareApproval, error) {
	var a store.FirmwareApproval
	if err := r.Scan(&a.ReleaseID, &a.Signer, c.ScanTime(&a.ApprovedAt)); err != nil {
		return nil, err
	}
	return &a, nil
}

// FirmwareApprovalArgs returns a's values in the order of FirmwareApprovalColumns.
func (c Codec) FirmwareApprovalArgs(a *store.FirmwareApproval) []any {
	return []any{a.ReleaseID, a.Signer, c.BindTime(a.ApprovedAt)}
}
