// Package issuer is Keyward's certificate authority in the narrow, Boulder sense: it holds a CA certificate and
// a signer and turns certificate templates into signed certificates. It knows no policy (the profile and
// registration authority decide what a template says) and no storage.
//
// Issuance has two steps. Prepare builds the certificate with a throwaway key of the CA key's algorithm,
// checks its size and lints it with zlint's RFC 5280 lints, and returns a single-use *Prepared. Issue signs the
// exact TBSCertificate bytes that were linted with the real CA key, assembles the certificate and verifies it
// against the CA certificate before returning it. Because the issued TBSCertificate is byte-for-byte the
// linted one, nothing can change between the check and the signature.
//
// It may import only the standard library, golang.org/x/crypto and zlint. It must never open a keystore, read a
// store or decide what a certificate says: internal/ca hands it the signer, internal/ra the template.
package issuer
