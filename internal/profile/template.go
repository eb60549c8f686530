package profile

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"time"
)

const issuerPlaceholder = "{issuer}"

// Template checks req against p (CheckRequest) and builds the certificate template the issuer lints and signs:
//
//   - SerialNumber is serial, which must be positive and at most 20 octets (RFC 5280 4.1.2.2).
//   - NotBefore is now (to the second) minus backdate; NotAfter is NotBefore + validity - 1s, since the
//     validity period includes both ends (RFC 5280 4.1.2.5). A certificate that would outlive its issuer is
//     refused with ErrIssuer, never shortened: a silently shorter certificate breaks renewal planning.
//   - Subject is the CSR's CN plus the profile's fixed O and OU; nothing else from the CSR.
//   - SANs are the CSR's DNS, URI and IP names, already checked against the profile.
//   - AuthorityKeyId is the issuer's SubjectKeyId (RFC 5280 4.2.1.1 requires it; an issuer without one is
//     refused); SubjectKeyId is set if include_ski (RFC 7093 section 2 method 1).
//   - KeyUsage (always critical), ExtKeyUsage, and the CRL, OCSP and CA-issuers URLs with "{issuer}"
//     replaced by IssuerID(issuer).
//   - certificatePolicies (non-critical) with the policy of the profile's role (pkg/certpolicy), refused with
//     ErrIssuer if the issuer names policies and not that one.
//
// No basicConstraints extension is added: RFC 5280 4.2.1.9 lets end-entity certificates omit it, and an
// absent extension means "not a CA" to every path validator.
func (p *Profile) Template(req *Request, serial *big.Int, now time.Time, issuer *x509.Certificate) (*x509.Certificate, error) {
	if err := p.CheckRequest(req); err != nil {
		return nil, err
	}
	// RFC 5280 4.1.2.2: positive, at most 20 octets.
	if serial == nil || serial.Sign() <= 0 {
		return nil, newErr(ErrIssuer, p.Name, nil, "serial number must be positive (RFC 5280 4.1.2.2)")
	}
	if len(serial.Bytes()) > 20 || (len(serial.Bytes()) == 20 && serial.Bit(159) == 1) {
		return nil, newErr(ErrIssuer, p.Name, nil, "serial number is longer than 20 octets (RFC 5280 4.1.2.2)")
	}
	if issuer == nil {
		return nil, newErr(ErrIssuer, p.Name, nil, "no issuer certificate")
	}
	issuerName := issuer.Subject.String()
	// RFC 5280 4.2.1.1: every certificate a CA issues (but a self-signed one) carries the AKI, which is the
	// issuer's SKI.
	if len(issuer.SubjectKeyId) == 0 {
		return nil, newErr(ErrIssuer, p.Name, nil, "issuer %q has no subject key identifier, so certificates under it cannot carry the authority key identifier RFC 5280 4.2.1.1 requires", issuerName)
	}
	notBefore, notAfter, err := p.ValidityAt(now, issuer)
	if err != nil {
		return nil, err
	}

	csr := req.CSR
	tmpl := &x509.Certificate{
		SerialNumber:   new(big.Int).Set(serial),
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		PublicKey:      csr.PublicKey,
		KeyUsage:       p.KeyUsage,
		ExtKeyUsage:    slices.Clone(p.ExtKeyUsage),
		AuthorityKeyId: slices.Clone(issuer.SubjectKeyId),
		DNSNames:       slices.Clone(csr.DNSNames),
		IPAddresses:    slices.Clone(csr.IPAddresses),
	}
	for _, u := range csr.URIs {
		c := *u
		tmpl.URIs = append(tmpl.URIs, &c)
	}
	for i := range tmpl.IPAddresses {
		tmpl.IPAddresses[i] = slices.Clone(tmpl.IPAddresses[i])
	}
	// Subject: CN (already checked) and the profile's fixed attributes only.
	for _, atv := range csr.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			tmpl.Subject.CommonName, _ = atv.Value.(string)
		}
	}
	if p.Subject.Organization != "" {
		tmpl.Subject.Organization = []string{p.Subject.Organization}
	}
	if p.Subject.OrganizationalUnit != "" {
		tmpl.Subject.OrganizationalUnit = []string{p.Subject.OrganizationalUnit}
	}
	if p.IncludeSKI {
		ski, err := SubjectKeyID(csr.PublicKey)
		if err != nil {
			return nil, newErr(ErrBadKey, p.Name, err, "CSR key cannot be encoded: %v", err)
		}
		tmpl.SubjectKeyId = ski
	}
	id := IssuerID(issuer)
	fill := func(urls []string) []string {
		var out []string
		for _, u := range urls {
			out = append(out, strings.ReplaceAll(u, issuerPlaceholder, id))
		}
		return out
	}
	if p.ShortLived {
		// RFC 9608 section 2: noRevAvail, non-critical, value NULL, and no CRL distribution point or OCSP
		// responder beside it (Parse refuses a short-lived profile that names one; this holds for a Profile
		// built by hand too).
		tmpl.ExtraExtensions = []pkix.Extension{{Id: OIDNoRevAvail, Critical: false, Value: []byte{0x05, 0x00}}}
	} else {
		tmpl.CRLDistributionPoints = fill(p.CRLDistributionPoints)
		tmpl.OCSPServer = fill(p.OCSPServers)
	}
	tmpl.IssuingCertificateURL = fill(p.IssuingCertificateURLs)
	if p.Role != "" {
		// RFC 5280 4.2.1.4: the role's policy, non-critical. An issuer that names policies must name this one
		// (or anyPolicy), or relying parties that process policies would refuse the certificate; an issuer
		// made before policies existed names none and is let through (docs/trust-anchors.md).
		arc := p.PolicyArc()
		if len(issuer.Policies) > 0 && !arc.Allows(issuer, p.Role) {
			return nil, newErr(ErrIssuer, p.Name, nil, "issuer %q may not issue %s certificates: it carries the policies %v, not %s (the %s role under %s); use a CA for that role or roll this one over",
				issuerName, p.Role, issuer.Policies, arc.Policy(p.Role), p.Role, arc)
		}
		tmpl.Policies = []x509.OID{arc.Policy(p.Role)}
	}
	return tmpl, nil
}

