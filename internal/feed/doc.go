// Package feed is Keyward's change feed: it tells the caches of a running process (the CA custodian's signers,
// the station and token caches, the revocation publisher) about every change committed to the store, by this
// process or by any other sharing the database (another node on PostgreSQL, a CLI command beside a server on
// SQLite), so that a destroyed key stops signing and a suspended station stops enrolling everywhere within
// moments, without a restart.
//
// The feed needs no table of its own: every change appends exactly one audit event in the transaction that makes
// it, so the audit trail's sequence is the sequence of changes in commit order. The feed keeps a cursor in that
// sequence, waits for the store's Watch signal (PostgreSQL LISTEN/NOTIFY with a polling fallback, SQLite PRAGMA
// data_version polling) or a local Poke, reads the new changes with store.Reader.WalkChanges (sequence, action and
// subject only) and hands each subscriber the ones it asked for, in order.
//
// It may import internal/store. It must never change the store, and a subscriber must never do slow work on
// the feed's goroutine: it invalidates a cache or kicks a worker.
package feed
