// Package est is an Enrollment over Secure Transport client (RFC 7030, with the RFC 8951 clarifications) for
// device, gateway and factory-station software. It depends on the standard library and a PKCS #7 library only,
// never on Keyward's internal packages.
//
// Requests and responses follow RFC 7030 section 4 and RFC 8951: a CSR is sent as base64 of its DER encoding
// with Content-Type application/pkcs10; certificates come back as base64 of a certs-only CMS SignedData
// (application/pkcs7-mime); a Content-Transfer-Encoding header is neither sent nor needed.
//
// It may import only the standard library and github.com/smallstep/pkcs7, never internal/ (a test enforces it):
// device, station and gateway software embeds it.
package est
