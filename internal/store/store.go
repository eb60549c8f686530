package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
)

// CA kinds.
const (
	CAKindRoot    = "root"
	CAKindIssuing = "issuing"
	CAKindStation = "station"
	CAKindService = "service" // the data directory's own TLS CA; belongs to no device environment
	// CAKindOCSPSigner is an offline root's delegated OCSP responder: not a CA, but certified by the root in a
	// ceremony like one, so that the status of the root's subordinates is answered while the root is offline.
	CAKindOCSPSigner = "ocsp-signer"
)

// CA states.
const (
	CAStatusActive  = "active"
	CAStatusRetired = "retired"
	// CAStatusRevoked is a CA whose certificate its parent revoked: it signs nothing but the CRLs and OCSP
	// answers of what it issued, and verifiers refuse its whole subtree.
	CAStatusRevoked = "revoked"
	// CAStatusSuperseded is a previous generation after a rollover: it issues nothing, and signs the CRLs and
	// OCSP answers of what it issued until the last of those certificates expires.
	CAStatusSuperseded = "superseded"
)

// CA is a certificate authority of one environment: a root, or an issuing CA for one product line.
type CA struct {
	ID          string // e.g. "dev/root", "dev/demo-implant"
	Environment string
	ProductLine string // empty for a root
	Kind        string
	ParentID    string // empty for a root
	KeyURI      string
	CertDER     []byte
	Subject     string
	NotBefore   time.Time
	NotAfter    time.Time
	Status      string
	CreatedAt   time.Time
	// Generation counts the CAs of one role: a product line's first issuing CA is 1, the CA a rollover makes
	// next is 2, and so on.
	Generation int
	// RevokedAt and RevocationReason (RFC 5280 5.3.1) are set when the CA's parent revoked it.
	RevokedAt        *time.Time
	RevocationReason int
}

// CA request states.
const (
	CARequestPending  = "pending"
	CARequestImported = "imported"
)

// CARequest is a CA key generated here and waiting for its certificate from an offline root's ceremony: the
// kind of CA it becomes and the constraints that the ceremony applies and the import checks.
type CARequest struct {
	CAID        string // the CA it becomes
	Environment string
	ProductLine string // issuing and site CAs
	Kind        string
	Site        string        // site CAs
	Quota       int64         // site CAs: certificates the site may issue
	ValidFor    time.Duration // site CAs: the issuing window, whole seconds
	Generation  int
	Replaces    string // the CA that the imported one supersedes, "" if none
	KeyURI      string
	SPKISHA256  []byte
	CSRDER      []byte
	State       string
	CreatedAt   time.Time
	ClosedAt    *time.Time
}

// Key states, as CycloneDX names them.
const (
	KeyPreActivation = "pre-activation"
	KeyActive        = "active"
	KeySuspended     = "suspended"
	KeyDeactivated   = "deactivated"
	KeyCompromised   = "compromised"
	KeyDestroyed     = "destroyed"
)

// A device key certified by Keyward (a key generated on the device, which Keyward never holds) is in the
// glossary under DeviceKeyURI of its SPKI hash, with purpose DeviceKeyPurpose and location DeviceKeyLocation; its
// owner and creation time are those of the first certificate of the key (Tx.InsertCertificateKey).
const (
	DeviceKeyPurpose  = "device-identity"
	DeviceKeyLocation = "device"
	deviceKeyPrefix   = "spki:sha256:"
)

// DeviceKeyURI is the glossary URI of a key Keyward does not hold, named by the SHA-256 of its
// SubjectPublicKeyInfo.
func DeviceKeyURI(spkiSHA256 []byte) string { return deviceKeyPrefix + hex.EncodeToString(spkiSHA256) }

// DeviceKeySPKI returns the SPKI hash a DeviceKeyURI names, and false for any other URI.
func DeviceKeySPKI(uri string) ([]byte, bool) {
	h, ok := strings.CutPrefix(uri, deviceKeyPrefix)
	if !ok || len(h) != 2*sha256.Size {
		return nil, false
	}
	b, err := hex.DecodeString(h)
	if err != nil || hex.EncodeToString(b) != h {
		return nil, false
	}
	return b, true
}

