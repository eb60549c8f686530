// Package audit defines Keyward's tamper-evident audit trail: each event carries the SHA-256 hash of its
// canonical encoding chained to the previous event's hash, so altering, removing or reordering any stored
// event breaks every hash after it. Stores append events inside the transaction of the change they record.
//
// It may import only the standard library. It must never read or write a store: the store seals events
// (Seal) in the transaction of the change they record, and verifies a chain it walks (Verifier).
package audit
