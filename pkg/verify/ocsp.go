package verify

// An OCSP client (RFC 6960) in the standard library: golang.org/x/crypto/ocsp is outside what pkg/ may
// import, and a relying party needs only this much of the protocol: one request, one response, checked.

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"time"
)

var (
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidOCSPBasic     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	sigAlgorithmOIDs = []struct {
		oid asn1.ObjectIdentifier
		alg x509.SignatureAlgorithm
	}{
		{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, x509.ECDSAWithSHA256},
		{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, x509.ECDSAWithSHA384},
		{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, x509.ECDSAWithSHA512},
		{asn1.ObjectIdentifier{1, 3, 101, 112}, x509.PureEd25519},
		{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, x509.SHA256WithRSA},
		{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, x509.SHA384WithRSA},
		{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, x509.SHA512WithRSA},
	}
)

type certID struct {
	HashAlgorithm  pkix.AlgorithmIdentifier
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	SerialNumber   *big.Int
}

type ocspRequest struct {
	TBSRequest struct {
		RequestList []struct {
			ReqCert certID
		}
	}
}

type ocspResponse struct {
	Status        asn1.Enumerated
	ResponseBytes struct {
		ResponseType asn1.ObjectIdentifier
		Response     []byte
	} `asn1:"explicit,tag:0,optional"`
}

