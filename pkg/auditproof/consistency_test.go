package auditproof_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/keyward/keyward/pkg/auditproof"
)

func (f *fixture) consistency(t testing.TB, older, newer uint64) []byte {
	t.Helper()
	hashes, err := f.tree.ConsistencyProof(older, newer)
	if err != nil {
		t.Fatal(err)
	}
	oldNote, _ := f.checkpoint(t, older)
	newNote, _ := f.checkpoint(t, newer)
	b, err := json.Marshal(&auditproof.ConsistencyProof{Format: auditproof.ConsistencyFormat, Origin: f.origin, OldSize: older, NewSize: newer,
		Hashes: hashes, OldCheckpoint: string(oldNote), NewCheckpoint: string(newNote)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConsistencyProofFile(t *testing.T) {
	f := newFixture(t, 21)
	other := newFixture(t, 21)
	for _, tc := range []struct{ older, newer uint64 }{{1, 21}, {5, 8}, {8, 21}, {13, 13}} {
		p, err := auditproof.ParseConsistencyProof(f.consistency(t, tc.older, tc.newer))
		if err != nil {
			t.Fatal(err)
		}
		o, n, err := p.Verify(f.vkey)
		if err != nil || o.Size != tc.older || n.Size != tc.newer {
			t.Fatalf("%d -> %d: %v (%d, %d)", tc.older, tc.newer, err, o.Size, n.Size)
		}
		if _, _, err := p.Verify(other.vkey); !errors.Is(err, auditproof.ErrSignature) {
			t.Fatalf("%d -> %d under another log's key: %v, want ErrSignature", tc.older, tc.newer, err)
		}
	}

	// A proof whose hashes were altered, or whose new checkpoint is of another tree, does not verify.
	p, _ := auditproof.ParseConsistencyProof(f.consistency(t, 5, 21))
	p.Hashes[0][0] ^= 1
	if _, _, err := p.Verify(f.vkey); !errors.Is(err, auditproof.ErrMismatch) {
		t.Fatalf("altered hash: %v, want ErrMismatch", err)
	}
	p, _ = auditproof.ParseConsistencyProof(f.consistency(t, 5, 21))
	newNote, _ := other.checkpoint(t, 21)
	p.NewCheckpoint = string(newNote)
	if _, _, err := p.Verify(f.vkey); !errors.Is(err, auditproof.ErrSignature) {
		t.Fatalf("another log's checkpoint: %v, want ErrSignature", err)
	}
	p, _ = auditproof.ParseConsistencyProof(f.consistency(t, 5, 21))
	p.NewSize = 20
	if _, _, err := p.Verify(f.vkey); !errors.Is(err, auditproof.ErrMismatch) {
		t.Fatalf("sizes that disagree with the checkpoints: %v, want ErrMismatch", err)
	}

	for name, b := range map[string]string{
		"format":   `{"format":"x","origin":"o","old_size":1,"new_size":2,"hashes":[],"old_checkpoint":"a","new_checkpoint":"b"}`,
		"order":    `{"format":"keyward-audit-consistency/1","origin":"o","old_size":3,"new_size":2,"hashes":[],"old_checkpoint":"a","new_checkpoint":"b"}`,
		"hash":     `{"format":"keyward-audit-consistency/1","origin":"o","old_size":1,"new_size":2,"hashes":["AAAA"],"old_checkpoint":"a","new_checkpoint":"b"}`,
		"unknown":  `{"format":"keyward-audit-consistency/1","extra":1}`,
		"checkpts": `{"format":"keyward-audit-consistency/1","origin":"o","old_size":1,"new_size":2,"hashes":[]}`,
	} {
		if _, err := auditproof.ParseConsistencyProof([]byte(b)); !errors.Is(err, auditproof.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzParseConsistencyProof(f *testing.F) {
	fx := newFixture(f, 9)
	f.Add(fx.consistency(f, 3, 9))
	f.Add([]byte(`{"format":"keyward-audit-consistency/1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := auditproof.ParseConsistencyProof(b)
		if err != nil {
			if !errors.Is(err, auditproof.ErrMalformed) {
				t.Fatalf("parse error not ErrMalformed: %v", err)
			}
			return
		}
		_, _, _ = p.Verify(fx.vkey) // must not panic
	})
}
