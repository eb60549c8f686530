// Package manifest defines Keyward's firmware manifest: a compact CBOR map, modelled on the IETF SUIT manifest
// (RFC 9019 architecture, draft-ietf-suit-manifest), that says which image a device of one class may install, and
// the COSE (RFC 9052) structures that carry it signed. The exact CDDL is in docs/firmware-manifest.md.
//
// The package is public so that device, gateway and app software can import it. It depends only on the standard
// library, github.com/fxamacker/cbor/v2, github.com/veraison/go-cose and filippo.io/mldsa (a test enforces it).
//
// Decoding is strict on purpose, since a manifest is outside input on the device: definite lengths only, no
// duplicate map keys, no unknown keys, no tags, valid UTF-8, and the bytes must be the deterministic (RFC 8949
// section 4.2.1) encoding of what they decode to, so one manifest has exactly one encoding.
//
// It may import only the standard library, fxamacker/cbor, veraison/go-cose and filippo.io/mldsa, never
// internal/ (a test enforces it).
package manifest
