package hierarchy

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/profile"
)

// ErrOffline is returned when an operation would need the private key of an offline root.
var ErrOffline = errors.New("root is offline")

// IssuingSubject is the subject of (env, product)'s issuing CA. It is deliberately short, common name only:
// the issuer name is repeated in every device certificate, and the compact implant profile has about a dozen
// bytes to spare under its 400-byte limit. The organisation is named in the root.
func IssuingSubject(env, product string) pkix.Name {
	return pkix.Name{CommonName: fmt.Sprintf("%s %s CA", product, env)}
}

// RootTemplate returns the template of a root certificate. Rules: RFC 5280 4.2.1.9 (basicConstraints critical,
// cA true), 4.2.1.3 (keyCertSign and cRLSign, critical), 4.2.1.2 (subject key identifier present in CA certs).
func RootTemplate(subject pkix.Name, pub crypto.PublicKey, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := issuer.NewSerial(now)
	if err != nil {
		return nil, err
	}
	ski, err := profile.SubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
	}, nil
}

// IssuingTemplate returns the template of an issuing CA certificate: path length 0 (it signs end entities only,
// RFC 5280 4.2.1.9), keyCertSign and cRLSign.
func IssuingTemplate(subject pkix.Name, pub crypto.PublicKey, now time.Time, validity time.Duration, parent *x509.Certificate) (*x509.Certificate, error) {
	t, err := RootTemplate(subject, pub, now, validity)
	if err != nil {
		return nil, err
	}
	t.MaxPathLen, t.MaxPathLenZero = 0, true
	t.AuthorityKeyId = parent.SubjectKeyId
	if t.NotAfter.After(parent.NotAfter) {
		return nil, fmt.Errorf("issuing CA %q would outlive its parent %q (%s > %s): shorten its validity", subject.CommonName, parent.Subject.CommonName, t.NotAfter.Format(time.DateOnly), parent.NotAfter.Format(time.DateOnly))
	}
	return t, nil
}
