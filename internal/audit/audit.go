package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Outcomes of an audited action.
const (
	OutcomeSuccess = "success"
	OutcomeRefused = "refused"
)

// Event is one audit record. Details must never hold a secret: no key material, passphrase, PIN or token.
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

// GenesisHash is the PrevHash of the first event.
var GenesisHash = make([]byte, sha256.Size)

// chainVersion is mixed into every hash so a future encoding change cannot be confused with this one.
const chainVersion = "keyward-audit-v1"

// ComputeHash returns the chained hash of e over its fields and e.PrevHash. Seq, Time (UTC, nanoseconds),
// Actor, Action, Subject, Outcome and the details sorted by key are each length-prefixed, so no two distinct
// events encode alike.
func ComputeHash(e *Event) []byte {
	var b bytes.Buffer
	writeField := func(p []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		b.Write(n[:])
		b.Write(p)
	}
	writeField([]byte(chainVersion))
	writeField(e.PrevHash)
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], uint64(e.Seq))
	writeField(seq[:])
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(e.Time.UTC().UnixNano()))
	writeField(ts[:])
	writeField([]byte(e.Actor))
	writeField([]byte(e.Action))
	writeField([]byte(e.Subject))
	writeField([]byte(e.Outcome))
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var cnt [8]byte
	binary.BigEndian.PutUint64(cnt[:], uint64(len(keys)))
	writeField(cnt[:])
	for _, k := range keys {
		writeField([]byte(k))
		writeField([]byte(e.Details[k]))
	}
	sum := sha256.Sum256(b.Bytes())
	return sum[:]
}

// Seal sets e.Seq, e.PrevHash and e.Hash so that e follows an event with sequence prevSeq and hash prevHash
// (GenesisHash and 0 for the first event). Time is truncated to microseconds, the precision both stores keep.
func Seal(e *Event, prevSeq int64, prevHash []byte) {
	e.Seq = prevSeq + 1
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	e.PrevHash = append([]byte(nil), prevHash...)
	e.Hash = ComputeHash(e)
}

// ErrChainBroken reports the first event at which verification failed.
var ErrChainBroken = errors.New("audit chain broken")

// Verifier checks a stream of events in sequence order.
type Verifier struct {
	prevSeq  int64
	prevHash []byte
	count    int64
}

// NewVerifier returns a verifier expecting the chain from its first event.
func NewVerifier() *Verifier { return &Verifier{prevHash: GenesisHash} }

// Next checks e against the chain so far. The error names the first bad event and what is wrong with it.
func (v *Verifier) Next(e *Event) error {
	switch {
	case e.Seq != v.prevSeq+1:
		return fmt.Errorf("%w at event %d: expected sequence %d (an event was removed or reordered)", ErrChainBroken, e.Seq, v.prevSeq+1)
	case !bytes.Equal(e.PrevHash, v.prevHash):
		return fmt.Errorf("%w at event %d: previous-hash link does not match event %d (an event was removed, reordered or altered)", ErrChainBroken, e.Seq, v.prevSeq)
	case !bytes.Equal(ComputeHash(e), e.Hash):
		return fmt.Errorf("%w at event %d: content does not match its hash (the event was altered)", ErrChainBroken, e.Seq)
	}
	v.prevSeq, v.prevHash = e.Seq, e.Hash
	v.count++
	return nil
}

// Count is the number of events verified so far.
func (v *Verifier) Count() int64 { return v.count }

// Head is the hash of the last verified event, hex encoded.
func (v *Verifier) Head() string { return hex.EncodeToString(v.prevHash) }

// DetailsJSON encodes details for storage.
func DetailsJSON(d map[string]string) ([]byte, error) {
	if d == nil {
		d = map[string]string{}
	}
	return json.Marshal(d)
}
