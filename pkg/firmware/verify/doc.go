// Package verify is the device-side check of a Keyward firmware update: it decides whether a device may install
// an image, given the signed manifest that came with it and the firmware trust the device pinned at manufacture.
//
// Manifest verifies, in this order, and stops at the first failure with its own error value:
//
//  1. the envelope: a COSE_Sign1 (tag 18) or COSE_Sign (tag 98) of at most manifest.MaxEnvelopeSize bytes
//     carrying a firmware manifest (ErrTooLarge, ErrMalformed);
//  2. every signature's algorithm: ES256 or ES384 for the ECDSA signer, ML-DSA-65 for the post-quantum one
//     (ErrAlgorithm);
//  3. the ECDSA signer's certificate (x5chain, RFC 9360) chains to the pinned firmware root with the
//     code-signing extended key usage, and the ML-DSA signer's key certificate is signed by the pinned ML-DSA
//     root (ErrUntrustedSigner: an unknown key, or a key of another environment);
//  4. neither signing key is in the trust's revocation list (ErrRevokedSigner);
//  5. each signature verifies (ErrSignature), and the manifest names the keys that signed it
//     (ErrSignerMismatch); a hybrid manifest, or any manifest when Options.RequireHybrid is set, carries both
//     signatures (ErrHybridRequired);
//  6. the manifest is for this device class (ErrDeviceClass), newer than what is installed (ErrRollback),
//     inside its validity window (ErrNotYetValid, ErrExpired) and bootable by this bootloader (ErrBootloader).
//
// Image then streams the image through SHA-256 once, checking its size (ErrImageSize) and digest
// (ErrImageDigest). Trust.Apply moves a device to the next signed trust version (signing-key revocation, root
// rotation), TUF-style.
//
// The package imports only the standard library, github.com/fxamacker/cbor/v2, github.com/veraison/go-cose and
// filippo.io/mldsa, so it fits firmware-update agents and gateways; a test enforces it.
//
// It may import pkg/firmware/manifest and what that imports, never internal/ (a test enforces it): it runs on
// devices.
package verify
