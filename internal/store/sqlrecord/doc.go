// Package sqlrecord is the one description of how Keyward's store records (CAs, keys, certificates, audit
// events, stations, devices, revocation entries, firmware and factory rows) map to SQL rows, shared by the
// SQLite and PostgreSQL backends: each record's column list, how a scanned row becomes the record and how the
// record becomes statement arguments, in the same column order. A backend supplies a Dialect for the values
// the two represent differently (times and booleans) and runs the statements itself.
//
// Adding a table means: its columns, Scan and Args functions here, its DDL in each backend's migrations, and
// in each backend only the statements whose SQL the dialects do not share.
//
// It may import the standard library, internal/store and internal/audit. It must never open a connection,
// run a statement or import a driver (database/sql's interfaces are the standard library's, not a driver's):
// what is particular to SQLite or PostgreSQL stays in that backend. It uses no reflection, so that scanning a
// row costs what the hand-written scans it replaced did.
package sqlrecord
