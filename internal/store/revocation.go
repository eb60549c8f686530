package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// This file holds the revocation records and the RevocationStore/RevocationTx interfaces, which Store and Tx
// embed.

// Revocation reasons: the CRLReason values of RFC 5280 section 5.3.1 (value 7 is unused).
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	ReasonRemoveFromCRL        = 8
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10
)

// Reasons maps the RFC 5280 5.3.1 CRLReason names operators use to their codes. removeFromCRL (8) is not an
// operator's reason: it only appears in delta CRLs for a certificate released from hold.
var Reasons = map[string]int{
	"unspecified":          ReasonUnspecified,
	"keyCompromise":        ReasonKeyCompromise,
	"cACompromise":         ReasonCACompromise,
	"affiliationChanged":   ReasonAffiliationChanged,
	"superseded":           ReasonSuperseded,
	"cessationOfOperation": ReasonCessationOfOperation,
	"certificateHold":      ReasonCertificateHold,
	"privilegeWithdrawn":   ReasonPrivilegeWithdrawn,
	"aACompromise":         ReasonAACompromise,
}

// ReasonName returns the RFC 5280 name of a reason code.
func ReasonName(code int) string {
	for n, c := range Reasons {
		if c == code {
			return n
		}
	}
	if code == ReasonRemoveFromCRL {
		return "removeFromCRL"
	}
	return fmt.Sprintf("reason-%d", code)
}

// Errors of revocation operations; backends wrap them.
var (
	// ErrAlreadyRevoked: the certificate is revoked already (a certificate on hold may still be revoked for a
	// permanent reason, RFC 5280 5.3.1).
	ErrAlreadyRevoked = errors.New("certificate already revoked")
	// ErrNotOnHold: only a certificate revoked with certificateHold can be released from revocation.
	ErrNotOnHold = errors.New("certificate is not on hold")
)

// Revocation asks to revoke one certificate.
type Revocation struct {
	Serial    string
	Reason    int
	RevokedAt time.Time
	// InvalidityDate is when the key is known or suspected to have been compromised (RFC 5280 5.3.2); nil if
	// not given.
	InvalidityDate *time.Time
}

// RevocationEntry is a certificate's revocation state as CRLs, OCSP and filters need it.
type RevocationEntry struct {
	Serial         string
	IssuerID       string
	Status         string // CertStatusRevoked, or CertStatusValid for a certificate released from hold
	Reason         int
	RevokedAt      *time.Time
	InvalidityDate *time.Time
	NotAfter       time.Time
	// Seq orders revocation changes: every revoke and every release from hold takes the next value of one
	// database-wide counter, and changes commit in Seq order (the counter row is locked until commit).
	Seq int64
}

// CertQuery selects certificates for streaming. Zero fields do not filter.
type CertQuery struct {
	IssuerIDs []string
	Profile   string
	Subject   string
	Status    string
	// IssuedFrom and IssuedTo bound the issuance time (CreatedAt): IssuedFrom <= t < IssuedTo.
	IssuedFrom time.Time
	IssuedTo   time.Time
	// NotAfterFrom keeps only certificates that have not expired before this time.
	NotAfterFrom time.Time
}

// CertStatus is the narrow view of a certificate that bulk revocation and filter builds stream.
type CertStatus struct {
	Serial   string
	IssuerID string
	Status   string
	Reason   int
	NotAfter time.Time
}

// CRLChunkSize is the size of the pieces a large CRL is stored in. A CRL of at most this size is stored whole
// in its PublishedCRL; a larger one in chunks of this size (the last one shorter), written before its
// PublishedCRL and read back one at a time, so that neither publishing nor serving a CRL of millions of entries
// holds it in memory.
const CRLChunkSize = 1 << 20

// PublishedCRL is a signed CRL as published.
type PublishedCRL struct {
	IssuerID string
	Number   int64
	Delta    bool
	// BaseNumber is the CRL number of the complete CRL a delta CRL refers to (RFC 5280 5.2.4); 0 for a
	// complete CRL.
	BaseNumber int64
	ThisUpdate time.Time
	NextUpdate time.Time
	// MaxSeq is the revocation change sequence number the CRL is complete up to.
	MaxSeq  int64
	Entries int
	// Size is the length of the DER CRL; InsertCRL takes 0 to mean len(DER).
	Size int64
	// DER is the CRL if it is stored whole (as the publisher stores those of at most CRLChunkSize, and an
	// imported root CRL); nil for a CRL stored in chunks (Chunked), which ReadCRLChunk reads.
	DER       []byte
	CreatedAt time.Time
}

// Chunked reports whether the CRL is stored in chunks rather than whole in DER.
func (c *PublishedCRL) Chunked() bool { return int64(len(c.DER)) < c.Size }

// CRLChunks is the number of chunks of CRLChunkSize that a CRL of size octets is stored in.
func CRLChunks(size int64) int { return int((size + CRLChunkSize - 1) / CRLChunkSize) }

// RevokedQuery selects the revoked certificates of one CA that a complete CRL lists, or those in one range of
// serials, so that a large CRL can be read several ranges at once.
type RevokedQuery struct {
	IssuerID string
	// NotAfterFrom leaves out the certificates that expired before it.
	NotAfterFrom time.Time
	// After and UpTo bound the serials as stored, compared octet by octet: After < serial <= UpTo, with an empty
	// UpTo unbounded. Ranges ("", b1], (b1, b2], ... (bk, ""] with increasing bounds cover every serial once.
	After, UpTo string
}

