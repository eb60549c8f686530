// Package evidence builds and verifies the evidence pack of a premarket cybersecurity submission: what a
// reviewer reads about an installation's cryptography, regenerated from the system each time, never written
// by hand. A pack is a directory of
//
//   - cbom.json, a CycloneDX 1.6 cryptographic bill of materials: every algorithm, protocol (TLS 1.3 as the
//     listener actually negotiates it, EST, OCSP), CA and signing key by URI and purpose, certificate profile,
//     and CA certificate;
//   - the key glossary, a certificate policy and practice statement in the RFC 3647 outline (the sections
//     Keyward can fill from keyward.yaml and the profiles), the TLS configuration statement (probed from the
//     server's tls.Config), the revocation strategy per device class, and the latest probe and fleet-scan
//     reports copied verbatim;
//   - the audit log's signed checkpoint, with an RFC 9162 consistency proof from the previous pack's one;
//   - index.html linking it all (no script, no network: it reads offline), and manifest.json: the SHA-256 of
//     every other file, in a signed note by the installation's audit-signing key.
//
// Verify checks a pack against the audit log's verifier key given by the caller, never a key the pack carries:
// a pack must not vouch for itself.
//
// It may import the standard library, internal/hierarchy, internal/keystore (names only), internal/profile,
// internal/store (record types only), pkg/auditproof, pkg/certpolicy, CycloneDX's Go library and
// golang.org/x/mod/sumdb/note. It must never open a store or a keystore, sign anything itself (the caller hands
// it the audit key's signature through the RA), or put key material in a pack: keys appear by URI and purpose.
package evidence
