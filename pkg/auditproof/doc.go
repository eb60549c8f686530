// Package auditproof checks Keyward's audit log from outside, with no database: signed checkpoints in the
// C2SP tlog-checkpoint format (a signed note, golang.org/x/mod/sumdb/note, Ed25519), inclusion proofs of one
// audit event and consistency proofs between two checkpoints, all with RFC 9162 Merkle tree hashing
// (github.com/transparency-dev/merkle).
//
// It also owns the canonical encoding of an audit event (EncodeEvent): the bytes that are both the leaf of the
// Merkle tree and the input of the event's chained hash, so the server and an inspector hash the same thing.
//
// It may import the standard library, github.com/transparency-dev/merkle and golang.org/x/mod/sumdb/note. It
// must never import internal/ (its import test enforces it): inspectors and device tooling embed it.
package auditproof
