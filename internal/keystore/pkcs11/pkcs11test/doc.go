// Package pkcs11test gives tests a fresh SoftHSM2 token to run the PKCS#11 keystore against.
//
// SoftHSM2 reads its configuration (SOFTHSM2_CONF) and scans its token directory once, when the module is
// initialised, and crypto11 loads the module into the test process itself; a token that softhsm2-util creates
// afterwards stays invisible to the process until every Context is closed and the module reloaded. So, once per
// test process, the first NewToken writes a softhsm2.conf in a temporary directory, points SOFTHSM2_CONF at it,
// creates an anchor token with softhsm2-util and opens a crypto11 Context on it that stays open for the life of
// the process, so the module is never unloaded. Every later token is created in-process (C_InitToken, C_InitPIN)
// through a second handle on that same module, and is visible at once to every Context. Tokens are told apart by
// a random label.
//
// Rules for tests that use it: let NewToken be the first thing in the test binary to load SoftHSM2; open stores
// with the configuration URI it returns (the module path string must stay the same, as crypto11 shares a loaded
// module by path); and call Main from TestMain so the temporary directory is removed at the end.
//
// It may import only the standard library, crypto11 and internal/pkitest. It is imported by tests only.
package pkcs11test
