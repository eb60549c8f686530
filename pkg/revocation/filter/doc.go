// Package filter reads and verifies Keyward revocation filters: compact, signed files that answer "is the
// certificate with serial S revoked?" for devices that cannot reach a CRL or an OCSP responder (a clinician
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
// update, counts), the two tables (or, for a delta, a sorted list of corrections to a base filter), the signer's
// certificate chain, and a signature over all of those bytes, prefixed with a domain-separation string. Verify
// checks the structure, the chain up to a trust anchor the caller provides (the environment's root), that the
// signer certificate carries the Keyward revocation-filter-signing extended key usage, the signature, the
// environment, and freshness (IssuedAt <= now < NextUpdate). A delta file is verified the same way and is bound
// to its base by the base's version and SHA-256 digest.
//
// It may import only the standard library, never internal/ (a test enforces it): offline verifiers embed it.
package filter
