// Package ca is Keyward's custodian of signing keys: the only package that opens a keystore signer for a
// CA-purpose key (root-signing, ca-signing, crl-signing, ocsp-signing, audit-signing, firmware-signing) or the
// server's TLS key, and so the only one that signs what a CA signs: leaf certificates through internal/issuer
// (Prepare, lint, sign the exact linted bytes, verify), subordinate, site, station and service CA certificates,
// station and server TLS certificates, delegate certificates (OCSP responder, filter signer, export signer),
// CRLs (streamed, crl.go), OCSP responses (ocsp.go), firmware manifests, trust updates and ML-DSA key
// certificates (firmware.go), and devices' trust-anchor updates for a root rollover (trust.go). Revocation
// filters are signed by a delegate's signer that this package hands to the filter builder.
//
// It knows no policy: the registration authority (internal/ra) decides what a certificate says and whether it
// may be issued; this package checks only the state of the key and the CA it signs for. Signers are opened
// once and cached with that state; a key destroyed or a CA retired in this process stops signing at once
// (Destroy, Invalidate), and in every other process when the change feed (internal/feed) reports it (Follow).
//
// It may import: internal/issuer, internal/keystore, internal/store (the read-only Reader: CA rows and key
// states), internal/feed, internal/profile (key identifiers), and the public pkg/firmware/manifest,
// pkg/revocation/filter and pkg/trust packages. It must never write to the store, decide policy, or let a
// private key or a raw keystore signer leave the package.
package ca
