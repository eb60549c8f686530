// Package sqlschema loads and checks the embedded schema migrations of Keyward's SQL backends (sqlite,
// postgres), so that both follow one set of rules: a migration is a file NNNN_description.sql, migrations apply
// in version order, each one a database has not recorded (also one numbered below its newest, since versions are
// reserved by changes merged in any order), no two share a version, and a database whose recorded version is newer than the newest
// migration is refused rather than used by an older Keyward.
//
// Each backend keeps what is its own: the migration files (written in its dialect; the two directories carry
// the same versions and names, which this package's tests check), the schema_migrations table's DDL, the
// transaction the migrations run in and how concurrent starters serialise on it (SQLite's IMMEDIATE transaction,
// PostgreSQL's advisory lock).
//
// It may import the standard library only. It never opens a connection, runs SQL or knows a driver: the
// backends do, with what it returns.
package sqlschema
