// Package edhoc implements Ephemeral Diffie-Hellman Over COSE (EDHOC, RFC 9528): the lightweight
// authenticated key exchange that gives an implant and its gateway or clinician programmer a shared
// OSCORE (RFC 8613) security context in three messages of a few dozen to a few hundred bytes.
//
// # What it implements
//
//   - Initiator and Responder for the four authentication methods (0: signature/signature, 1:
//     signature/static DH, 2: static DH/signature, 3: static DH/static DH) with cipher suites 0
//     (AES-CCM-16-64-128, SHA-256, X25519, EdDSA), 2 (AES-CCM-16-64-128, SHA-256, P-256, ES256) and 6
//     (A128GCM, SHA-256, X25519, ES256);
//   - message_1 to message_4, connection identifiers with their one-byte integer form (RFC 9528 section
//     3.3.2), compact 'kid' ID_CRED (section 3.5.3.2), error messages (section 6), external authorization
//     data with hooks and criticality (section 3.8);
//   - EDHOC_Exporter, the OSCORE Master Secret, Master Salt and Sender/Recipient IDs (appendix A.1), and
//     EDHOC_KeyUpdate;
//   - the negotiation rule that makes downgrades detectable (sections 5.2.3 and 6.3): the Responder accepts
//     the selected suite only if it is the first in SUITES_I it supports, and SUITES_I is in TH_2;
//   - message deduplication and replay refusal (appendix G): a Responder answers a retransmitted message_1
//     of a session in progress with the same message_2, a retransmitted message_3 of a completed session
//     with the same message_4, and refuses every other repeated message_1 within its replay window; a
//     message_3 that does not decrypt under the session's keys (another session's) ends the session;
//   - the CoAP payload framing of appendix A.2 (Responder.Handle, Message1Request, Message3Request).
//
// Credentials are X.509 certificates by 'x5chain' or 'x5t' (RFC 9360) and raw public keys in CWT Claims
// Sets by 'kid'. The peer's credential is checked by a CredentialVerifier: CertVerifier applies Keyward's
// relying-party rules (chain to the environment's anchors from pkg/trust, the holder's role, revocation by
// the signed filter of pkg/revocation/filter); KeySet holds pinned credentials.
//
// Every value is checked against every trace of RFC 9529 byte for byte (testdata/rfc9529.txt); the
// parsers accept deterministic CBOR only (RFC 9528 section 3.1) and are fuzzed.
//
// # What it may import
//
// The standard library (X25519, P-256, Ed25519, ECDSA, HKDF, AES-GCM), golang.org/x/crypto, the AES-CCM
// package of github.com/pion/dtls/v4 (the standard library has no CCM), and Keyward's pkg/trust and
// pkg/revocation/filter; never internal/ (a test enforces it), so device, gateway and app software can
// embed it.
//
// # What it must never do
//
// Log or return a secret (error messages sent to the peer carry only a fixed text), reuse a key and nonce
// (a retransmitted message_3 or message_4 is the stored message, never a new encryption), use a random
// source other than crypto/rand, or complete a session on a partial check.
package edhoc
