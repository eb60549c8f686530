// Package postgres implements store.Store on PostgreSQL with pgx, for deployments of several stateless nodes
// sharing one database.
//
// Transactions run at READ COMMITTED. Two invariants span nodes and are enforced in the database rather than in
// a process: the audit chain has one head (appenders serialise on a transaction-scoped advisory lock, see
// AppendAudit), and a public key is certified for one subject only (the certificate_keys table's primary key,
// see InsertCertificate). Statements are prepared once per connection by pgx's statement cache.
//
// Advisory lock keys used here (database-wide, shared by every schema of the database):
// 0x6b65797761726401 (audit chain head) and 0x6b65797761726402 (schema migrations).
//
// It may import internal/store, internal/audit and the shared SQL packages (internal/store/sqlschema,
// internal/store/sqlrecord). It must never decide: it keeps what the RA decided, each change with its audit event.
package postgres
