// Package client is a Go client of Keyward's operator API (the routes of internal/api/openapi.yaml, served at
// /api/v1/openapi.json): certificates and revocation, CAs, keys and the audit trail, operator tokens, factory
// stations, the device registry and device histories, firmware releases, and the reconciliation of factory
// exports. 'keyward --server URL --token-file F ...' runs its commands through it.
//
// It speaks TLS 1.3 only and trusts only the CA it is given (the server's service CA, DATA/tls/ca.pem): the
// system's roots are never consulted, so a certificate any public CA issued for the server's name is refused.
// It authenticates with an operator token, sent as a bearer token and never logged or put in an error.
//
// It depends on the standard library only (a test enforces it), so that operators' tools import it without
// Keyward's server. Its types have the JSON names of the API, which are those of 'keyward ... --json'.
package client
