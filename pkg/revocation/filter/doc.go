// Package filter reads and verifies Keyward revocation filters: compact, signed files that answer "is the
// certificate with serial S revoked?" and "is the CA with this key revoked, and with it every certificate
// under it?" for devices that cannot reach a CRL or an OCSP responder (a clinician
// programmer in a ward, a phone app, a gateway between syncs). It depends on the Go standard library only, so
// device, gateway and app software can import it; a test in the repository enforces that.
//
// # What a filter answers
//
// A filter is built from the registry of every certificate the CA issued, so it is exact for those: for every
// certificate covered by the filter, Revoked returns the truth as of IssuedAt, with no false positive and no false
// negative. For a serial the CA never issued the answer is meaningless (true or false at random); a verifier
// only asks about certificates whose signature it has already checked against the CA.
//
// # Construction
//
// Two levels, after the idea of Clubcard (Schanck, "Clubcards for the WebPKI: smaller certificate revocation tests in theory and practice", IEEE S&P 2025) and the
// CRLite cascade (Larisch et al., IEEE S&P 2017), with binary fuse tables (Graf and Lemire, 2022) in place of
// Bloom filters:
//
//  1. Level 1 is an approximate membership filter for the r revoked serials: a 4-wise binary fuse table of
//     k-bit fingerprints. Every revoked serial passes it; a non-revoked serial passes with probability 2^-k.
//  2. Level 2 is an exact 1-bit static function over the serials that pass level 1 (the r revoked ones and the
//     ~(N-r)/2^k false positives): a 4-wise binary fuse table whose XOR of four 1-bit entries is the serial's
//     revoked bit.
//
// A serial that fails level 1 is not revoked; one that passes is revoked iff level 2 says 1. k is chosen at
// build time to minimise the total size, which comes to about 1.1 times the information-theoretic bound
// r(log2(N/r) + 1.44) bits. Positions and fingerprints come from SHA-256(seed || serial) with a random 32-byte
// seed per level.
//
// # File format and trust
//
// A filter file (.kwf) is a header (format version, environment, scope, filter version, issuance time, next
// update, counts), the revoked-issuer section, the two tables (or, for a delta, a sorted list of corrections
// to a base filter), the signer's certificate chain, and a signature over all of those bytes, prefixed with a
// domain-separation string. Verify checks the structure, the chain up to a trust anchor the caller provides
// (the environment's root), that the signer certificate carries the Keyward revocation-filter-signing
// extended key usage, the signature, the environment, and freshness (IssuedAt <= now < NextUpdate). A delta
// file is verified the same way and is bound to its base by the base's version and SHA-256 digest.
//
// # Revoked issuers
//
// When a CA below the root is revoked (an issuing, factory site, station or OCSP-signer CA), every
// certificate under it must be refused, not only the serials the filter lists. The revoked-issuer section
// names each such CA by the SHA-256 of its certificate's SubjectPublicKeyInfo: a 16-bit count (at most 1024),
// then the 32-byte digests in strictly increasing byte order. Each entry costs 32 bytes; the count, 2 bytes,
// is in every format-2 file. The section is signed with the rest of the file.
//
// A CA is named by its key, not by its certificate, name or serial, because the key is what signs the
// subtree: a certificate issued by a revoked CA verifies under any certificate that carries the same key
// (a renewed or re-issued CA certificate, a copy with other extensions), so a revoked key is refused
// whatever certificate carries it. The digest is computed from bytes every verifier already has, unlike the
// subject key identifier, which the issuer chooses and may omit. A re-keyed CA (a rollover generation) has
// a new key and is not affected.
//
// A root is never listed: roots are replaced by rollover, not revoked, and every filter is signed under its
// environment's root: a filter cannot vouch for the revocation of its own trust anchor.
//
// IssuerRevoked and RevokedIssuers answer from the list; CheckChain checks a chain the caller has verified:
// it refuses the chain if any certificate in it carries a listed key (the anchor's too, for verifiers that
// pin an intermediate) and, when the leaf is an end-entity certificate, if its serial is revoked. A
// filter's own signer chain must carry no listed key: Verify refuses a file whose signer chain carries a key
// that the file lists, that VerifyOptions.RevokedIssuers lists (what the caller learnt from its previous
// filter), or, for a delta, that its base lists; the builder refuses to sign such a file. A revoked CA's key
// may be in an attacker's hands, and must not vouch for revocation data, not even to lift its own revocation.
//
// A delta carries the complete revoked-issuer list of its moment (it is short), so applying a delta replaces
// its base's list rather than adding to it; a delta is bound to its base as before. A delta may list the CA
// its base was signed under (a base built before the revocation): the delta names its base by digest, so its
// own signature, made outside the revoked subtree, vouches for the base's bytes.
//
// # Format versions
//
// Build and BuildDelta write format 2, which added the revoked-issuer section. Verify still reads format 1
// (no such section) as a filter that lists no revoked issuer. That reading is sound because a format-1 file
// was signed by a builder from before CA revocation existed, when no CA could be revoked, so "none" was the
// truth of its moment; and a format-1 file lives only until its next update (a week by default), so once
// the builders are upgraded, every format-1 file expires within one validity period. Replaying an older file
// while it is still fresh is no worse for format 1 than for format 2: any file from before a revocation
// omits it, which freshness bounds for both. A format-2 delta applies to a format-1 base (the upgrade path:
// the device keeps its base and receives deltas from the upgraded builder), and its list then applies. A
// format-1 delta can only name a format-1 base, since the base digest covers the format byte.
//
// It may import only the standard library, never internal/ (a test enforces it): offline verifiers embed it.
package filter
