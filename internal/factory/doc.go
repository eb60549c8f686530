// Package factory is offline manufacturing's files and pipelines: batches of pre-issued device credentials (key
// and implant-identity certificate) that a site generates under its site CA without any connection to
// headquarters (the batch file, its streaming, chunked and stamped issuance), their injection into devices
// (the injection index, device-key wrapping), and the signed exports of a site's logs that headquarters
// reconciles (the export format, its writing and its verification). docs/manufacturing.md describes the whole.
//
// It decides nothing and records nothing itself: every decision and record — a site CA, a batch's reservation
// of its quota, an export's sequence number, a reconciliation — is the registration authority's (internal/ra
// factory.go, batch.go, reconcile.go), and every signature goes through the CA custodian (internal/ca): the site
// CA's issuer handle, which the RA hands out with a batch it allows, and the site's export signer.
//
// It may import internal/ra, internal/ca, internal/issuer, internal/profile, internal/keystore (device keys,
// which are no CA's: generated in the site HSM, wrapped for injection) and internal/store's types. It must
// never open a store transaction, append an audit event, or open a keystore signer.
package factory
