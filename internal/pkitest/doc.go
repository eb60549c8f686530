// Package pkitest makes what tests need of a PKI: keys of every algorithm Keyward accepts, certificate requests,
// and CA chains with leaves, so that test files share one way of making them instead of each writing its own.
// Everything is made fresh with crypto/rand; a failure stops the test.
//
// It may import only the standard library. Only tests import it.
package pkitest
