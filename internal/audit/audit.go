package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/auditproof"
)

// Outcomes of an audited action.
const (
	OutcomeSuccess = "success"
	OutcomeRefused = "refused"
)

// Event is one audit record. Details must never hold a secret: no key material, passphrase, PIN or token. It is
// the public package's type, so that the event an inspector checks is the one the store keeps.
type Event = auditproof.Event

// GenesisHash is the PrevHash of the first event.
var GenesisHash = make([]byte, sha256.Size)

// ComputeHash returns the chained hash of e: the SHA-256 of its canonical encoding (auditproof.EncodeEvent),
// which covers e.PrevHash, Seq, Time (UTC, nanoseconds), Actor, Action, Subject, Outcome and the details sorted
// by key, each length-prefixed so that no two distinct events encode alike.
func ComputeHash(e *Event) []byte { return auditproof.ChainHash(e) }

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

// ErrStateMismatch reports a table whose rows disagree with the state the log recorded.
var ErrStateMismatch = errors.New("store disagrees with the audit log")

// Verifier checks a stream of events in sequence order: each event's chained hash and, as it goes, the Merkle
// tree of the events (Tree), whose root at any size it can report.
type Verifier struct {
	prevSeq  int64
	prevHash []byte
	count    int64
	tree     *Tree
	builder  *ProofBuilder
}

// NewVerifier returns a verifier expecting the chain from its first event.
func NewVerifier() *Verifier { return &Verifier{prevHash: GenesisHash, tree: NewTree()} }

// NewVerifierWith returns a verifier that appends the events to b's tree, so that b gathers its proofs in the
// same pass.
func NewVerifierWith(b *ProofBuilder) *Verifier {
	return &Verifier{prevHash: GenesisHash, tree: b.tree, builder: b}
}

// NewVerifierAfter returns a verifier expecting the chain to go on after event seq, whose hash is hash (from an
// earlier verification that reached it). It checks the links of what follows, not what precedes, and keeps no
// Merkle tree: Tree is nil.
func NewVerifierAfter(seq int64, hash []byte) *Verifier {
	return &Verifier{prevSeq: seq, prevHash: bytes.Clone(hash)}
}

// Next checks e against the chain so far and appends it to the tree. The error names the first bad event and
// what is wrong with it.
func (v *Verifier) Next(e *Event) error {
	enc := auditproof.EncodeEvent(e)
	sum := sha256.Sum256(enc)
	switch {
	case e.Seq != v.prevSeq+1:
		return fmt.Errorf("%w at event %d: expected sequence %d (an event was removed or reordered)", ErrChainBroken, e.Seq, v.prevSeq+1)
	case !bytes.Equal(e.PrevHash, v.prevHash):
		return fmt.Errorf("%w at event %d: previous-hash link does not match event %d (an event was removed, reordered or altered)", ErrChainBroken, e.Seq, v.prevSeq)
	case !bytes.Equal(sum[:], e.Hash):
		return fmt.Errorf("%w at event %d: content does not match its hash (the event was altered)", ErrChainBroken, e.Seq)
	}
	switch {
	case v.builder != nil:
		v.builder.appendEncoded(enc)
	case v.tree != nil:
		v.tree.AppendEncoded(enc)
	}
	v.prevSeq, v.prevHash = e.Seq, e.Hash
	v.count++
	return nil
}

// Count is the number of events verified so far.
func (v *Verifier) Count() int64 { return v.count }

// Last is the sequence number and hash of the last verified event (of the event the verifier was started
// after, if none yet).
func (v *Verifier) Last() (int64, []byte) { return v.prevSeq, bytes.Clone(v.prevHash) }

// Head is the hash of the last verified event, hex encoded.
func (v *Verifier) Head() string { return hex.EncodeToString(v.prevHash) }

// Tree is the Merkle tree of the events verified so far.
func (v *Verifier) Tree() *Tree { return v.tree }

// DetailsJSON encodes details for storage.
func DetailsJSON(d map[string]string) ([]byte, error) {
	if d == nil {
		d = map[string]string{}
	}
	return json.Marshal(d)
}
