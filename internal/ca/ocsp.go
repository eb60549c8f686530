package ca

import (
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// OCSPResponse is what one signed OCSP response says (RFC 6960 4.2.1): the CertID asked about, repeated as
// asked (4.2.2.3), the certificate's status, the validity of the answer, and the request's nonce.
type OCSPResponse struct {
	HashOID        asn1.ObjectIdentifier // the CertID's hash algorithm
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	Serial         *big.Int
	Status         int // ocsp.Good, ocsp.Revoked or ocsp.Unknown
	RevokedAt      time.Time
	Reason         int
	ThisUpdate     time.Time
	NextUpdate     time.Time
	// NonceExt is the raw extnValue of the request's nonce extension (RFC 8954), echoed; nil if none.
	NonceExt []byte
}

// OIDs of the response.
var (
	oidOCSPBasic   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1} // RFC 6960 4.2.1 id-pkix-ocsp-basic
	oidECDSASHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}     // RFC 5758 3.2
	oidECDSASHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidNonce       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2} // RFC 6960 4.4.1 id-pkix-ocsp-nonce
)

// SignOCSP encodes and signs, with the delegated responder d (RFC 6960 4.2.2.2), a successful OCSPResponse with
// one SingleResponse (RFC 6960 4.2.1). golang.org/x/crypto/ocsp.CreateResponse cannot put the nonce where RFC 6960 4.4.1 puts it (it writes extra
// extensions into singleExtensions, and OpenSSL looks in responseExtensions), so Keyward encodes the response
// itself. The CertID repeats the request's (RFC 6960 4.2.2.3 asks the responder to answer for the CertID it
// was asked about); the responder is named by key (byKey, the SHA-1 of its public key, 4.2.1); the responder
// certificate travels in certs (4.2.2.2).
func (d *Delegate) SignOCSP(r OCSPResponse) ([]byte, error) {
	var spki struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(d.Cert.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, err
	}
	keyHash := sha1.Sum(spki.PublicKey.Bytes)
	sigOID, hash := oidECDSASHA256, crypto.SHA256
	if k, ok := d.Cert.PublicKey.(interface{ Params() *elliptic.CurveParams }); ok && k.Params().BitSize == 384 {
		sigOID, hash = oidECDSASHA384, crypto.SHA384
	}
	gt := func(b *cryptobyte.Builder, t time.Time) { b.AddASN1GeneralizedTime(t.UTC()) }
	var tbs cryptobyte.Builder
	tbs.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ResponseData; version v1 is the DEFAULT, omitted
		b.AddASN1(cbasn1.Tag(2).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { // byKey [2]
			b.AddASN1OctetString(keyHash[:])
		})
		gt(b, r.ThisUpdate)                                      // producedAt
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // responses
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SingleResponse
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // CertID
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(r.HashOID)
						b.AddASN1NULL()
					})
					b.AddASN1OctetString(r.IssuerNameHash)
					b.AddASN1OctetString(r.IssuerKeyHash)
					b.AddASN1BigInt(r.Serial)
				})
				switch r.Status {
				case ocsp.Good:
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(*cryptobyte.Builder) {}) // good [0] IMPLICIT NULL
				case ocsp.Revoked:
					b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { // revoked [1] IMPLICIT RevokedInfo
						gt(b, r.RevokedAt)
						// RFC 5280 5.3.1 via RFC 6960 4.2.1: the reason, when it is not unspecified.
						if r.Reason != 0 {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
								b.AddASN1Enum(int64(r.Reason))
							})
						}
					})
				default:
					b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(*cryptobyte.Builder) {}) // unknown [2] IMPLICIT NULL
				}
				gt(b, r.ThisUpdate)
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { gt(b, r.NextUpdate) })
			})
		})
		if r.NonceExt != nil {
			// RFC 6960 4.4.1, RFC 8954: the nonce, echoed in responseExtensions [1].
			b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidNonce)
						b.AddASN1OctetString(r.NonceExt)
					})
				})
			})
		}
	})
	tbsDER, err := tbs.Bytes()
	if err != nil {
		return nil, err
	}
	h := hash.New()
	h.Write(tbsDER)
	sig, err := d.guard.Sign(rand.Reader, h.Sum(nil), hash)
	if err != nil {
		return nil, fmt.Errorf("sign OCSP response: %w", err)
	}
	var basic cryptobyte.Builder
	basic.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbsDER)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(sigOID) })
		b.AddASN1BitString(sig)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(d.Cert.Raw) })
		})
	})
	basicDER, err := basic.Bytes()
	if err != nil {
		return nil, err
	}
	var out cryptobyte.Builder
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(0) // successful
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidOCSPBasic)
				b.AddASN1OctetString(basicDER)
			})
		})
	})
	return out.Bytes()
}