// ValidityAt returns the validity (RFC 5280 4.1.2.5) of a certificate issued under p by issuer at now, as
// Template sets it: NotBefore is now, truncated to the second, minus the backdate; NotAfter is NotBefore +
// validity - 1s. It refuses, with ErrIssuer, an issuer that is not valid at now and a certificate that would
// outlive its issuer: a silently shorter certificate breaks renewal planning.
func (p *Profile) ValidityAt(now time.Time, issuer *x509.Certificate) (notBefore, notAfter time.Time, err error) {
	if issuer == nil {
		return time.Time{}, time.Time{}, newErr(ErrIssuer, p.Name, nil, "no issuer certificate")
	}
	now = now.UTC().Truncate(time.Second)
	if now.Before(issuer.NotBefore) || now.After(issuer.NotAfter) {
		return time.Time{}, time.Time{}, newErr(ErrIssuer, p.Name, nil, "issuer %q is not valid at %s (valid %s to %s)",
			issuer.Subject.String(), now.Format(time.RFC3339), issuer.NotBefore.UTC().Format(time.RFC3339), issuer.NotAfter.UTC().Format(time.RFC3339))
	}
	notBefore = now.Add(-p.Backdate)
	notAfter = notBefore.Add(p.Validity - time.Second)
	if notAfter.After(issuer.NotAfter) {
		return time.Time{}, time.Time{}, newErr(ErrIssuer, p.Name, nil,
			"certificate would expire %s, after its issuer %q (expires %s); profile %q validity is %s: rotate the issuing CA or use a profile with a shorter validity",
			notAfter.Format(time.RFC3339), issuer.Subject.String(), issuer.NotAfter.UTC().Format(time.RFC3339), p.Name, formatDuration(p.Validity))
	}
	return notBefore, notAfter, nil
}

// OIDNoRevAvail is id-ce-noRevAvail (RFC 9608 section 2, X.509 (2019) 9.2.2.7): the CA publishes no
// revocation information for the certificate.
var OIDNoRevAvail = asn1.ObjectIdentifier{2, 5, 29, 56}

// SubjectKeyID computes a key identifier with RFC 7093 section 2 method 1: the leftmost 160 bits of the
// SHA-256 hash of the subjectPublicKey BIT STRING value (without tag, length and unused-bits octet).
func SubjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("parse SubjectPublicKeyInfo: %w", err)
	}
	h := sha256.Sum256(spki.PublicKey.Bytes)
	return h[:20], nil
}

// IssuerID names an issuing CA in URLs ("{issuer}" in a profile's CRL, OCSP and CA-issuers URLs): its subject
// CN folded to lower-case letters, digits and hyphens, then "-" and the first 8 hex digits of its subject key
// identifier, so that a re-keyed CA with the same name gets a CRL of its own. The CRL publisher names its
// files with the same function.
func IssuerID(issuer *x509.Certificate) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(issuer.Subject.CommonName) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	id := strings.TrimRight(b.String(), "-")
	if len(id) > 48 {
		id = strings.TrimRight(id[:48], "-")
	}
	if id == "" {
		id = "ca"
	}
	if len(issuer.SubjectKeyId) > 0 {
		id += "-" + hex.EncodeToString(issuer.SubjectKeyId[:min(4, len(issuer.SubjectKeyId))])
	}
	return url.PathEscape(id)
}
