// Package store defines Keyward's persistence: the records (CAs, keys, certificates, audit events) and the
// Store interface that the SQLite and PostgreSQL backends implement. Storage knows neither keys nor policy:
// it keeps what the registration authority decided, and it writes an operation and its audit event in one
// transaction so that nothing is recorded without its audit trail and no audit event survives a rolled-back
// change.
//
// It may import internal/audit. Only internal/ra opens a transaction (Tx) and appends audit events; everyone
// else reads through Reader.
package store
