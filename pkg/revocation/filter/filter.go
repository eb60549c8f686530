package filter

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// maxSerialLen is the longest serial number a filter covers: RFC 5280 4.1.2.2 allows 20 octets.
const maxSerialLen = 20

// Errors a caller can tell apart with errors.Is.
var (
	// ErrMalformed: the file is truncated, has trailing data, or breaks the format.
	ErrMalformed = errors.New("malformed revocation filter")
	// ErrSignature: the signer chain does not verify to the trust anchors, the signer is not authorised to
	// sign filters, or the signature is wrong.
	ErrSignature = errors.New("revocation filter signature invalid")
	// ErrExpired: the current time is at or after the filter's next update (or before its issuance).
	ErrExpired = errors.New("revocation filter is not fresh")
	// ErrEnvironment: the filter belongs to another environment or scope than the caller expects.
	ErrEnvironment = errors.New("revocation filter is for another environment")
	// ErrBase: a delta does not apply to the given base filter.
	ErrBase = errors.New("revocation filter delta does not match its base")
	// ErrCertificateRevoked: CheckChain found the leaf certificate's serial revoked.
	ErrCertificateRevoked = errors.New("certificate revoked")
	// ErrIssuerRevoked: CheckChain found a certificate of the chain carrying the key of a revoked CA, so the
	// whole subtree under that CA is refused; or a filter's signer chain passes through a revoked CA.
	ErrIssuerRevoked = errors.New("issuer revoked")
)

// Filter is a verified revocation filter, possibly with a delta applied. It is safe for concurrent lookups.
type Filter struct {
	h       header
	issuers [][32]byte // revoked issuers, SHA-256 of SPKI, sorted: the base's, or the applied delta's
	l1      *fuse      // nil when k = 0: every serial passes level 1
	l2      *fuse
	delta   map[string]bool // corrections from an applied delta; nil for a full filter alone
	digest  [32]byte        // SHA-256 of the full filter file
	dh      *header         // the applied delta's header, if any
}

// Environment is the environment the filter belongs to ("dev", "staging", "production").
func (f *Filter) Environment() string { return f.h.env }

// Scope is the product line the filter covers, or "" for the whole environment.
func (f *Filter) Scope() string { return f.h.scope }

// Version is the filter's version; with a delta applied, the delta's version.
func (f *Filter) Version() uint64 {
	if f.dh != nil {
		return f.dh.version
	}
	return f.h.version
}

// BaseVersion is the version of the full filter (equal to Version unless a delta is applied).
func (f *Filter) BaseVersion() uint64 { return f.h.version }

// IssuedAt is when the registry snapshot behind the filter (or its applied delta) was taken.
func (f *Filter) IssuedAt() time.Time {
	if f.dh != nil {
		return f.dh.issuedAt
	}
	return f.h.issuedAt
}

// NextUpdate is when the filter (or its applied delta) stops being fresh.
func (f *Filter) NextUpdate() time.Time {
	if f.dh != nil {
		return f.dh.nextUpdate
	}
	return f.h.nextUpdate
}

// Certificates is the number of certificates the full filter covers, and RevokedCount the number revoked.
func (f *Filter) Certificates() uint64 { return f.h.certs }

// RevokedCount is the number of revoked certificates in the full filter.
func (f *Filter) RevokedCount() uint64 { return f.h.revoked }

// Digest is the SHA-256 of the full filter file; a delta names its base by it.
func (f *Filter) Digest() [32]byte { return f.digest }

// FormatVersion is the file format of the full filter: 1 for files made before revoked issuers were listed
// (they list none), 2 since.
func (f *Filter) FormatVersion() int { return int(f.h.format) }

