// Package storetest is the conformance suite every store.Store backend must pass, plus the helpers backend tests
// share: a PostgreSQL test database that skips or fails cleanly, and the batch-insert benchmark.
//
// It may import internal/store and internal/audit. It is imported by backend tests only.
package storetest
