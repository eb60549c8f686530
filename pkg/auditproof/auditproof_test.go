package auditproof_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"

	"github.com/keyward/keyward/pkg/auditproof"
)

// fixture is a log of n events in a reference tree (the merkle module's testonly.Tree), a signer and its key.
type fixture struct {
	events []*auditproof.Event
	tree   *testonly.Tree
	origin string
	vkey   string
	signer *auditproof.Signer
}

func newFixture(t testing.TB, n int) *fixture {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{tree: testonly.New(rfc6962.DefaultHasher), origin: "keyward.test/log"}
	if f.vkey, err = auditproof.VerifierKey(f.origin, pub); err != nil {
		t.Fatal(err)
	}
	f.signer, err = auditproof.NewSigner(f.origin, pub, func(msg []byte) ([]byte, error) { return ed25519.Sign(priv, msg), nil })
	if err != nil {
		t.Fatal(err)
	}
	prev := make([]byte, 32)
	for i := 1; i <= n; i++ {
		e := &auditproof.Event{Seq: int64(i), Time: time.Unix(1700000000+int64(i), 1000).UTC(), Actor: "admin", Action: "cert.issue",
			Subject: fmt.Sprint(i), Outcome: "success", Details: map[string]string{"n": fmt.Sprint(i)}, PrevHash: prev}
		e.Hash = auditproof.ChainHash(e)
		prev = e.Hash
		f.events = append(f.events, e)
		f.tree.AppendData(auditproof.EncodeEvent(e))
	}
	return f
}

