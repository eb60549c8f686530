// Package api defines the JSON form of Keyward's records, shared by the HTTP API and the CLI's --json output so
// that a script reads the same fields from either.
//
// It also holds the OpenAPI 3.1 document of the operator API (openapi.yaml, embedded; OpenAPIJSON), the one
// description of those views on the wire.
//
// It may import internal/store and internal/audit (the records it renders). It must never decide or read a store:
// a view is built from a record the caller already holds. No view carries a secret, but for the two answers that
// hand one over exactly once, to the operator who asked: NewTokenSecret (a new operator token) and
// StationCredentials (a new station's private key).
package api
