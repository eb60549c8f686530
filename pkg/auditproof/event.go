package auditproof

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
)

// Event is one audit event as the log records it, with the JSON names of Keyward's API.
type Event struct {
	Seq      int64             `json:"seq"`
	Time     time.Time         `json:"time"`
	Actor    string            `json:"actor"`
	Action   string            `json:"action"`
	Subject  string            `json:"subject"`
	Outcome  string            `json:"outcome"`
	Details  map[string]string `json:"details,omitempty"`
	PrevHash []byte            `json:"prev_hash"`
	Hash     []byte            `json:"hash"`
}

// encodingVersion is the first field of every encoding, so that a future encoding cannot be confused with
// this one.
const encodingVersion = "keyward-audit-v1"

// EncodeEvent returns the canonical encoding of e: the version, PrevHash, Seq, Time (UTC nanoseconds),
// Actor, Action, Subject, Outcome, the number of details and the details sorted by key, each field
// length-prefixed (8 bytes, big-endian) so that no two distinct events encode alike. Hash is not encoded.
// These bytes are the event's leaf in the Merkle tree and the input of its chained hash.
func EncodeEvent(e *Event) []byte {
	n := 12 * 8
	n += len(encodingVersion) + len(e.PrevHash) + 16 + len(e.Actor) + len(e.Action) + len(e.Subject) + len(e.Outcome)
	keys := make([]string, 0, len(e.Details))
	for k, v := range e.Details {
		keys = append(keys, k)
		n += 16 + len(k) + len(v)
	}
	sort.Strings(keys)
	b := make([]byte, 0, n)
	field := func(p []byte) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
		b = append(b, p...)
	}
	str := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	u64 := func(v uint64) {
		b = binary.BigEndian.AppendUint64(b, 8)
		b = binary.BigEndian.AppendUint64(b, v)
	}
	str(encodingVersion)
	field(e.PrevHash)
	u64(uint64(e.Seq))
	u64(uint64(e.Time.UTC().UnixNano()))
	str(e.Actor)
	str(e.Action)
	str(e.Subject)
	str(e.Outcome)
	u64(uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(e.Details[k])
	}
	return b
}

// ChainHash returns the SHA-256 of EncodeEvent(e): the hash that links e to the next event (its PrevHash).
func ChainHash(e *Event) []byte {
	sum := sha256.Sum256(EncodeEvent(e))
	return sum[:]
}

// LeafHash returns the RFC 9162 section 2.1.1 leaf hash of e: SHA-256(0x00 || EncodeEvent(e)). Event number
// Seq is the leaf at index Seq-1.
func LeafHash(e *Event) []byte {
	return rfc6962.DefaultHasher.HashLeaf(EncodeEvent(e))
}
