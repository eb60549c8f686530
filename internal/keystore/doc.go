// Package keystore defines key custody for Keyward: every private key the system holds lives in a backend
// (software, sealed at rest; or a PKCS#11 token) and is bound to exactly one purpose. A caller asks for a
// signer by key URI and purpose; the backend refuses any other purpose, so a CRL key can never sign a
// certificate and a device key can never sign firmware.
//
// It may import only the standard library and filippo.io/mldsa. Only the CA custodian (internal/ca) may call a
// Keystore's Signer; backends must never log, return or store key material or a PIN.
package keystore