// IssuerRevoked reports whether the CA key whose SubjectPublicKeyInfo (the DER of the whole structure, as in
// x509.Certificate.RawSubjectPublicKeyInfo) has this SHA-256 is revoked: every certificate under a CA with
// that key is to be refused. With a delta applied, the delta's list is the answer.
func (f *Filter) IssuerRevoked(spkiSHA256 [32]byte) bool {
	_, ok := slices.BinarySearchFunc(f.issuers, spkiSHA256, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// RevokedIssuers returns the SHA-256 digests of the SubjectPublicKeyInfo of every revoked CA the filter
// lists, in increasing byte order (a copy). A root is never listed.
func (f *Filter) RevokedIssuers() [][32]byte { return slices.Clone(f.issuers) }

// RevokedError is the error CheckChain returns: which certificate of the chain is refused, and why. It
// matches ErrCertificateRevoked or ErrIssuerRevoked with errors.Is.
type RevokedError struct {
	// Err is ErrCertificateRevoked (the leaf's serial is revoked) or ErrIssuerRevoked (Certificate carries
	// the key of a revoked CA).
	Err error
	// Index is Certificate's position in the chain: 0 is the leaf.
	Index int
	// Certificate is the refused certificate.
	Certificate *x509.Certificate
	// SPKISHA256 is the listed key's digest, for ErrIssuerRevoked.
	SPKISHA256 [32]byte
	scope      string
	version    uint64
}

func (e *RevokedError) Error() string {
	by := fmt.Sprintf("revocation filter %s v%d", strings.TrimSuffix(e.scope, "/"), e.version)
	c := e.Certificate
	switch {
	case c == nil:
		return fmt.Sprintf("%v (%s)", e.Err, by)
	case !errors.Is(e.Err, ErrIssuerRevoked):
		return fmt.Sprintf("%v: %s (serial %x) is revoked (%s)", e.Err, certName(c), c.SerialNumber, by)
	case e.Index == 0 && !c.IsCA:
		return fmt.Sprintf("%v: %s carries the key of a revoked CA (key SHA-256 %x...) (%s)", e.Err, certName(c), e.SPKISHA256[:4], by)
	default:
		return fmt.Sprintf("%v: CA %s (chain position %d, key SHA-256 %x...) is revoked: every certificate under it is refused (%s)",
			e.Err, certName(c), e.Index, e.SPKISHA256[:4], by)
	}
}

// Unwrap returns Err.
func (e *RevokedError) Unwrap() error { return e.Err }

// CheckChain checks a chain that the caller has already verified (leaf first, trust anchor last, as
// x509.Certificate.Verify returns them) against the filter. It returns a *RevokedError matching
// ErrIssuerRevoked if any certificate of the chain carries a key the filter lists as a revoked issuer (the
// one nearest the anchor is reported: it revokes the widest subtree), else one matching
// ErrCertificateRevoked if the leaf's serial is revoked, else nil.
//
// Every certificate's key is checked, the leaf's and the anchor's too: a leaf that is itself a CA
// certificate (or any certificate carrying a revoked CA's key) is refused, and a verifier that pins an
// intermediate such as its issuing CA as the anchor still learns that CA is revoked. A root is never listed:
// roots are replaced by rollover, not revoked, and the filter itself is signed under the root.
//
// The leaf's serial is looked up only when the leaf is not a CA certificate and not the anchor: the serial
// set is exact only for the certificates the filter's CAs issued (see Revoked), and CA certificates are
// issued by roots, which no filter covers; a CA is revoked through the issuer list.
func (f *Filter) CheckChain(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("check chain against revocation filter: the chain is empty")
	}
	if len(f.issuers) > 0 {
		for i := len(chain) - 1; i >= 0; i-- {
			if h := sha256.Sum256(chain[i].RawSubjectPublicKeyInfo); f.IssuerRevoked(h) {
				return &RevokedError{Err: ErrIssuerRevoked, Index: i, Certificate: chain[i], SPKISHA256: h, scope: f.h.env + "/" + f.h.scope, version: f.Version()}
			}
		}
	}
	if leaf := chain[0]; len(chain) > 1 && !leaf.IsCA && f.Revoked(leaf.SerialNumber) {
		return &RevokedError{Err: ErrCertificateRevoked, Certificate: leaf, scope: f.h.env + "/" + f.h.scope, version: f.Version()}
	}
	return nil
}

// listed reports whether k is in ks (any order).
func listed(ks [][32]byte, k [32]byte) bool {
	for i := range ks {
		if ks[i] == k {
			return true
		}
	}
	return false
}

// certName names a certificate in a message: its subject's common name, or the whole subject.
func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return fmt.Sprintf("%q", c.Subject.CommonName)
	}
	return fmt.Sprintf("%q", c.Subject.String())
}

// Revoked reports whether the certificate with this serial number is revoked. It is exact for every
// certificate the CA had issued when the filter was built; see the package documentation.
func (f *Filter) Revoked(serial *big.Int) bool {
	if serial == nil || serial.Sign() <= 0 {
		return false
	}
	var buf [maxSerialLen + 1]byte
	if serial.BitLen() > 8*len(buf) {
		return false
	}
	b := serial.FillBytes(buf[:])
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return f.RevokedBytes(b)
}

// RevokedBytes is Revoked for a serial number given as its big-endian magnitude without leading zero octets
// (big.Int.Bytes, or the content of the DER INTEGER without a leading 0x00 sign octet).
func (f *Filter) RevokedBytes(serial []byte) bool {
	if len(serial) == 0 || len(serial) > maxSerialLen {
		return false
	}
	if f.delta != nil {
		if v, ok := f.delta[string(serial)]; ok {
			return v
		}
	}
	return f.baseRevoked(serial)
}

func (f *Filter) baseRevoked(serial []byte) bool {
	if f.l1 != nil {
		d := keyHash(&f.l1.seed, serial)
		if f.l1.eval(&d) != fingerprint(&d, f.l1.width) {
			return false
		}
	} else if f.h.revoked == 0 {
		return false
	}
	d := keyHash(&f.l2.seed, serial)
	return f.l2.eval(&d) == 1
}

// SizeBits is the size of the full filter's two tables in bits, and BoundBits the information-theoretic
// lower bound r(log2(N/r) + 1.44) for the same N and r, which the Keyward targets compare against.
func (f *Filter) SizeBits() int {
	n := 0
	if f.l1 != nil {
		n += int(f.l1.arrayLen) * int(f.l1.width)
	}
	return n + int(f.l2.arrayLen)
}

// BoundBits returns r(log2(N/r) + 1.44), the bits any exact structure needs to tell r revoked certificates
// from N-r others (log2 of (N choose r), approximated for r much smaller than N).
func BoundBits(n, r uint64) float64 {
	if r == 0 || n == 0 {
		return 0
	}
	return float64(r) * (log2(float64(n)/float64(r)) + 1.44)
}

func fileDigest(data []byte) [32]byte { return sha256.Sum256(data) }

func wrapf(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))
}
