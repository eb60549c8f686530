package audit

import (
	"crypto/sha256"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/keyward/keyward/pkg/auditproof"
)

// Tree is the RFC 9162 Merkle tree of the audit log, event n at leaf n-1, held as a compact range
// (github.com/transparency-dev/merkle/compact): at most log2(size) hashes, so its root at any size costs no
// more than the events appended since a saved frontier.
type Tree struct {
	r *compact.Range
}

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{r: rangeFactory.NewEmptyRange(0)} }

// ResumeTree returns the tree of size leaves whose compact range is frontier (Frontier of that tree).
func ResumeTree(size uint64, frontier [][]byte) (*Tree, error) {
	for _, h := range frontier {
		if len(h) != sha256.Size {
			return nil, fmt.Errorf("audit tree frontier: a hash of %d bytes", len(h))
		}
	}
	r, err := rangeFactory.NewRange(0, size, frontier)
	if err != nil {
		return nil, fmt.Errorf("audit tree frontier of size %d: %w", size, err)
	}
	return &Tree{r: r}, nil
}

// Append adds event e as the next leaf.
func (t *Tree) Append(e *Event) { t.AppendEncoded(auditproof.EncodeEvent(e)) }

// AppendEncoded adds the next leaf given the event's canonical encoding.
func (t *Tree) AppendEncoded(enc []byte) { t.AppendLeafHash(rfc6962.DefaultHasher.HashLeaf(enc)) }

// AppendLeafHash adds the next leaf given its leaf hash.
func (t *Tree) AppendLeafHash(h []byte) {
	// Append fails only for a hash of the wrong length or a range that does not start at 0, neither of which
	// this type lets happen.
	if err := t.r.Append(h, nil); err != nil {
		panic(err)
	}
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.r.End() }

// Root returns the RFC 9162 root hash (the hash of the empty string for an empty tree).
func (t *Tree) Root() []byte {
	if t.r.End() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	root, err := t.r.GetRootHash(nil)
	if err != nil {
		panic(err) // only for an empty range, handled above
	}
	return root
}

// Frontier returns the hashes of the compact range, to save and resume the tree with ResumeTree.
func (t *Tree) Frontier() [][]byte {
	h := t.r.Hashes()
	out := make([][]byte, len(h))
	copy(out, h)
	return out
}
