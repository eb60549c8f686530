package filter

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
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
)

// Filter is a verified revocation filter, possibly with a delta applied. It is safe for concurrent lookups.
type Filter struct {
	h      header
	l1     *fuse // nil when k = 0: every serial passes level 1
	l2     *fuse
	delta  map[string]bool // corrections from an applied delta; nil for a full filter alone
	digest [32]byte        // SHA-256 of the full filter file
	dh     *header         // the applied delta's header, if any
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
