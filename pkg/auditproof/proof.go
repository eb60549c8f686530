package auditproof

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// InclusionFormat names the inclusion proof file format and its version.
const InclusionFormat = "keyward-audit-inclusion/1"

// maxProof bounds an inclusion proof read from outside: an event (whose details Keyward bounds) and at most 64
// hashes.
const maxProof = 1 << 20

// maxProofHashes is the most hashes an inclusion proof of a tree of at most 2^64 leaves holds (RFC 9162 2.1.3).
const maxProofHashes = 64

// InclusionProof proves that Event is leaf Event.Seq-1 of the log Origin at TreeSize (RFC 9162 section 2.1.3).
// Its JSON form is the proof file 'keyward audit prove' writes.
type InclusionProof struct {
	Format   string   `json:"format"`
	Origin   string   `json:"origin"`
	TreeSize uint64   `json:"tree_size"`
	Index    uint64   `json:"leaf_index"`
	Event    Event    `json:"event"`
	Hashes   [][]byte `json:"hashes"`
	// Checkpoint is the signed checkpoint of TreeSize (its note text), when the proof carries it; a verifier
	// still checks it with the log's key (Open).
	Checkpoint string `json:"checkpoint,omitempty"`
}

// ParseInclusionProof decodes a proof file and checks its shape: the format, an index inside the tree that
// matches the event's sequence number, and 32-byte hashes. Whether it proves anything is Verify's business.
func ParseInclusionProof(b []byte) (*InclusionProof, error) {
	if len(b) > maxProof {
		return nil, fmt.Errorf("inclusion proof: %w: %d bytes, at most %d", ErrMalformed, len(b), maxProof)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p InclusionProof
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("inclusion proof: %w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("inclusion proof: %w: data after the proof", ErrMalformed)
	}
	switch {
	case p.Format != InclusionFormat:
		return nil, fmt.Errorf("inclusion proof: %w: format %q, want %q", ErrMalformed, p.Format, InclusionFormat)
	case p.Origin == "":
		return nil, fmt.Errorf("inclusion proof: %w: no origin", ErrMalformed)
	case p.Index >= p.TreeSize:
		return nil, fmt.Errorf("inclusion proof: %w: leaf index %d is outside a tree of %d events", ErrMalformed, p.Index, p.TreeSize)
	case p.Event.Seq < 1 || uint64(p.Event.Seq) != p.Index+1:
		return nil, fmt.Errorf("inclusion proof: %w: event %d is not leaf %d (event n is leaf n-1)", ErrMalformed, p.Event.Seq, p.Index)
	case len(p.Hashes) > maxProofHashes:
		return nil, fmt.Errorf("inclusion proof: %w: %d hashes, at most %d", ErrMalformed, len(p.Hashes), maxProofHashes)
	}
	for i, h := range p.Hashes {
		if len(h) != sha256.Size {
			return nil, fmt.Errorf("inclusion proof: %w: hash %d is %d bytes, want %d", ErrMalformed, i, len(h), sha256.Size)
		}
	}
	return &p, nil
}

// Verify checks that p proves its event is in the tree of checkpoint c (already opened with Open): the same log,
// the same tree size, the event's own chained hash, and the RFC 9162 inclusion proof up to c's root.
func (p *InclusionProof) Verify(c Checkpoint) error {
	switch {
	case p.Origin != c.Origin:
		return fmt.Errorf("%w: the proof is for log %q, the checkpoint for %q", ErrOrigin, p.Origin, c.Origin)
	case p.TreeSize != c.Size:
		return fmt.Errorf("%w: the proof is for a tree of %d events, the checkpoint for %d: make the proof against this checkpoint ('keyward audit prove --checkpoint')", ErrMismatch, p.TreeSize, c.Size)
	case len(p.Event.Hash) > 0 && !bytes.Equal(ChainHash(&p.Event), p.Event.Hash):
		return fmt.Errorf("%w: event %d does not match its own hash (it was altered)", ErrMismatch, p.Event.Seq)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.Index, p.TreeSize, LeafHash(&p.Event), p.Hashes, c.Root); err != nil {
		return fmt.Errorf("%w: event %d is not in the tree of %d events: %v", ErrMismatch, p.Event.Seq, p.TreeSize, err)
	}
	return nil
}

// VerifyConsistency checks the RFC 9162 section 2.1.4 consistency proof that the tree of newer extends the tree
// of older: both of one log, newer no smaller.
func VerifyConsistency(older, newer Checkpoint, hashes [][]byte) error {
	switch {
	case older.Origin != newer.Origin:
		return fmt.Errorf("%w: %q and %q", ErrOrigin, older.Origin, newer.Origin)
	case newer.Size < older.Size:
		return fmt.Errorf("%w: the log has %d events, fewer than the %d of the checkpoint (it was truncated)", ErrMismatch, newer.Size, older.Size)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older.Size, newer.Size, hashes, older.Root, newer.Root); err != nil {
		return fmt.Errorf("%w: the log of %d events does not extend the checkpoint of %d events (an event up to %d was rewritten or removed): %v", ErrMismatch, newer.Size, older.Size, older.Size, err)
	}
	return nil
}