// MergeKeys returns the glossary rows of keys and device keys (each ordered by URI) as one list ordered by
// URI, the first row of a URI kept.
func MergeKeys(keys, device []*Key) []*Key {
	out := make([]*Key, 0, len(keys)+len(device))
	for len(keys) > 0 || len(device) > 0 {
		var k *Key
		if len(device) == 0 || (len(keys) > 0 && keys[0].URI <= device[0].URI) {
			k, keys = keys[0], keys[1:]
		} else {
			k, device = device[0], device[1:]
		}
		if n := len(out); n > 0 && out[n-1].URI == k.URI {
			continue
		}
		out = append(out, k)
	}
	return out
}

// Key is one entry of the key glossary: a key Keyward holds or knows of (a device's key, for instance).
type Key struct {
	URI            string // keystore URI, or "spki:sha256:<hex>" for a key Keyward does not hold
	Purpose        string
	Algorithm      string
	Location       string // software, pkcs11, device
	State          string
	Owner          string // what uses the key: a CA id, a certificate serial, a device serial
	SPKISHA256     []byte
	CreatedAt      time.Time
	StateChangedAt time.Time
	DestroyedAt    *time.Time
}

// Certificate states.
const (
	CertStatusValid      = "valid"
	CertStatusRevoked    = "revoked"
	CertStatusSuperseded = "superseded"
)

// Certificate is an issued end-entity certificate.
type Certificate struct {
	Serial           string // lower-case hex, no leading zeros
	IssuerID         string // CA.ID
	Profile          string
	ProfileVersion   int
	Subject          string
	NotBefore        time.Time
	NotAfter         time.Time
	SPKISHA256       []byte // unique across all certificates of all subjects; see InsertCertificate
	DER              []byte
	Status           string
	RevokedAt        *time.Time
	RevocationReason int
	CreatedAt        time.Time
	// CSR, when set, is what is kept of the signature on the CSR the certificate was issued from: InsertCertificate
	// writes it with the certificate (hygiene.go). It is never read back into this field.
	CSR *CSRSignature
}

// KDK is one version of a key-derivation key: the key of URI (its key glossary row holds state, algorithm and
// location) derives the device keys of Purpose for (Environment, ProductLine). Versions count from 1 per
// (Environment, ProductLine, Purpose); the row never changes once stored.
type KDK struct {
	URI         string
	Environment string
	ProductLine string
	Purpose     string
	Version     int
	CreatedAt   time.Time
}

// Token is an operator API token. Only the SHA-256 of the token is stored. Names are unique.
type Token struct {
	ID        string
	Name      string
	Role      string
	Hash      []byte
	CreatedAt time.Time
	RevokedAt *time.Time
	// ExpiresAt is nil for a token that never expires (every token made before expiry existed).
	ExpiresAt *time.Time
	// LastUsedAt is when the token last authenticated a request, to the minute (nil: never).
	LastUsedAt       *time.Time
	RevocationReason string
}

// CertFilter narrows ListCertificates. Zero fields do not filter.
type CertFilter struct {
	IssuerID string
	Profile  string
	Status   string
	Subject  string
	Limit    int // 0: no limit
}

// Errors a caller must tell apart; backends wrap them.
var (
	ErrNotFound = errors.New("not found")
	// ErrDuplicateKey: a certificate with the same SubjectPublicKeyInfo already exists for another subject.
	ErrDuplicateKey = errors.New("public key already certified")
	// ErrDuplicateSerial: the serial is taken (a random-serial collision: retry with a new serial).
	ErrDuplicateSerial = errors.New("certificate serial already used")
	// ErrExists: a record with that identifier exists already.
	ErrExists = errors.New("already exists")
)

