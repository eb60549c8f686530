package edhoc

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/revocation/filter"
	"github.com/keyward/keyward/pkg/trust"
)

// Role is what a Keyward certificate's holder is, as a relying party tells it from the certificate.
type Role string

// Roles of Keyward end-entity certificates.
const (
	// RoleDevice is a device identity (the implant-identity profile): TLS client only.
	RoleDevice Role = "device"
	// RoleGateway is a gateway or clinician programmer (the gateway-identity profile): TLS client and server.
	RoleGateway Role = "gateway"
	// RoleStation is a factory station's TLS client certificate. A station talks to Keyward's EST
	// service during manufacturing and never takes part in a device session.
	RoleStation Role = "station"
	// RoleService is a cloud service (the cloud-service profile).
	RoleService Role = "service"
	// RoleOperator is an operator's certificate.
	RoleOperator Role = "operator"
	// RolePinned is a credential the verifier was given directly (KeySet), with no certificate policy.
	RolePinned Role = "pinned"
)

// stationCASuffix ends the common name of every environment's station CA ("dev factory stations CA").
const stationCASuffix = " factory stations CA"

// ClassifyCertificate tells the role of a verified Keyward chain (end-entity first, anchor last) whose
// certificate policies are under arc (pkg/certpolicy: keyward.yaml's policy_arc).
//
// A certificate that carries one role policy has that role, provided every CA between it and the anchor carries
// that role's policy (or anyPolicy) too; a CA that carries no policies at all (one created before role
// policies) passes only with allowCAsWithoutPolicies. A certificate with several role policies is refused.
//
// A certificate with no role policy comes from a hierarchy made before role policies; its role follows the
// shapes Keyward issued then:
//
//   - station: issued by the environment's station CA (common name ending in " factory stations CA", a
//     direct child of the root), or with the factory site as subject organizationalUnit; either sign
//     suffices, so a station certificate is never mistaken for anything else;
//   - gateway: extended key usage clientAuth and serverAuth (gateway-identity);
//   - device: extended key usage clientAuth only, digitalSignature key usage (implant-identity).
//
// Anything else has no role here and is refused.
func ClassifyCertificate(chain []*x509.Certificate, arc certpolicy.Arc, allowCAsWithoutPolicies bool) (Role, error) {
	if len(chain) < 2 {
		return "", fmt.Errorf("a chain of %d certificates has no issuer", len(chain))
	}
	if arc.IsZero() {
		arc = certpolicy.MustParseArc(certpolicy.DefaultArc)
	}
	leaf, issuer := chain[0], chain[1]
	switch roles := arc.Roles(leaf); len(roles) {
	case 0:
	case 1:
		for _, ca := range chain[1 : len(chain)-1] {
			if len(ca.Policies) == 0 && allowCAsWithoutPolicies {
				continue
			}
			if !arc.Allows(ca, roles[0]) {
				return "", fmt.Errorf("the certificate claims the %s role, which CA %q may not vouch for (its policies: %v)", roles[0], ca.Subject.CommonName, ca.Policies)
			}
		}
		return Role(roles[0]), nil
	default:
		return "", fmt.Errorf("the certificate claims several roles %v", roles)
	}
	if len(leaf.Subject.OrganizationalUnit) > 0 || hasSuffix(issuer.Subject.CommonName, stationCASuffix) {
		return RoleStation, nil
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return "", fmt.Errorf("key usage lacks digitalSignature")
	}
	client, server := false, false
	for _, u := range leaf.ExtKeyUsage {
		client = client || u == x509.ExtKeyUsageClientAuth
		server = server || u == x509.ExtKeyUsageServerAuth
	}
	switch {
	case client && server:
		return RoleGateway, nil
	case client && len(leaf.ExtKeyUsage) == 1 && len(leaf.UnknownExtKeyUsage) == 0:
		return RoleDevice, nil
	}
	return "", fmt.Errorf("no role policy under %s, and the extended key usage fits no Keyward end-entity profile made before role policies", arc)
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }

