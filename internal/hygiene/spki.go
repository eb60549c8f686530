package hygiene

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// CertificateSPKI returns the DER SubjectPublicKeyInfo of a DER certificate without parsing the key: the
// standard library refuses a whole certificate whose key is on a curve it does not know (P-192) or off its
// curve, and those are the keys the scan must still see (RFC 5280 4.1: tbsCertificate's seventh field).
func CertificateSPKI(der []byte) ([]byte, error) {
	input := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !input.ReadASN1(&cert, cbasn1.SEQUENCE) || !input.Empty() {
		return nil, errors.New("certificate is not one DER SEQUENCE")
	}
	if !cert.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, errors.New("certificate has no tbsCertificate")
	}
	// version [0] EXPLICIT (optional), serialNumber, signature, issuer, validity, subject
	if !tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.SkipASN1(cbasn1.INTEGER) || !tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.SkipASN1(cbasn1.SEQUENCE) ||
		!tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.SkipASN1(cbasn1.SEQUENCE) {
		return nil, errors.New("tbsCertificate is malformed before its subjectPublicKeyInfo")
	}
	var spki cryptobyte.String
	if !tbs.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return nil, errors.New("tbsCertificate has no subjectPublicKeyInfo")
	}
	return spki, nil
}
