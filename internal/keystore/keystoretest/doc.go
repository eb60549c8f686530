// Package keystoretest is the conformance suite every keystore.Keystore backend must pass: one behaviour,
// whatever holds the keys.
//
// It may import internal/keystore. It is imported by backend tests only.
package keystoretest
