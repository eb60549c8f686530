// Package sqlrecord is the one description of how Keyward's store records (CAs, keys, certificates, audit
// events, stations, devices, revocation entries, firmware and factory rows) map to SQL, shared by the SQLite and
// PostgreSQL backends: each record's column list, how a scanned row becomes the record and how the record
// becomes statement arguments, in the same column order, and the statements whose text both dialects accept.
// A backend supplies a Dialect for the values the two represent differently (times and booleans), runs the
// statements itself and maps its driver's errors.
//
// Adding a table means: its DDL in each backend's migrations; its columns, Scan and Args functions and shared
// statements here; and in each backend only what the dialects do not share (PostgreSQL's ON CONFLICT on inserts
// that must not abort its transaction, FOR UPDATE on locking reads, SQLite's index hints).
//
// It may import the standard library, internal/store and internal/audit. It must never open a connection, run
// a statement or import a driver: what is particular to SQLite or PostgreSQL stays in that backend. It uses no
// reflection, so that scanning a row costs what the hand-written scans it replaced did.
package sqlrecord
