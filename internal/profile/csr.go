package profile

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyward/keyward/internal/goodkey"
)

// MaxCSRSize is the largest CSR ParseCSR reads, DER or PEM. A CSR for any Keyward profile is under 2 KiB.
const MaxCSRSize = 64 << 10

// Signature algorithms a CSR may be signed with: SHA-2 with RSA (PKCS #1 v1.5 or PSS), ECDSA, and Ed25519.
// SHA-1 and MD5 are refused (CA/B BR 7.1.3.2; RFC 9155 deprecates SHA-1 signatures).
var csrSignatureAlgorithms = []x509.SignatureAlgorithm{
	x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512,
	x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
	x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS,
	x509.PureEd25519,
}

var (
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

// Named curves a CSR might use, for messages. Only P-256, P-384 and P-521 are accepted (goodkey).
var curveNames = []struct {
	oid  asn1.ObjectIdentifier
	name string
	ok   bool
}{
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}, "P-256", true},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 34}, "P-384", true},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 35}, "P-521", true},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 1}, "P-192", false},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 33}, "P-224", false},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 10}, "secp256k1", false},
	{asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 7}, "brainpoolP256r1", false},
	{asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 11}, "brainpoolP384r1", false},
	{asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 13}, "brainpoolP512r1", false},
}

// ParseCSR parses a PKCS #10 certificate request (RFC 2986) in DER or PEM ("CERTIFICATE REQUEST") form, checks
// its key with goodkey and verifies its self-signature, which proves possession of the private key. It refuses
// empty or oversized input (over MaxCSRSize, checked before parsing), trailing data, weak or unsupported keys
// and signature algorithms. Errors have kind ErrBadCSR or ErrBadKey.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) == 0 {
		return nil, newErr(ErrBadCSR, "", nil, "CSR is empty")
	}
	if len(data) > MaxCSRSize {
		return nil, newErr(ErrBadCSR, "", nil, "CSR is %d bytes; the limit is %d", len(data), MaxCSRSize)
	}
	der, err := csrDER(data)
	if err != nil {
		return nil, err
	}
	// Look at the key before x509 does: Go refuses curves it does not implement (P-192) with an opaque
	// message, and an RSA key too short for crypto/rsa would surface as a signature failure.
	if err := precheckKey(der); err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, newErr(ErrBadCSR, "", err, "CSR does not parse: %s", strings.TrimPrefix(err.Error(), "x509: "))
	}
	if err := goodkey.Check(csr.PublicKey); err != nil {
		return nil, newErr(ErrBadKey, "", err, "CSR key refused: %v", err)
	}
	if !slices.Contains(csrSignatureAlgorithms, csr.SignatureAlgorithm) {
		return nil, newErr(ErrBadCSR, "", nil, "CSR signature algorithm %v is not supported: sign with SHA-256 or stronger (ECDSA, RSA) or Ed25519", csr.SignatureAlgorithm)
	}
	// RFC 2986 3: the signature over certificationRequestInfo proves the requester holds the private key.
	if err := csr.CheckSignature(); err != nil {
		return nil, newErr(ErrBadCSR, "", err, "CSR signature does not verify: proof of possession failed")
	}
	return csr, nil
}

// ParseCSR is the package ParseCSR, with key refusals also naming what p allows, e.g.
// `CSR key is RSA-1024: minimum is 2048 (profile "implant-identity" allows ecdsa-p256)`.
func (p *Profile) ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	csr, err := ParseCSR(data)
	var e *Error
	if err != nil && errors.As(err, &e) && errors.Is(e.Kind, ErrBadKey) {
		e.Profile = p.Name
		e.Msg += fmt.Sprintf(" (profile %q allows %s)", p.Name, p.algorithmList())
	}
	return csr, err
}

// csrDER returns the single DER CertificationRequest in data, refusing trailing bytes.
func csrDER(data []byte) ([]byte, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		block, rest := pem.Decode(trimmed)
		if block == nil {
			return nil, newErr(ErrBadCSR, "", nil, "CSR PEM does not decode")
		}
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, newErr(ErrBadCSR, "", nil, "CSR PEM block is %q; want CERTIFICATE REQUEST", clip(block.Type))
		}
		if len(block.Headers) != 0 {
			return nil, newErr(ErrBadCSR, "", nil, "CSR PEM block has headers; send it without them")
		}
		if n := len(bytes.TrimSpace(rest)); n != 0 {
			return nil, newErr(ErrBadCSR, "", nil, "CSR PEM block is followed by %d bytes of trailing data", n)
		}
		data = block.Bytes
	}
	s := cryptobyte.String(data)
	var elem cryptobyte.String
	if !s.ReadASN1Element(&elem, cbasn1.SEQUENCE) {
		return nil, newErr(ErrBadCSR, "", nil, "CSR is not a DER-encoded PKCS #10 request (nor PEM)")
	}
	if len(s) != 0 {
		return nil, newErr(ErrBadCSR, "", nil, "CSR is followed by %d bytes of trailing data", len(s))
	}
	return elem, nil
}

// precheckKey reads the SubjectPublicKeyInfo of a CertificationRequest (RFC 2986 4.1) and refuses weak curves
// and short RSA moduli with messages a requester can act on. Anything it cannot read is left to x509.
func precheckKey(der []byte) error {
	s := cryptobyte.String(der)
	var req, info, spki, alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&req, cbasn1.SEQUENCE) ||
		!req.ReadASN1(&info, cbasn1.SEQUENCE) ||
		!info.SkipASN1(cbasn1.INTEGER) || // version
		!info.SkipASN1(cbasn1.SEQUENCE) || // subject
		!info.ReadASN1(&spki, cbasn1.SEQUENCE) ||
		!spki.ReadASN1(&alg, cbasn1.SEQUENCE) ||
		!alg.ReadASN1ObjectIdentifier(&oid) {
		return nil
	}
	switch {
	case oid.Equal(oidECPublicKey):
		// RFC 5480 2.1.1: the parameters name the curve; explicit (specifiedCurve) parameters are not allowed.
		var curve asn1.ObjectIdentifier
		if !alg.PeekASN1Tag(cbasn1.OBJECT_IDENTIFIER) || !alg.ReadASN1ObjectIdentifier(&curve) {
			return newErr(ErrBadKey, "", nil, "CSR key uses an unsupported or weak curve (explicit curve parameters): minimum is P-256 (named curves P-256, P-384)")
		}
		name := "OID " + curve.String()
		for _, c := range curveNames {
			if c.oid.Equal(curve) {
				if c.ok {
					return nil
				}
				name = c.name
			}
		}
		return newErr(ErrBadKey, "", nil, "CSR key uses an unsupported or weak curve (%s): minimum is P-256", name)
	case oid.Equal(oidRSAEncryption):
		// RFC 3279 2.3.1: the BIT STRING holds RSAPublicKey ::= SEQUENCE { modulus, publicExponent }.
		var bits asn1.BitString
		if !spki.ReadASN1BitString(&bits) || bits.BitLength%8 != 0 {
			return nil
		}
		key := cryptobyte.String(bits.Bytes)
		var rsaKey cryptobyte.String
		n := new(big.Int)
		if !key.ReadASN1(&rsaKey, cbasn1.SEQUENCE) || !rsaKey.ReadASN1Integer(n) {
			return nil
		}
		if n.Sign() > 0 && n.BitLen() < goodkey.MinRSABits {
			return newErr(ErrBadKey, "", nil, "CSR key is RSA-%d: minimum is %d", n.BitLen(), goodkey.MinRSABits)
		}
	}
	return nil
}