// RevocationSigner is a delegated signing certificate for revocation data of one CA: the OCSP responder
// (purpose ocsp-signing) or the revocation-filter signer (purpose crl-signing).
type RevocationSigner struct {
	IssuerID  string
	Purpose   string
	KeyURI    string
	CertDER   []byte
	NotAfter  time.Time
	CreatedAt time.Time
}

// PublishedFilter is a signed revocation filter file (a full filter when BaseVersion is 0, else a delta
// from BaseVersion).
type PublishedFilter struct {
	Scope       string // "dev" or "dev/demo-implant"
	Version     int64
	BaseVersion int64
	IssuedAt    time.Time
	NextUpdate  time.Time
	Data        []byte
}

// RevocationTx is the revocation part of a transaction.
type RevocationTx interface {
	// Revoke revokes r.Serial. It fails with ErrNotFound for an unknown serial and ErrAlreadyRevoked if the
	// certificate is revoked already, unless it is on hold and r.Reason is a permanent reason.
	Revoke(ctx context.Context, r *Revocation) (*RevocationEntry, error)
	// Unhold releases a certificate on hold (ErrNotOnHold otherwise; ErrNotFound for an unknown serial).
	Unhold(ctx context.Context, serial string, at time.Time) (*RevocationEntry, error)
	// NextCRLNumber returns the next CRL number of issuerID: 1, 2, ... shared by its complete and delta CRLs
	// (RFC 5280 5.2.3 and 5.2.4).
	NextCRLNumber(ctx context.Context, issuerID string) (int64, error)
	// InsertCRL stores a published CRL and prunes all but the newest few of its kind for that issuer (their
	// chunks go with PruneCRLChunks). A CRL stored in chunks (Chunked) needs every chunk inserted first, in this
	// transaction or an earlier one; a chunk missing or of the wrong size fails it.
	InsertCRL(ctx context.Context, c *PublishedCRL) error
	// InsertCRLChunk stores octets [seq*CRLChunkSize, seq*CRLChunkSize+len(data)) of the DER of CRL number of
	// issuerID (a complete CRL, or a delta one) before InsertCRL stores the CRL itself; every chunk but the last
	// is CRLChunkSize long.
	InsertCRLChunk(ctx context.Context, issuerID string, delta bool, number int64, seq int, data []byte) error
	// PruneCRLChunks deletes up to limit chunks of issuerID's CRLs of that kind that are no longer stored (those
	// InsertCRL pruned, and those of publications that failed before storing their CRL: every chunk numbered
	// below the oldest CRL stored), and returns how many it deleted. Chunks being written for a CRL not stored
	// yet are numbered above every stored one, so they stay.
	PruneCRLChunks(ctx context.Context, issuerID string, delta bool, limit int) (int, error)
	// InsertRevocationSigner stores a delegated signer (ErrExists for a duplicate key URI).
	InsertRevocationSigner(ctx context.Context, s *RevocationSigner) error
	// NextFilterVersion returns the next version number of the filters of scope.
	NextFilterVersion(ctx context.Context, scope string) (int64, error)
	// InsertFilter stores a published filter (ErrExists for a duplicate scope, version and base).
	InsertFilter(ctx context.Context, f *PublishedFilter) error
}

// RevocationStore is the revocation part of a Store.
type RevocationStore interface {
	// WalkCertStatus calls fn for every certificate matching q, in serial order, reading in pages so that no
	// query stays open while fn runs; it stops at fn's first error and returns it unwrapped.
	WalkCertStatus(ctx context.Context, q CertQuery, fn func(*CertStatus) error) error
	// CountCertificates counts the certificates matching q.
	CountCertificates(ctx context.Context, q CertQuery) (int64, error)
	// WalkRevoked calls fn for every revoked certificate that q selects, in serial order (octet by octet). fn
	// must not keep the entry: the walk reuses it.
	WalkRevoked(ctx context.Context, q RevokedQuery, fn func(*RevocationEntry) error) error
	// RevokedSerialRange returns the lowest and highest serial of the revoked certificates of issuerID, expired
	// ones included ("" and "" if there are none): where to split a walk into ranges.
	RevokedSerialRange(ctx context.Context, issuerID string) (first, last string, err error)
	// WalkRevocationChanges calls fn for every certificate of issuerID whose revocation state changed after
	// sequence number afterSeq (revoked, or released from hold), in Seq order.
	WalkRevocationChanges(ctx context.Context, issuerID string, afterSeq int64, fn func(*RevocationEntry) error) error
	// RevocationHead returns the sequence number of the newest committed revocation change (0 if none).
	RevocationHead(ctx context.Context) (int64, error)
	// LatestCRL returns the newest complete (delta false) or delta CRL of issuerID (ErrNotFound if none).
	LatestCRL(ctx context.Context, issuerID string, delta bool) (*PublishedCRL, error)
	// ReadCRLChunk returns chunk seq of a CRL stored in chunks (ErrNotFound if there is none, as when the CRL
	// was pruned after newer ones replaced it).
	ReadCRLChunk(ctx context.Context, issuerID string, delta bool, number int64, seq int) ([]byte, error)
	// LatestRevocationSigner returns the newest delegated signer of issuerID for purpose (ErrNotFound if none).
	LatestRevocationSigner(ctx context.Context, issuerID, purpose string) (*RevocationSigner, error)
	// GetFilter returns the filter of scope with that version and base version (ErrNotFound if none).
	GetFilter(ctx context.Context, scope string, version, baseVersion int64) (*PublishedFilter, error)
	// LatestFilter returns the newest full filter of scope (ErrNotFound if none).
	LatestFilter(ctx context.Context, scope string) (*PublishedFilter, error)
}
