package probe

import (
	"crypto/tls"
	"fmt"
)

// The catalogue's case names, in the order they run.
const (
	CaseControl             = "control"
	CaseExpired             = "expired"
	CaseNotYetValid         = "not-yet-valid"
	CaseWrongEKU            = "wrong-eku"
	CaseStation             = "station-role"
	CaseOtherEnvironment    = "other-environment-root"
	CaseUnknownCA           = "unknown-ca"
	CaseSelfSigned          = "self-signed"
	CaseRevoked             = "revoked"
	CaseMissingIntermediate = "missing-intermediate"
	CaseWrongName           = "wrong-name"
	CaseRSA1024             = "rsa-1024"
	CaseP192                = "p-192"
	CaseSHA1                = "sha1-signature"
	CaseTLS12Only           = "tls12-only"
	CaseTLS10               = "tls10"
	CaseWeakCipher          = "weak-cipher"
)

// probeCase is one case as it runs: what the probe presents and offers, and what it expects.
type probeCase struct {
	name, description, expected string
	// id is the identity presented (the probe's client certificate, or its server certificate).
	id     *identity
	serial string
	// na, if set, is why the case cannot run: it is reported N/A.
	na string
	// The protocol versions and cipher suites offered; zero values are crypto/tls's defaults (TLS 1.2 and
	// 1.3, its secure suites).
	minVersion, maxVersion uint16
	cipherSuites           []uint16
}

// weakSuites are the TLS 1.2 cipher suites a device must not negotiate: RC4 and 3DES (RFC 7465, RFC 8996's
// companion deprecations, SWEET32), CBC with HMAC (Lucky Thirteen; RFC 9325 4.2 recommends only AEAD), and
// RSA key transport without forward secrecy (RFC 9325 4.1). As a server the probe can offer only those its
// ECDSA certificate can serve.
func weakSuites(side Side) []uint16 {
	ecdsa := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	}
	if side == Server {
		return ecdsa
	}
	return append(ecdsa,
		tls.TLS_RSA_WITH_RC4_128_SHA,
		tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA,
		tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	)
}

// catalogue lists the cases of a run with their material.
func catalogue(o *Options, m *material) []probeCase {
	what := "client certificate"
	if o.Side == Server {
		what = "server certificate"
	}
	throwaway := " It is made under a CA generated in memory for this run, which the target does not trust either: a refusal may be for the unknown CA alone, and the alert may tell which."
	cases := []probeCase{
		{name: CaseControl, expected: ExpectAccepted, id: &m.good,
			description: fmt.Sprintf("A good %s of %s/%s (profile %s): the target must accept it, or the refusals below prove nothing.", what, o.Env, o.Product, o.Profile)},
		{name: CaseExpired, expected: ExpectRefused, id: m.expired,
			description: fmt.Sprintf("A %s from the environment's issuing CA that expired %s ago (RFC 5280 6.1.3 (a)(2)).", what, windowOffset)},
		{name: CaseNotYetValid, expected: ExpectRefused, id: m.notYet,
			description: fmt.Sprintf("A %s from the environment's issuing CA that becomes valid in %s.", what, windowOffset)},
		{name: CaseWrongEKU, expected: ExpectRefused, id: m.wrongEKU,
			description: fmt.Sprintf("A %s from the environment's issuing CA whose extended key usage allows only the other TLS side (RFC 5280 4.2.1.12).", what)},
		{name: CaseStation, expected: ExpectRefused, id: m.station,
			description: fmt.Sprintf("A real factory station certificate of %s (role station, from the station CA under the environment's root) where the target expects the %s role: a station never passes as a device, gateway or service.", o.Env, m.role)},
		{name: CaseOtherEnvironment, expected: ExpectRefused, id: m.otherEnv,
			description: fmt.Sprintf("A %s of the same profile from another environment's issuing CA: nothing issued under one environment validates under another's root.", what)},
		{name: CaseUnknownCA, expected: ExpectRefused, id: m.unknownCA,
			description: fmt.Sprintf("A %s like the good one, issued by a CA generated in memory for this run, which no one trusts.", what)},
		{name: CaseSelfSigned, expected: ExpectRefused, id: m.selfSigned,
			description: fmt.Sprintf("A self-signed %s with the good one's name, policy and usages.", what)},
		{name: CaseRevoked, expected: ExpectRefused, id: m.revoked,
			description: fmt.Sprintf("A %s from the environment's issuing CA, revoked (cessationOfOperation) before the cases ran; the issuing CA's CRL and the revocation filters were republished.", what)},
		{name: CaseMissingIntermediate, expected: ExpectRefused, id: m.missingIntermediate,
			description: fmt.Sprintf("A good %s sent without its issuing CA certificate: the chain to the anchor cannot be built from what the peer sent.", what)},
		{name: CaseWrongName, expected: ExpectRefused, id: m.wrongName,
			description: fmt.Sprintf("A server certificate from the environment's issuing CA for %q, not the %q the device expects (RFC 9525).", wrongName(o.Name), o.Name)},
		{name: CaseRSA1024, expected: ExpectRefused, id: m.rsa1024,
			description: fmt.Sprintf("A %s with an RSA-1024 key (NIST SP 800-131A Rev. 2 disallows it).%s", what, throwaway)},
		{name: CaseP192, expected: ExpectRefused,
			description: fmt.Sprintf("A %s with a P-192 key (below the 112-bit security of NIST SP 800-131A Rev. 2).", what)},
		{name: CaseSHA1, expected: ExpectRefused, id: m.sha1,
			description: fmt.Sprintf("A %s signed with SHA-1 (RFC 9155 forbids it in TLS 1.2 signatures; its collisions are practical).%s", what, throwaway)},
		{name: CaseTLS12Only, expected: ExpectRefused, id: &m.good, minVersion: tls.VersionTLS12, maxVersion: tls.VersionTLS12,
			description: "The good identity, with only TLS 1.2 offered: Keyward's links are TLS 1.3 only, so a device must not negotiate 1.2."},
		{name: CaseTLS10, expected: ExpectRefused, id: &m.good, minVersion: tls.VersionTLS10, maxVersion: tls.VersionTLS10,
			description: "The good identity, with only TLS 1.0 offered (deprecated by RFC 8996)."},
		{name: CaseWeakCipher, expected: ExpectRefused, id: &m.good, maxVersion: tls.VersionTLS12, cipherSuites: weakSuites(o.Side),
			description: "The good identity, with TLS 1.2 and only weak cipher suites offered: RC4, 3DES, CBC with HMAC, RSA key transport (RFC 7465, RFC 9325)."},
	}
	if o.PeerHasIntermediates {
		cases[9].expected = ExpectAccepted
		cases[9].description += " The target is said to hold the issuing CA itself (--peer-has-intermediates), so it must accept this one."
	}
	for i := range cases {
		c := &cases[i]
		if c.id != nil {
			c.serial = c.id.serial
		}
		if reason, ok := m.na[c.name]; ok {
			c.na = reason
		} else if c.name == CaseWrongName && o.Side == Client {
			c.na = "a server's name is checked by its client: the probe as a TLS client presents client certificates, which a device does not match against a host name"
		} else if c.id == nil && c.na == "" {
			c.na = "no certificate could be made for it"
		}
	}
	return cases
}
