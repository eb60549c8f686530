// Package kbkdf is the key-based key derivation function of NIST SP 800-108r1 in counter mode (section 4.1),
// with the counter as a 32-bit big-endian integer before the fixed input (r = 32), and the fixed input and
// context Keyward derives device keys with.
//
// The PRF is a parameter, so the key-derivation key may stay where it lives: in an HSM, the PRF is one
// CKM_SHA256_HMAC signature per block; in the software keystore, crypto/hmac. The package holds no key and
// imports only the standard library; it never logs or stores its inputs or outputs.
package kbkdf
