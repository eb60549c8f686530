// Package api defines the JSON form of Keyward's records, shared by the HTTP API and the CLI's --json output so
// that a script reads the same fields from either.
//
// It may import internal/store and internal/audit (the records it renders). It must never decide, read a store or
// carry a secret: a view is built from a record the caller already holds.
package api
