// Package revocation publishes what relying parties need to check revocation: complete and delta CRLs per CA
// (RFC 5280), OCSP answers (RFC 6960) from pre-signed responses, and the signed revocation filters that offline
// verifiers carry (pkg/revocation/filter). It decides nothing: revocations are the registration authority's
// (internal/ra), signatures the CA custodian's (internal/ca), and it learns of new revocations from the change
// feed (internal/feed) through Kick.
//
// # Who signs what
//
// CRLs are signed by the CA's own key, with the CA certificate's cRLSign key usage. RFC 5280 5.1.1.2 and 6.3.3
// make the CRL issuer the certificate issuer unless the certificate names another CRL issuer in a cRLIssuer
// field and the CRL is marked indirect (5.2.5); indirect CRLs are poorly supported by relying parties (OpenSSL
// needs -extended_crl) and would have to be named in every certificate already issued, so Keyward does not use
// them.
//
// OCSP responses are signed by a delegated responder (RFC 6960 4.2.2.2): a certificate issued by the CA with
// id-kp-OCSPSigning and id-pkix-ocsp-nocheck, whose key has purpose ocsp-signing.
//
// Revocation filters are not X.509 objects, so no RFC binds their signer: they are signed by a key of purpose
// crl-signing whose certificate, issued by the CA, carries id-kp-documentSigning (RFC 9336).
//
// A CRL of millions of entries is built in memory that does not grow with them (crlbuild.go): the store is read
// in ranges of serials at once, the entries are spooled to temporary files in CRLConfig.SpoolDir, the CA signs
// a digest computed as they are read back, and the CRL is stored and served in chunks.
//
// It may import internal/ra (the store reader, delegates, and recording what it publishes), internal/ca (the
// CA signing handles), internal/store (records), internal/hierarchy and internal/profile (names and paths), and
// pkg/revocation/filter. It must never open a store transaction, open a keystore signer, or change a
// certificate's state.
package revocation