type basicResponse struct {
	TBSResponseData    asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certificates       []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type responseData struct {
	Version     int           `asn1:"optional,explicit,default:0,tag:0"`
	ResponderID asn1.RawValue // [1] Name or [2] KeyHash
	ProducedAt  time.Time     `asn1:"generalized"`
	Responses   []singleResponse
	Extensions  []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type singleResponse struct {
	CertID     certID
	CertStatus asn1.RawValue
	ThisUpdate time.Time        `asn1:"generalized"`
	NextUpdate time.Time        `asn1:"generalized,explicit,tag:0,optional"`
	Extensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

// newCertID is the SHA-1 CertID of leaf under issuer (RFC 6960 4.1.1; SHA-1 is what responders must accept,
// RFC 5019 2.1.1; it identifies, it authenticates nothing).
func newCertID(leaf, issuer *x509.Certificate) (certID, error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return certID{}, err
	}
	nh := sha1.Sum(issuer.RawSubject)
	kh := sha1.Sum(spki.PublicKey.Bytes)
	return certID{HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA1, Parameters: asn1.NullRawValue},
		IssuerNameHash: nh[:], IssuerKeyHash: kh[:], SerialNumber: leaf.SerialNumber}, nil
}

// ocsp asks the leaf's responders (POST, RFC 6960 A.1) and returns whether the leaf is revoked; an error when
// no responder gave a valid good or revoked answer.
func (v *Verifier) ocsp(ctx context.Context, leaf, issuer *x509.Certificate, now time.Time) (bool, error) {
	id, err := newCertID(leaf, issuer)
	if err != nil {
		return false, fmt.Errorf("OCSP: %w", err)
	}
	var req ocspRequest
	req.TBSRequest.RequestList = []struct{ ReqCert certID }{{id}}
	body, err := asn1.Marshal(req)
	if err != nil {
		return false, fmt.Errorf("OCSP: %w", err)
	}
	var lastErr error
	for _, url := range leaf.OCSPServer {
		der, err := v.fetch(ctx, http.MethodPost, url, "application/ocsp-request", body)
		if err != nil {
			lastErr = fmt.Errorf("OCSP: %w", err)
			continue
		}
		revoked, err := CheckOCSP(der, leaf, issuer, now, v.o.ClockSkew)
		if err != nil {
			lastErr = fmt.Errorf("OCSP %s: %w", url, err)
			continue
		}
		return revoked, nil
	}
	return false, lastErr
}

// ErrOCSPUnknown is returned by CheckOCSP for a response that says "unknown" (RFC 6960 2.2).
var ErrOCSPUnknown = errors.New("the responder does not know the certificate")

// CheckOCSP checks the DER OCSP response der about leaf under issuer and reports whether it says revoked: a
// successful basic response, signed by the issuer or by a responder the issuer delegated to (id-kp-OCSPSigning,
// RFC 6960 4.2.2.2), whose single response is about leaf's CertID and current at now (thisUpdate - skew <= now
// <= nextUpdate + skew). "good" is false, nil; "revoked" is true, nil; "unknown" is ErrOCSPUnknown.
func CheckOCSP(der []byte, leaf, issuer *x509.Certificate, now time.Time, skew time.Duration) (bool, error) {
	var resp ocspResponse
	if rest, err := asn1.Unmarshal(der, &resp); err != nil || len(rest) > 0 {
		return false, fmt.Errorf("malformed response: %v", errOr(err, "trailing data"))
	}
	if resp.Status != 0 {
		return false, fmt.Errorf("responder status %d (not successful)", resp.Status)
	}
	if !resp.ResponseBytes.ResponseType.Equal(oidOCSPBasic) {
		return false, fmt.Errorf("response type %v is not id-pkix-ocsp-basic", resp.ResponseBytes.ResponseType)
	}
	var basic basicResponse
	if rest, err := asn1.Unmarshal(resp.ResponseBytes.Response, &basic); err != nil || len(rest) > 0 {
		return false, fmt.Errorf("malformed basic response: %v", errOr(err, "trailing data"))
	}
	var data responseData
	if rest, err := asn1.Unmarshal(basic.TBSResponseData.FullBytes, &data); err != nil || len(rest) > 0 {
		return false, fmt.Errorf("malformed response data: %v", errOr(err, "trailing data"))
	}
	alg := x509.UnknownSignatureAlgorithm
	for _, a := range sigAlgorithmOIDs {
		if a.oid.Equal(basic.SignatureAlgorithm.Algorithm) {
			alg = a.alg
		}
	}
	if alg == x509.UnknownSignatureAlgorithm {
		return false, fmt.Errorf("unsupported signature algorithm %v", basic.SignatureAlgorithm.Algorithm)
	}
	// The signer: the issuer itself, or a certificate in the response the issuer signed for OCSP signing.
	signers := []*x509.Certificate{issuer}
	for _, raw := range basic.Certificates {
		c, err := x509.ParseCertificate(raw.FullBytes)
		if err != nil {
			return false, fmt.Errorf("responder certificate: %w", err)
		}
		signers = append(signers, c)
	}
	sigErr := errors.New("no signer")
	signed := false
	for i, s := range signers {
		if i > 0 {
			if err := s.CheckSignatureFrom(issuer); err != nil {
				sigErr = fmt.Errorf("responder %s is not certified by %s: %w", s.Subject, issuer.Subject, err)
				continue
			}
			if !hasEKU(s, x509.ExtKeyUsageOCSPSigning) {
				sigErr = fmt.Errorf("responder %s is not authorised for OCSP signing (id-kp-OCSPSigning, RFC 6960 4.2.2.2)", s.Subject)
				continue
			}
			if now.Before(s.NotBefore.Add(-skew)) || now.After(s.NotAfter.Add(skew)) {
				sigErr = fmt.Errorf("responder certificate %s is outside its validity", s.Subject)
				continue
			}
		}
		if err := s.CheckSignature(alg, basic.TBSResponseData.FullBytes, basic.Signature.RightAlign()); err != nil {
			sigErr = fmt.Errorf("signature: %w", err)
			continue
		}
		signed = true
		break
	}
	if !signed {
		return false, sigErr
	}
	want, err := newCertID(leaf, issuer)
	if err != nil {
		return false, err
	}
	for _, r := range data.Responses {
		id := r.CertID
		if !id.HashAlgorithm.Algorithm.Equal(oidSHA1) || !bytes.Equal(id.IssuerNameHash, want.IssuerNameHash) ||
			!bytes.Equal(id.IssuerKeyHash, want.IssuerKeyHash) || id.SerialNumber == nil || id.SerialNumber.Cmp(want.SerialNumber) != 0 {
			continue
		}
		if now.Add(skew).Before(r.ThisUpdate) {
			return false, fmt.Errorf("answer from the future (thisUpdate %s)", r.ThisUpdate.UTC().Format(time.RFC3339))
		}
		// RFC 5019 2.2.4 and RFC 6960 4.2.2.1: an answer without nextUpdate says newer information is
		// always available; it is good only now, which a cached or replayed answer is not. Refuse it.
		if r.NextUpdate.IsZero() || now.After(r.NextUpdate.Add(skew)) {
			return false, fmt.Errorf("stale answer (nextUpdate %s)", r.NextUpdate.UTC().Format(time.RFC3339))
		}
		if r.CertStatus.Class != asn1.ClassContextSpecific {
			return false, errors.New("malformed certificate status")
		}
		switch r.CertStatus.Tag {
		case 0:
			return false, nil
		case 1:
			return true, nil
		case 2:
			return false, ErrOCSPUnknown
		}
		return false, fmt.Errorf("certificate status [%d] is not good, revoked or unknown", r.CertStatus.Tag)
	}
	return false, errors.New("the response is not about this certificate")
}

func hasEKU(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, e := range c.ExtKeyUsage {
		if e == u {
			return true
		}
	}
	return false
}

func errOr(err error, s string) any {
	if err != nil {
		return err
	}
	return s
}
