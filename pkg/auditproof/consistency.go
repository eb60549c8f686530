package auditproof

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
)

// ConsistencyFormat names the consistency proof file format and its version.
const ConsistencyFormat = "keyward-audit-consistency/1"

// ConsistencyProof proves that the log's tree at the newer checkpoint extends its tree at the older one (RFC
// 9162 section 2.1.4): no event up to the older size was changed or removed in between. Its JSON form is the
// consistency proof file an evidence pack carries beside its checkpoint.
type ConsistencyProof struct {
	Format  string   `json:"format"`
	Origin  string   `json:"origin"`
	OldSize uint64   `json:"old_size"`
	NewSize uint64   `json:"new_size"`
	Hashes  [][]byte `json:"hashes"`
	// OldCheckpoint and NewCheckpoint are the two signed checkpoints (note text); a verifier opens both with
	// the log's key (Open) before it believes their sizes and roots.
	OldCheckpoint string `json:"old_checkpoint"`
	NewCheckpoint string `json:"new_checkpoint"`
}

// ParseConsistencyProof decodes a consistency proof file and checks its shape: the format, sizes in order, at
// most 64 hashes of 32 bytes, and both checkpoints present. Whether it proves anything is Verify's business.
func ParseConsistencyProof(b []byte) (*ConsistencyProof, error) {
	if len(b) > maxProof {
		return nil, fmt.Errorf("consistency proof: %w: %d bytes, at most %d", ErrMalformed, len(b), maxProof)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p ConsistencyProof
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("consistency proof: %w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("consistency proof: %w: data after the proof", ErrMalformed)
	}
	switch {
	case p.Format != ConsistencyFormat:
		return nil, fmt.Errorf("consistency proof: %w: format %q, want %q", ErrMalformed, p.Format, ConsistencyFormat)
	case p.Origin == "":
		return nil, fmt.Errorf("consistency proof: %w: no origin", ErrMalformed)
	case p.OldSize > p.NewSize:
		return nil, fmt.Errorf("consistency proof: %w: old size %d is larger than new size %d (a log only grows)", ErrMalformed, p.OldSize, p.NewSize)
	case len(p.Hashes) > maxProofHashes:
		return nil, fmt.Errorf("consistency proof: %w: %d hashes, at most %d", ErrMalformed, len(p.Hashes), maxProofHashes)
	case p.OldCheckpoint == "" || p.NewCheckpoint == "":
		return nil, fmt.Errorf("consistency proof: %w: both signed checkpoints are required", ErrMalformed)
	}
	for i, h := range p.Hashes {
		if len(h) != sha256.Size {
			return nil, fmt.Errorf("consistency proof: %w: hash %d is %d bytes, want %d", ErrMalformed, i, len(h), sha256.Size)
		}
	}
	return &p, nil
}

// Verify opens both checkpoints of p with the log's verifier key vkey and checks the proof between them. It
// returns the two checkpoints, older first.
func (p *ConsistencyProof) Verify(vkey string) (Checkpoint, Checkpoint, error) {
	older, err := Open([]byte(p.OldCheckpoint), vkey)
	if err != nil {
		return Checkpoint{}, Checkpoint{}, fmt.Errorf("the older checkpoint: %w", err)
	}
	newer, err := Open([]byte(p.NewCheckpoint), vkey)
	if err != nil {
		return Checkpoint{}, Checkpoint{}, fmt.Errorf("the newer checkpoint: %w", err)
	}
	switch {
	case older.Origin != p.Origin || newer.Origin != p.Origin:
		return older, newer, fmt.Errorf("%w: the proof is for log %q, its checkpoints for %q and %q", ErrOrigin, p.Origin, older.Origin, newer.Origin)
	case older.Size != p.OldSize || newer.Size != p.NewSize:
		return older, newer, fmt.Errorf("%w: the proof is from %d to %d events, its checkpoints are of %d and %d", ErrMismatch, p.OldSize, p.NewSize, older.Size, newer.Size)
	}
	if older.Size == newer.Size {
		// Two checkpoints of one size must name one tree (RFC 9162 2.1.4.2 proves nothing between equal sizes).
		if !bytes.Equal(older.Root, newer.Root) {
			return older, newer, fmt.Errorf("%w: two checkpoints of %d events with different roots: the log was rewritten", ErrMismatch, older.Size)
		}
		return older, newer, nil
	}
	return older, newer, VerifyConsistency(older, newer, p.Hashes)
}
