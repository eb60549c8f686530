// Package server is Keyward's HTTPS front end: TLS 1.3 only, every route authenticated and authorised by role
// from one route table (operator tokens, or TLS client certificates for EST), the JSON operator API, EST
// (RFC 7030) for factory stations and devices, and the plain-HTTP public listener for signed public objects
// (CRLs, OCSP, CA certificates, revocation filters). Requests refused before or at authentication are logged,
// counted by the RA for its aggregated audit event, and charged to a per-source rate limit that answers 429
// (ratelimit.go); refuseAuth (operator routes) and refuseClientCert (EST) report them.
//
// It is a face: it takes its dependencies explicitly (Deps: the RA, which authenticates, decides and offers the
// read-only store for listings; the revocation publisher for the public listener), asks the RA for every change
// and maps errors to HTTP statuses in one place (statusOf, on ra.KindOf). It may import internal/ra,
// internal/revocation, internal/api, internal/store (records and the Reader), internal/audit (action names),
// internal/hierarchy, internal/profile, internal/keystore (algorithm names) and pkg/est. It must never import
// internal/node, open a store transaction, or sign.
package server
