// Package pkitest makes what tests need of a PKI: keys of every algorithm Keyward accepts, certificate requests,
// and CA chains with leaves, so that test files share one way of making them instead of each writing its own.
// Everything is made fresh with crypto/rand; a failure stops the test. Hermetic and Main give a package's tests an
// environment without the caller's KEYWARD_* settings, so that an operator's shell changes no test's outcome.
//
// It may import only the standard library. Only tests and test helper packages (pkcs11test) import it.
package pkitest
