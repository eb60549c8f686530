package profile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/keystore"
)

// Request is a certificate request as the registration authority hands it to a profile.
type Request struct {
	// CSR is the parsed request; its signature must already have been verified (ParseCSR does).
	CSR *x509.CertificateRequest
	// Role is the requesting principal's role ("factory-station", "ca-officer", ...).
	Role string
}

var (
	oidCommonName         = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOrganization       = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOrganizationalUnit = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidSubjectAltName     = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// Short names of attributes a CSR subject might carry, for messages (RFC 4519, RFC 5280 Appendix A).
var attrNames = []struct {
	oid  asn1.ObjectIdentifier
	name string
}{
	{oidCommonName, "CN"}, {oidOrganization, "O"}, {oidOrganizationalUnit, "OU"},
	{asn1.ObjectIdentifier{2, 5, 4, 6}, "C"}, {asn1.ObjectIdentifier{2, 5, 4, 7}, "L"},
	{asn1.ObjectIdentifier{2, 5, 4, 8}, "ST"}, {asn1.ObjectIdentifier{2, 5, 4, 9}, "STREET"},
	{asn1.ObjectIdentifier{2, 5, 4, 5}, "serialNumber"}, {asn1.ObjectIdentifier{2, 5, 4, 12}, "title"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, "emailAddress"},
	{asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, "DC"},
	{asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, "UID"},
}

func attrName(oid asn1.ObjectIdentifier) string {
	for _, a := range attrNames {
		if a.oid.Equal(oid) {
			return a.name
		}
	}
	return oid.String()
}

// CheckRequest checks req against p: the role may request p, the key is of good quality and of an allowed
// algorithm, the subject holds only what p allows and the CN matches p's rule, and every SAN is of an allowed
// type, matches p's rule and is within p's count. Errors have kind ErrForbidden, ErrBadKey, ErrBadCSR or
// ErrPolicy and read like `subject CN "FOO" does not match profile "implant-identity" rule ^DEMO-[0-9]{8}$`.
func (p *Profile) CheckRequest(req *Request) error {
	if req == nil || req.CSR == nil {
		return newErr(ErrBadCSR, p.Name, nil, "no CSR in request for profile %q", p.Name)
	}
	// allowed_principals: authorisation first, so a refused caller learns nothing about its CSR.
	if !slices.Contains(p.AllowedPrincipals, req.Role) {
		return newErr(ErrForbidden, p.Name, nil, "role %q may not request profile %q (allowed roles: %s)",
			clip(req.Role), p.Name, strings.Join(p.AllowedPrincipals, ", "))
	}
	if err := p.checkKey(req.CSR.PublicKey); err != nil {
		return err
	}
	cn, err := p.checkSubject(req.CSR)
	if err != nil {
		return err
	}
	nSANs, err := p.checkSANs(req.CSR)
	if err != nil {
		return err
	}
	// RFC 5280 4.1.2.6: with an empty subject the certificate must carry a SAN.
	if cn == "" && nSANs == 0 {
		return newErr(ErrPolicy, p.Name, nil, "CSR has neither a subject CN nor a SAN; profile %q needs at least one", p.Name)
	}
	return nil
}

// checkKey applies goodkey (defence in depth: the CSR may not have come through ParseCSR) and key_algorithms.
func (p *Profile) checkKey(pub crypto.PublicKey) error {
	if err := goodkey.Check(pub); err != nil {
		return newErr(ErrBadKey, p.Name, err, "CSR key refused: %v (profile %q allows %s)", err, p.Name, p.algorithmList())
	}
	name := KeyName(pub)
	if alg, err := keystore.AlgorithmOf(pub); err != nil || !slices.Contains(p.KeyAlgorithms, alg) {
		return newErr(ErrPolicy, p.Name, nil, "CSR key is %s; profile %q allows %s", name, p.Name, p.algorithmList())
	}
	return nil
}

// KeyName names a public key the way profiles do ("ecdsa-p256", "rsa-2048", "ed25519"), including keys no
// profile allows, for messages.
func KeyName(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ecdsa-" + strings.ToLower(strings.ReplaceAll(goodkey.CurveName(k.Curve), "-", ""))
	case *rsa.PublicKey:
		if k.N == nil {
			return "rsa"
		}
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	case ed25519.PublicKey:
		return "ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

func (p *Profile) algorithmList() string {
	s := make([]string, len(p.KeyAlgorithms))
	for i, a := range p.KeyAlgorithms {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// checkSubject allows a CN, and O and OU only where they repeat the profile's fixed values; the CA writes the
// subject from the profile, so anything else in the CSR would be silently dropped, which misleads the
// requester. It returns the CN.
func (p *Profile) checkSubject(csr *x509.CertificateRequest) (string, error) {
	var cn string
	nCN := 0
	for _, atv := range csr.Subject.Names {
		val, isString := atv.Value.(string)
		switch {
		case atv.Type.Equal(oidCommonName):
			nCN++
			if !isString {
				return "", newErr(ErrPolicy, p.Name, nil, "subject CN is not a string")
			}
			cn = val
		case atv.Type.Equal(oidOrganization) && p.Subject.Organization != "" && isString && val == p.Subject.Organization:
		case atv.Type.Equal(oidOrganizationalUnit) && p.Subject.OrganizationalUnit != "" && isString && val == p.Subject.OrganizationalUnit:
		default:
			return "", newErr(ErrPolicy, p.Name, nil, "subject attribute %s=%q is not allowed by profile %q (%s)",
				attrName(atv.Type), clip(fmt.Sprint(atv.Value)), p.Name, p.subjectSummary())
		}
	}
	if nCN > 1 {
		return "", newErr(ErrPolicy, p.Name, nil, "subject has %d CNs; profile %q allows one", nCN, p.Name)
	}
	rule := p.Subject.CommonName
	switch {
	case nCN == 0 && p.Subject.CommonNameRequired:
		return "", newErr(ErrPolicy, p.Name, nil, "subject CN is required by profile %q (rule %s)", p.Name, rule)
	case nCN == 0:
		return "", nil
	case rule == nil:
		return "", newErr(ErrPolicy, p.Name, nil, "subject CN %q is not allowed by profile %q (no CN allowed)", clip(cn), p.Name)
	case cn == "":
		// An empty CN attribute is not an absent one; RFC 5280 4.1.2.6 wants an empty subject instead.
		return "", newErr(ErrPolicy, p.Name, nil, "subject CN is empty; omit it or match profile %q rule %s", p.Name, rule)
	case utf8.RuneCountInString(cn) > ubCommonName:
		// RFC 5280 Appendix A.1: ub-common-name is 64.
		return "", newErr(ErrPolicy, p.Name, nil, "subject CN %q is longer than %d characters (RFC 5280 ub-common-name)", clip(cn), ubCommonName)
	case !rule.MatchString(cn):
		return "", newErr(ErrPolicy, p.Name, nil, "subject CN %q does not match profile %q rule %s", clip(cn), p.Name, rule)
	}
	return cn, nil
}

func (p *Profile) subjectSummary() string {
	allowed := []string{}
	if p.Subject.CommonName != nil {
		allowed = append(allowed, "CN")
	}
	if p.Subject.Organization != "" {
		allowed = append(allowed, fmt.Sprintf("O=%q", p.Subject.Organization))
	}
	if p.Subject.OrganizationalUnit != "" {
		allowed = append(allowed, fmt.Sprintf("OU=%q", p.Subject.OrganizationalUnit))
	}
	if len(allowed) == 0 {
		return "the subject must be empty"
	}
	return "allowed: " + strings.Join(allowed, ", ")
}

// GeneralName tags (RFC 5280 4.2.1.6), for naming SAN types Go's parser skips.
var generalNameTypes = map[int]string{
	0: "otherName", 1: "email", 2: "dns", 3: "x400Address", 4: "directoryName", 5: "ediPartyName",
	6: "uri", 7: "ip", 8: "registeredID",
}

// checkSANs applies the sans rules and returns the number of SANs.
func (p *Profile) checkSANs(csr *x509.CertificateRequest) (int, error) {
	// Go's parser silently skips SAN types it does not model (otherName, directoryName, ...); look at the raw
	// extension so such a request is refused rather than quietly certified without them.
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		if t, ok := unsupportedSANType(ext.Value); !ok {
			return 0, newErr(ErrPolicy, p.Name, nil, "SAN of type %s is not allowed by profile %q (dns, uri and ip only)", t, p.Name)
		}
	}
	if len(csr.EmailAddresses) > 0 {
		return 0, newErr(ErrPolicy, p.Name, nil, "SAN email %q not allowed by profile %q (no email SANs allowed)", clip(csr.EmailAddresses[0]), p.Name)
	}
	if err := p.checkNames("dns", "DNS", csr.DNSNames, p.SANs.DNS); err != nil {
		return 0, err
	}
	uris := make([]string, len(csr.URIs))
	for i, u := range csr.URIs {
		uris[i] = u.String()
	}
	if err := p.checkNames("uri", "URI", uris, p.SANs.URI); err != nil {
		return 0, err
	}
	if len(csr.IPAddresses) > 0 && !p.SANs.IP {
		return 0, newErr(ErrPolicy, p.Name, nil, "SAN ip %q not allowed by profile %q (no IP SANs allowed)", csr.IPAddresses[0].String(), p.Name)
	}
	for i, ip := range csr.IPAddresses {
		for _, other := range csr.IPAddresses[:i] {
			if ip.Equal(other) {
				return 0, newErr(ErrPolicy, p.Name, nil, "SAN ip %q appears more than once", ip.String())
			}
		}
	}
	return len(csr.DNSNames) + len(uris) + len(csr.IPAddresses), nil
}

func (p *Profile) checkNames(kind, label string, names []string, rule NameRule) error {
	if len(names) == 0 {
		return nil
	}
	if rule.Max == 0 || rule.Pattern == nil {
		return newErr(ErrPolicy, p.Name, nil, "SAN %s %q not allowed by profile %q (no %s SANs allowed)", kind, clip(names[0]), p.Name, label)
	}
	if len(names) > rule.Max {
		return newErr(ErrPolicy, p.Name, nil, "CSR has %d %s SANs; profile %q allows at most %d", len(names), label, p.Name, rule.Max)
	}
	for i, n := range names {
		if !rule.Pattern.MatchString(n) {
			return newErr(ErrPolicy, p.Name, nil, "SAN %s %q does not match profile %q rule %s", kind, clip(n), p.Name, rule.Pattern)
		}
		if slices.Contains(names[:i], n) {
			return newErr(ErrPolicy, p.Name, nil, "SAN %s %q appears more than once", kind, clip(n))
		}
	}
	return nil
}

// unsupportedSANType walks a SubjectAltName extension value and returns the first GeneralName type other than
// rfc822Name, dNSName, uniformResourceIdentifier and iPAddress, with ok false. Malformed values are left to
// Go's parser, which has already accepted this one.
func unsupportedSANType(der []byte) (string, bool) {
	s := cryptobyte.String(der)
	var names cryptobyte.String
	if !s.ReadASN1(&names, cbasn1.SEQUENCE) {
		return "", true
	}
	for !names.Empty() {
		var tag cbasn1.Tag
		var body cryptobyte.String
		if !names.ReadAnyASN1(&body, &tag) {
			return "", true
		}
		if tag&0xc0 != 0x80 { // GeneralName alternatives are context-specific [n]
			return fmt.Sprintf("tag 0x%02x", uint8(tag)), false
		}
		n := int(tag & 0x1f)
		switch n {
		case 1, 2, 6, 7:
			continue
		}
		if name, ok := generalNameTypes[n]; ok {
			return name, false
		}
		return fmt.Sprintf("[%d]", n), false
	}
	return "", true
}
