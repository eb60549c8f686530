package issuer

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/big"
	"time"
)

// SerialRandomBits is how many bits of a serial number come from crypto/rand: far above the 64 bits of CSPRNG
// output CA/B BR 7.1 asks for, so serials stay unguessable and unique without coordination between nodes.
const SerialRandomBits = 78

// maxSerialMillis is the largest issuance time a serial can carry: 48 bits of milliseconds since 1970, the
// year 10889.
const maxSerialMillis = 1<<48 - 1

// NewSerial returns a certificate serial number for a certificate issued at now, encoded in exactly 16 octets
// (RFC 5280 4.1.2.2: a positive integer of at most 20 octets):
//
//	bits 127..126  01                           the DER INTEGER needs no sign octet and is never shorter
//	bits 125..78   milliseconds since 1970 (48)
//	bits  77..0    crypto/rand (78)
//
// The time prefix makes serials ascend with issuance, so the store's serial-keyed indexes (the certificates'
// unique serial, the per-issuer status index, the audit subject index) grow at their right edge instead of
// dirtying a random page of each of those indexes, gigabytes deep in a store of millions, for every
// certificate. It reveals the issuance time to the millisecond, which notBefore already gives to the second. Serials
// made in the same millisecond, on one node or several, differ by their random bits; a clock set back only
// loses the ordering, never uniqueness.
func NewSerial(now time.Time) (*big.Int, error) {
	var b [16]byte
	if _, err := rand.Read(b[6:]); err != nil { // bits 79..0; bits 79 and 78 are overwritten below
		return nil, fmt.Errorf("random serial: %w", err)
	}
	ms := now.UnixMilli()
	if ms < 0 || ms > maxSerialMillis {
		return nil, fmt.Errorf("serial for %s: the issuance time must lie between 1970 and the year 10889", now.UTC().Format(time.RFC3339))
	}
	hi := uint64(1)<<62 | uint64(ms)<<14 | uint64(binary.BigEndian.Uint16(b[6:8]))&(1<<14-1)
	binary.BigEndian.PutUint64(b[:8], hi)
	return new(big.Int).SetBytes(b[:]), nil
}