// Tx is one transaction. Every mutating operation happens through a Tx so it commits with its audit event.
type Tx interface {
	EnrollmentTx
	RevocationTx
	FirmwareTx
	FactoryTx
	AuditSinkTx
	AuditLogTx
	HygieneTx

	InsertCA(ctx context.Context, ca *CA) error
	// SetCAStatus sets the status of CA id (ErrNotFound if there is none).
	SetCAStatus(ctx context.Context, id, status string) error
	// RevokeCA marks CA id revoked at at for reason (ErrNotFound if there is none).
	RevokeCA(ctx context.Context, id string, at time.Time, reason int) error
	// InsertCARequest stores a pending CA request (ErrExists if one for the same CA id exists, or one of the
	// same environment, kind, product line and site is pending).
	InsertCARequest(ctx context.Context, r *CARequest) error
	// CloseCARequest sets the state of the request for CA id at at; a cancelled request is deleted, so the same
	// CA can be requested again (ErrNotFound if there is none).
	CloseCARequest(ctx context.Context, caID, state string, at time.Time) error
	// InsertToken stores an operator token's hash (ErrExists for a duplicate id, name or hash).
	InsertToken(ctx context.Context, t *Token) error
	// RevokeToken marks token id revoked at at for reason (ErrNotFound if there is no unrevoked token id).
	RevokeToken(ctx context.Context, id string, at time.Time, reason string) error
	// SetTokenLastUsed records that token id authenticated a request at at (ErrNotFound if there is none).
	SetTokenLastUsed(ctx context.Context, id string, at time.Time) error
	InsertKey(ctx context.Context, k *Key) error
	// InsertCertificateKey records in the key glossary the device-held key of certificate c, inserted before in
	// this transaction, as DeviceKeyURI(c.SPKISHA256), of algorithm, active since c.CreatedAt, owned by c's
	// serial. A key the glossary holds already (a re-issue for the same key, or a row of InsertKey) is left as it
	// is, without an error. The row is keyed by c's serial, so that issuance appends to it (serials are
	// time-ordered) where a row keyed by the URI, a hash, went to a random place.
	InsertCertificateKey(ctx context.Context, c *Certificate, algorithm string) error
	// InsertKDK records a key-derivation key version; its key row must exist (ErrNotFound otherwise) and
	// (environment, product line, purpose, version) be free (ErrExists otherwise).
	InsertKDK(ctx context.Context, k *KDK) error
	// SetKeyState moves the key at uri (either kind of glossary row) to state at time at; for KeyDestroyed it
	// also sets DestroyedAt.
	SetKeyState(ctx context.Context, uri, state string, at time.Time) error
	// InsertCertificate stores c, and c.CSR if set. It fails with ErrDuplicateKey if another subject's
	// certificate has the same SPKI hash, and ErrDuplicateSerial if the serial is taken.
	InsertCertificate(ctx context.Context, c *Certificate) error
	// CertificateBySPKI returns the certificates whose SPKI hash equals h (used for the duplicate-key check).
	CertificatesBySPKI(ctx context.Context, h []byte) ([]*Certificate, error)
	// AppendAudit seals e into the chain after the newest stored event and stores it; it sets e.Seq, e.PrevHash and
	// e.Hash. Concurrent transactions are serialised on the chain head.
	AppendAudit(ctx context.Context, e *audit.Event) error
	// Savepoint runs fn, which works through this same Tx, inside a savepoint: if fn returns an error (or
	// panics), everything it did is undone, the rows and the transaction's own state (the audit chain head,
	// buffered events) alike, and the transaction carries on as it was before fn; fn's error is returned. Group
	// commit runs each request of a group so, to give each its own success or refusal with nothing of a refused
	// one stored.
	Savepoint(ctx context.Context, fn func() error) error
	// Pipeline lets the backend hold back the InsertCertificate and InsertKey calls that follow, until the end
	// of the savepoint or transaction, and send them together: their failures (a duplicate key or serial) are
	// then returned by Savepoint or by the commit, and InsertKey reports no ErrExists. Only for a function that
	// ends with those writes and its audit events, and treats the failure of any as the failure of all (an
	// issuance's record, a stream's batch). A backend whose writes cost no round trip ignores it.
	Pipeline()
}

// Change is one committed change as the change feed sees it: the sequence number, action and subject of the
// audit event its transaction appended. Every change appends exactly one such event in the transaction that makes
// it, so the audit trail's sequence is the sequence of changes, in commit order, on every backend.
type Change struct {
	Seq     int64
	Action  string
	Subject string
}

