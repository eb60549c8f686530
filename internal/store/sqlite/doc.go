// Package sqlite implements store.Store on one SQLite file, the embedded default: pure Go (modernc.org/sqlite),
// WAL journal, a single writer connection whose transactions begin IMMEDIATE, and a pool of read-only
// connections that read concurrently with the writer.
//
// It may import internal/store, internal/audit and the shared SQL packages (internal/store/sqlschema,
// internal/store/sqlrecord). It must never decide: it keeps what the RA decided, each change with its audit event.
package sqlite
