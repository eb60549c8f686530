// Package trust is the device side of a root rollover: it keeps the X.509 trust anchors a device holds for its
// environment (the environment's root CA certificates), moves them forward with signed trust-anchor updates,
// and verifies certificate chains under them.
//
// Over an implant's ten to fifteen years the environment's root is rolled over: a ceremony makes a new root key
// and certificate, RFC 4210 section 4.4 link certificates between the old and the new root, and a trust-anchor
// update: a small CBOR document in a COSE_Sign (RFC 9052) that lists every anchor a device must hold afterwards,
// with the anchors' version, environment and validity, signed by the old and the new root. The wire format is in
// docs/trust-anchors.md.
//
// Anchors.Apply accepts an update only if all of these hold, checked in this order, each refusal with its own
// error value (errors.Is):
//
//  1. it decodes: a COSE_Sign (tag 98) of at most MaxUpdateSize bytes with this package's content type, whose
//     payload is the deterministic CBOR encoding of a valid Update (ErrMalformed), every anchor it lists a
//     self-signed CA certificate (ErrInvalidAnchor);
//  2. it is for the environment the device holds anchors of (ErrWrongEnvironment);
//  3. its version is higher than the held one, so no update is applied twice and none rolls back
//     (ErrNotNewer);
//  4. the device's clock is inside its validity, within ClockSkew (ErrNotYetValid, ErrExpired);
//  5. every signature on it verifies with the key its key id names, a held anchor's or a listed one's, with
//     that key's algorithm: a forged or unknown signature refuses the update, it is never skipped
//     (ErrBadSignature);
//  6. an anchor the device holds now signed it (ErrNotSignedByHeld): the old root vouches for the new set;
//  7. every anchor it introduces signed it too (ErrNotSignedByNew): a new root proves its key is held, so an
//     update signed by only one of the two roots changes nothing.
//
// Apply returns the new anchors and never changes the ones it is called on. Versions need not be consecutive: a
// device that missed some updates takes the newest one that a root it holds signed.
//
// The anchors file (anchors.pem) is PEM CERTIFICATE blocks, which OpenSSL reads as a CAfile, and one
// KEYWARD TRUST STATE block (environment and version, CBOR), which OpenSSL skips. A file without the state block
// is a factory's initial set: version 0, in the environment its reader names.
//
// It may import only the standard library, github.com/fxamacker/cbor/v2 and github.com/veraison/go-cose (a test
// enforces it), so device, gateway and app software can embed it. It must never import internal/, hold or
// generate a private key other than through the crypto.Signer a caller hands to Sign, read the system's trust
// store, or accept an update on a partial check.
package trust