// Reader is the read-only side of a Store: what the faces list, the CA custodian checks and the publisher
// publishes from. It offers no way to change anything.
type Reader interface {
	EnrollmentStore
	RevocationStore
	FirmwareStore
	FactoryStore
	AuditSinkStore
	AuditLogStore
	HygieneStore

	GetCA(ctx context.Context, id string) (*CA, error)
	ListCAs(ctx context.Context) ([]*CA, error)
	// ListCARequests returns every CA request, pending or imported, by CA id.
	ListCARequests(ctx context.Context) ([]*CARequest, error)
	GetKey(ctx context.Context, uri string) (*Key, error)
	ListKeys(ctx context.Context) ([]*Key, error)
	// ListKDKs returns the key-derivation keys of (env, product, purpose), every one when an argument is empty,
	// ordered by environment, product line, purpose and version.
	ListKDKs(ctx context.Context, env, product, purpose string) ([]*KDK, error)
	GetCertificate(ctx context.Context, serial string) (*Certificate, error)
	// CertificatesBySPKI returns the certificates whose SPKI hash equals h, for the duplicate-key pre-check made
	// before anything is signed (InsertCertificate enforces the rule again).
	CertificatesBySPKI(ctx context.Context, h []byte) ([]*Certificate, error)
	// IssuanceFacts returns, in one read, what an issuance is checked against before anything is signed: the
	// certificates whose SPKI hash is spki (CertificatesBySPKI), and the registry's device (env, product, serial),
	// nil if the registry holds none. On PostgreSQL both queries travel in one round trip.
	IssuanceFacts(ctx context.Context, spki []byte, env, product, serial string) ([]*Certificate, *Device, error)
	// TokenByHash returns the operator token with that hash (ErrNotFound if none).
	TokenByHash(ctx context.Context, hash []byte) (*Token, error)
	// TokenByName returns the operator token named name (ErrNotFound if none).
	TokenByName(ctx context.Context, name string) (*Token, error)
	// ListTokens returns every operator token, revoked and expired ones included, in order of creation.
	ListTokens(ctx context.Context) ([]*Token, error)
	ListCertificates(ctx context.Context, f CertFilter) ([]*Certificate, error)
	// WalkAudit calls fn for every audit event with Seq > after in sequence order, stopping at the first error.
	WalkAudit(ctx context.Context, after int64, fn func(*audit.Event) error) error
	// WalkAuditBySubject calls fn for every audit event whose subject is subject, in sequence order, stopping at
	// the first error (forensics: the events of a device, a certificate or a key; refusals included).
	WalkAuditBySubject(ctx context.Context, subject string, fn func(*audit.Event) error) error
	// AuditHead returns the sequence number and hash of the newest audit event (0 and nil for an empty chain).
	AuditHead(ctx context.Context) (int64, []byte, error)
	// WalkChanges calls fn for every successful audit event with Seq > after, in sequence order, reading only
	// its sequence number, action and subject (refusals change nothing and are skipped). It stops at fn's
	// first error and returns it unwrapped.
	WalkChanges(ctx context.Context, after int64, fn func(Change) error) error
}

// Store is a Keyward database.
type Store interface {
	Reader

	// Tx runs fn in a transaction, committing if fn returns nil and rolling back otherwise.
	Tx(ctx context.Context, fn func(Tx) error) error
	// TryPublisherLock tries to become the single publisher of revocation data among all nodes sharing the
	// database. It returns ok false, without waiting, if another holder has it. release gives it up.
	TryPublisherLock(ctx context.Context, holder string) (release func(), ok bool, err error)
	// Watch returns a channel that receives a value (coalesced: at most one waits) after transactions commit,
	// in this process or in any other sharing the database, so that a reader of WalkChanges need not poll. A
	// value may arrive with nothing new; a commit may be signalled with some delay (the SQLite backend polls
	// PRAGMA data_version, the PostgreSQL backend listens for notifications and polls as a fallback). The
	// channel is closed when ctx ends.
	Watch(ctx context.Context) (<-chan struct{}, error)

	Close() error
}

// VerifyAudit recomputes the whole audit chain stored in s. It returns the number of events verified, and an
// error wrapping audit.ErrChainBroken that names the first bad event.
func VerifyAudit(ctx context.Context, s Store) (int64, error) {
	v := audit.NewVerifier()
	err := s.WalkAudit(ctx, 0, v.Next)
	return v.Count(), err
}

// PoolStats describes one database connection pool, for metrics.
type PoolStats struct {
	Name     string // "writer", "reader" (SQLite), "pool" (PostgreSQL)
	Open     int
	InUse    int
	Waits    int64         // times a caller waited for a connection
	WaitTime time.Duration // total time callers waited
}

// Warmer is implemented by stores that keep in memory what spares the issuance path a read (SQLite: the
// filter of certified keys) and build it when first needed. Warm builds it now and returns once it is ready,
// so that a server warms up at start and a benchmark does not time the build.
type Warmer interface {
	Warm(ctx context.Context) error
	// WarmStats reports what it keeps in memory, for metrics.
	WarmStats() WarmStats
}

// WarmStats describes what a Warmer keeps in memory.
type WarmStats struct {
	Bytes int64 // memory of the filter in use; 0 until one is built
	Keys  int64 // keys in the filter in use: the certificates' when it was built and those inserted since
}

// Pooled is implemented by stores that can report their connection pools.
type Pooled interface {
	PoolStats() []PoolStats
}
