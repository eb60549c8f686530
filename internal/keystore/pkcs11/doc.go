// Package pkcs11 keeps Keyward keys on a PKCS#11 token: a network or PCIe HSM in production, SoftHSM2 in tests.
// It drives the token through github.com/ThalesGroup/crypto11, which loads the vendor module into this process
// (cgo) and pools sessions, so a Store is safe for concurrent use.
//
// A Store is opened with an RFC 7512 configuration URI that selects one token and says how to reach it:
//
//	pkcs11:token=keyward-prod?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/keyward/pin
//
// Each key is a key pair with a random 16-byte CKA_ID and a CKA_LABEL of the form "keyward:<purpose>:<hex id>",
// the purpose binding the keystore contract requires; private keys are generated CKA_SENSITIVE, not
// CKA_EXTRACTABLE and not CKA_MODIFIABLE (so the label, hence the purpose, cannot be changed afterwards) and may
// only sign. The exception are device keys made by GenerateWrappable for injection at the production line:
// extractable, so that WrapKey can export them encrypted under a transport key, and unable to sign (wrap.go).
// Keys are referenced by URIs such as "pkcs11:token=keyward-prod;id=%8F...;object=keyward:ca-signing:8f...",
// which never carry a PIN or module path.
//
// It may import internal/keystore and crypto11. It must never keep a PIN in a URI, a log or an error.
package pkcs11