// CertVerifier verifies Keyward certificates as a relying party: the chain to the environment's trust
// anchors at the current time, the holder's role, and revocation by the signed revocation filter. It
// resolves 'x5chain' (the chain travels in ID_CRED_x) and 'x5t' (the certificate is among Known).
type CertVerifier struct {
	// Anchors are the environment's roots (pkg/trust).
	Anchors *trust.Anchors
	// Intermediates are CA certificates the verifier holds (issuing CAs), used with those an x5chain
	// carries.
	Intermediates []*x509.Certificate
	// Known are end-entity certificates peers may name by 'x5t'.
	Known []*x509.Certificate
	// Filter is the verified revocation filter of the environment (filter.Verify); required. A filter
	// past its NextUpdate is refused as stale.
	Filter *filter.Filter
	// Roles are the roles accepted; empty refuses everything.
	Roles []Role
	// PolicyArc is the arc of the environment's role policies (keyward.yaml's policy_arc); zero means
	// certpolicy.DefaultArc.
	PolicyArc certpolicy.Arc
	// AllowCAsWithoutPolicies accepts CAs that carry no certificate policies (created before role policies) in
	// a chain whose end-entity certificate claims a role; see ClassifyCertificate.
	AllowCAsWithoutPolicies bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// VerifyCredential implements CredentialVerifier.
func (v *CertVerifier) VerifyCredential(id *IDCred) (*PeerCredential, error) {
	var leaf *x509.Certificate
	inter := slices.Clone(v.Intermediates)
	switch {
	case id.X5Chain != nil:
		for j, der := range id.X5Chain {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("%w: x5chain certificate %d: %v", ErrMalformed, j, err)
			}
			if j == 0 {
				leaf = c
			} else {
				inter = append(inter, c)
			}
		}
		if id.X5T != nil && !id.X5T.Matches(leaf.Raw) {
			return nil, fmt.Errorf("%w: x5t does not match the x5chain end-entity certificate", ErrMalformed)
		}
	case id.X5T != nil:
		for _, c := range v.Known {
			if id.X5T.Matches(c.Raw) {
				leaf = c
				break
			}
		}
		if leaf == nil {
			return nil, fmt.Errorf("%w: no known certificate has x5t h'%x'", ErrUnknownCredential, id.X5T.Hash)
		}
	default:
		return nil, fmt.Errorf("%w: ID_CRED_x names no certificate (kid only)", ErrUnknownCredential)
	}
	name := fmt.Sprintf("%q (serial %x)", leaf.Subject.CommonName, leaf.SerialNumber)
	refuse := func(reason error, format string, args ...any) error {
		return &CredentialError{Subject: name, Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
	if v.Anchors == nil {
		return nil, refuse(ErrUntrusted, "the verifier holds no trust anchors")
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	chains, err := v.Anchors.Verify(leaf, inter, now, x509.ExtKeyUsageAny)
	if err != nil {
		return nil, refuse(ErrUntrusted, "%v", err)
	}
	chain := chains[0]
	role, err := ClassifyCertificate(chain, v.PolicyArc, v.AllowCAsWithoutPolicies)
	if err != nil {
		return nil, refuse(ErrRole, "%v", err)
	}
	if !slices.Contains(v.Roles, role) {
		return nil, refuse(ErrRole, "a %s certificate; this endpoint accepts %v", role, v.Roles)
	}
	if v.Filter == nil {
		return nil, refuse(ErrStale, "the verifier holds no revocation filter")
	}
	if !now.Before(v.Filter.NextUpdate()) {
		return nil, refuse(ErrStale, "revocation filter version %d expired at %s", v.Filter.Version(), v.Filter.NextUpdate().Format(time.RFC3339))
	}
	if err := v.Filter.CheckChain(chain); err != nil {
		return nil, refuse(ErrRevoked, "%v", err)
	}
	// RFC 5280 section 4.2.1.3: a key authenticates by signature under digitalSignature and by static DH
	// under keyAgreement. Keyward's profiles issue digitalSignature only, so Keyward peers sign.
	if id.StaticDH && leaf.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
		return nil, refuse(ErrKeyUsage, "the peer authenticates with static DH, which needs the keyAgreement key usage")
	}
	if !id.StaticDH && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, refuse(ErrKeyUsage, "the peer signs, which needs the digitalSignature key usage")
	}
	return &PeerCredential{Cred: bstr(leaf.Raw), PublicKey: leaf.PublicKey, Certificate: leaf, Role: role}, nil
}

// KeySet is a CredentialVerifier of pinned credentials: raw public keys in CCS found by 'kid', and
// certificates accepted as they are (no chain, role or revocation check) found by 'x5t' or 'x5chain'.
// It suits peers provisioned one by one, and the RFC 9529 traces.
type KeySet struct {
	mu      sync.RWMutex
	entries []pinned
}

type pinned struct {
	kid  []byte
	cert []byte // DER
	cred []byte
	pub  crypto.PublicKey
}

// AddCCS pins a CCS credential under kid.
func (k *KeySet) AddCCS(kid, ccs []byte) error {
	pub, err := ParseCCS(ccs)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.entries = append(k.entries, pinned{kid: slices.Clone(kid), cred: slices.Clone(ccs), pub: pub})
	return nil
}

// AddCertificate pins a certificate (DER).
func (k *KeySet) AddCertificate(der []byte) error {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	switch c.PublicKey.(type) {
	case ed25519.PublicKey, *ecdsa.PublicKey, *ecdh.PublicKey:
	default:
		return fmt.Errorf("%w: certificate key %T is not usable in EDHOC", ErrConfig, c.PublicKey)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.entries = append(k.entries, pinned{cert: slices.Clone(der), cred: bstr(der), pub: c.PublicKey})
	return nil
}

// VerifyCredential implements CredentialVerifier.
func (k *KeySet) VerifyCredential(id *IDCred) (*PeerCredential, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, e := range k.entries {
		match := false
		switch {
		case e.cert != nil && id.X5Chain != nil:
			match = bytes.Equal(id.X5Chain[0], e.cert)
		case e.cert != nil && id.X5T != nil:
			match = id.X5T.Matches(e.cert)
		case e.cert == nil && id.KID != nil:
			match = bytes.Equal(id.KID, e.kid)
		}
		if match {
			return &PeerCredential{Cred: e.cred, PublicKey: e.pub, Role: RolePinned}, nil
		}
	}
	return nil, fmt.Errorf("%w: no pinned credential matches ID_CRED_x h'%x'", ErrUnknownCredential, id.Raw)
}