func (f *fixture) checkpoint(t testing.TB, size uint64) ([]byte, auditproof.Checkpoint) {
	t.Helper()
	c := auditproof.Checkpoint{Origin: f.origin, Size: size, Root: f.tree.HashAt(size)}
	note, err := auditproof.Sign(c, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	return note, c
}

func (f *fixture) inclusion(t testing.TB, seq int64, size uint64) []byte {
	t.Helper()
	hashes, err := f.tree.InclusionProof(uint64(seq-1), size)
	if err != nil {
		t.Fatal(err)
	}
	note, _ := f.checkpoint(t, size)
	b, err := json.Marshal(&auditproof.InclusionProof{Format: auditproof.InclusionFormat, Origin: f.origin, TreeSize: size,
		Index: uint64(seq - 1), Event: *f.events[seq-1], Hashes: hashes, Checkpoint: string(note)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInclusionAndConsistency(t *testing.T) {
	f := newFixture(t, 37)
	for _, size := range []uint64{1, 2, 7, 8, 9, 37} {
		note, want := f.checkpoint(t, size)
		c, err := auditproof.Open(note, f.vkey)
		if err != nil || c.Size != size || string(c.Root) != string(want.Root) {
			t.Fatalf("Open checkpoint %d: %+v, %v", size, c, err)
		}
		for seq := int64(1); seq <= int64(size); seq++ {
			p, err := auditproof.ParseInclusionProof(f.inclusion(t, seq, size))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Verify(c); err != nil {
				t.Fatalf("event %d in %d: %v", seq, size, err)
			}
		}
		for _, older := range []uint64{0, 1, 3, size} {
			if older > size {
				continue
			}
			hashes, err := f.tree.ConsistencyProof(older, size)
			if err != nil {
				t.Fatal(err)
			}
			old := auditproof.Checkpoint{Origin: f.origin, Size: older, Root: f.tree.HashAt(older)}
			if err := auditproof.VerifyConsistency(old, c, hashes); err != nil {
				t.Fatalf("consistency %d -> %d: %v", older, size, err)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t, 9)
	other := newFixture(t, 9)
	note, c := f.checkpoint(t, 9)
	p, err := auditproof.ParseInclusionProof(f.inclusion(t, 4, 9))
	if err != nil {
		t.Fatal(err)
	}
	altered := *p
	altered.Event.Actor = "mallory"
	if err := altered.Verify(c); !errors.Is(err, auditproof.ErrMismatch) {
		t.Errorf("altered event: %v", err)
	}
	rehashed := *p
	rehashed.Event.Actor = "mallory"
	rehashed.Event.Hash = auditproof.ChainHash(&rehashed.Event)
	if err := rehashed.Verify(c); !errors.Is(err, auditproof.ErrMismatch) {
		t.Errorf("altered and rehashed event: %v", err)
	}
	if _, err := auditproof.Open(note, other.vkey); !errors.Is(err, auditproof.ErrSignature) {
		t.Errorf("another key of the same origin: %v", err)
	}
	renamed, _ := auditproof.VerifierKey("keyward.test/other", ed25519.PublicKey(make([]byte, 32)))
	if _, err := auditproof.Open(note, renamed); !errors.Is(err, auditproof.ErrOrigin) {
		t.Errorf("another log: %v", err)
	}
	if _, err := auditproof.Open(note[:len(note)-10], f.vkey); err == nil {
		t.Error("truncated checkpoint accepted")
	}
	_, older := f.checkpoint(t, 5)
	if err := auditproof.VerifyConsistency(c, older, nil); !errors.Is(err, auditproof.ErrMismatch) {
		t.Errorf("a smaller tree after a larger one: %v", err)
	}
	_, small := f.checkpoint(t, 8)
	if err := p.Verify(small); !errors.Is(err, auditproof.ErrMismatch) {
		t.Errorf("proof for 9 against a checkpoint of 8: %v", err)
	}
	good := f.inclusion(t, 4, 9)
	for name, b := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"empty":     nil,
		"trailing":  append(append([]byte(nil), good...), "{}"...),
		"index":     []byte(`{"format":"keyward-audit-inclusion/1","origin":"o","tree_size":3,"leaf_index":3,"event":{"seq":4},"hashes":[]}`),
		"seq":       []byte(`{"format":"keyward-audit-inclusion/1","origin":"o","tree_size":9,"leaf_index":3,"event":{"seq":5},"hashes":[]}`),
		"hash":      []byte(`{"format":"keyward-audit-inclusion/1","origin":"o","tree_size":9,"leaf_index":3,"event":{"seq":4},"hashes":["AAAA"]}`),
		"format":    []byte(`{"format":"x","origin":"o","tree_size":9,"leaf_index":3,"event":{"seq":4},"hashes":[]}`),
	} {
		if _, err := auditproof.ParseInclusionProof(b); !errors.Is(err, auditproof.ErrMalformed) {
			t.Errorf("%s proof: %v, want ErrMalformed", name, err)
		}
	}
}

// TestMatchesProofPackage: the proof package the server uses and the reference tree agree on roots.
func TestMatchesProofPackage(t *testing.T) {
	f := newFixture(t, 5)
	h, _ := f.tree.InclusionProof(2, 5)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 2, 5, auditproof.LeafHash(f.events[2]), h, f.tree.HashAt(5)); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseInclusionProof(f *testing.F) {
	fx := newFixture(f, 9)
	_, c := fx.checkpoint(f, 9)
	f.Add(fx.inclusion(f, 4, 9))
	f.Add([]byte(`{"format":"keyward-audit-inclusion/1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := auditproof.ParseInclusionProof(b)
		if err != nil {
			if !errors.Is(err, auditproof.ErrMalformed) {
				t.Fatalf("parse error not ErrMalformed: %v", err)
			}
			return
		}
		_ = p.Verify(c) // must not panic
	})
}

func FuzzOpenCheckpoint(f *testing.F) {
	fx := newFixture(f, 3)
	note, _ := fx.checkpoint(f, 3)
	f.Add(note)
	f.Add([]byte("keyward.test/log\n3\nAAAA\n\n— keyward.test/log AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := auditproof.Open(b, fx.vkey)
		if err == nil && (c.Origin != fx.origin || len(c.Root) != 32) {
			t.Fatalf("opened %+v", c)
		}
		if body, err := auditproof.ParseBody(b); err == nil && len(body.Root) != 32 {
			t.Fatalf("ParseBody gave a root of %d bytes", len(body.Root))
		}
	})
}
