// Package audit defines Keyward's audit log: each event carries the SHA-256 hash of its canonical encoding
// (pkg/auditproof.EncodeEvent) chained to the previous event's hash, and the events are the leaves of an RFC
// 9162 Merkle tree (Tree, ProofBuilder) whose signed checkpoints expose a rewrite even when every chained hash
// was recomputed. Successful events also record the state they change (StateDetail), which Replay recomputes.
// Stores append events inside the transaction of the change they record.
//
// It may import the standard library, pkg/auditproof and github.com/transparency-dev/merkle. It must never read
// or write a store, and never hold a key: the store seals events (Seal) in the transaction of the change they
// record, the registration authority signs checkpoints through the custodian.
package audit
