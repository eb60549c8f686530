package audit

import (
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/keyward/keyward/pkg/auditproof"
)

// ProofBuilder gathers the node hashes of RFC 9162 inclusion and consistency proofs while the events are
// appended to a tree in order: ask for the proofs first (AddInclusion, AddConsistency), append every event up
// to the largest tree size asked for, then read each proof. The store keeps no interior nodes, so a proof
// costs one pass over the events up to its tree size.
type ProofBuilder struct {
	tree   *Tree
	nodes  []proof.Nodes
	hashes [][][]byte
	want   map[compact.NodeID][][2]int // proof number and position in its node list
}

// NewProofBuilder returns an empty builder.
func NewProofBuilder() *ProofBuilder {
	return &ProofBuilder{tree: NewTree(), want: map[compact.NodeID][][2]int{}}
}

func (b *ProofBuilder) add(n proof.Nodes) int {
	i := len(b.nodes)
	b.nodes = append(b.nodes, n)
	b.hashes = append(b.hashes, make([][]byte, len(n.IDs)))
	for j, id := range n.IDs {
		b.want[id] = append(b.want[id], [2]int{i, j})
	}
	return i
}

// AddInclusion asks for the inclusion proof of leaf index in the tree of size leaves and returns its number.
func (b *ProofBuilder) AddInclusion(index, size uint64) (int, error) {
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return 0, err
	}
	return b.add(n), nil
}

// AddConsistency asks for the consistency proof between the trees of size1 and size2 leaves.
func (b *ProofBuilder) AddConsistency(size1, size2 uint64) (int, error) {
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return 0, err
	}
	return b.add(n), nil
}

// Append adds the next event.
func (b *ProofBuilder) Append(e *Event) { b.appendEncoded(auditproof.EncodeEvent(e)) }

func (b *ProofBuilder) appendEncoded(enc []byte) {
	h := rfc6962.DefaultHasher.HashLeaf(enc)
	if err := b.tree.r.Append(h, b.visit); err != nil {
		panic(err) // see Tree.AppendLeafHash
	}
}

func (b *ProofBuilder) visit(id compact.NodeID, hash []byte) {
	for _, at := range b.want[id] {
		b.hashes[at[0]][at[1]] = hash
	}
}

// Tree is the tree built so far.
func (b *ProofBuilder) Tree() *Tree { return b.tree }

// Proof returns proof number i; every event of its tree must have been appended.
func (b *ProofBuilder) Proof(i int) ([][]byte, error) {
	h := make([][]byte, len(b.hashes[i]))
	for j, x := range b.hashes[i] {
		if x == nil {
			return nil, fmt.Errorf("audit proof: node %v not reached (the log is shorter than the proof's tree)", b.nodes[i].IDs[j])
		}
		h[j] = x
	}
	return b.nodes[i].Rehash(h, rfc6962.DefaultHasher.HashChildren)
}
