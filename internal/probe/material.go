package probe

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
)

// identity is a certificate chain the probe presents, with its private key.
type identity struct {
	cert   tls.Certificate
	serial string // hex, when the RA issued it
}

// material is every certificate of a run.
type material struct {
	good                                          identity
	expired, notYet, wrongEKU, revoked, wrongName *identity
	station, otherEnv                             *identity
	unknownCA, selfSigned, rsa1024, sha1          *identity
	// na holds why a case cannot be run, by case name.
	na        map[string]string
	stationID string
	// role is the role of the probe's profile, the one the target expects.
	role string
	// missingIntermediate is the good identity's leaf alone.
	missingIntermediate *identity
}

// Validity windows of the probe's certificates: an expired one ended an hour ago, one not yet valid starts
// in an hour; beyond the clock skew a relying party allows (minutes), so only a verifier that does not check
// validity accepts them. The rest live MaxProbeValidity at most.
const (
	windowOffset = time.Hour
	windowLength = time.Hour
)

// prepare makes every certificate of the catalogue, revokes the revoked case's and republishes.
func prepare(ctx context.Context, a Authority, o *Options, r *Report) (*material, error) {
	prof := a.RA.Profiles()[o.Profile]
	m := &material{na: map[string]string{}, role: string(prof.Role)}
	now := o.Now().UTC()
	issue := func(caseName, env, product, name string, nb, na time.Time, eku []x509.ExtKeyUsage) (*identity, error) {
		return issueRA(ctx, a, caseName, env, product, o.Profile, prof, name, nb, na, eku)
	}
	var err error
	switch {
	case o.Side == Client && o.ClientCert != nil:
		m.good = identity{cert: *o.ClientCert}
		if m.good.cert.Leaf == nil && len(m.good.cert.Certificate) > 0 {
			if m.good.cert.Leaf, err = x509.ParseCertificate(m.good.cert.Certificate[0]); err != nil {
				return nil, ra.FieldErrorf(ra.KindBadRequest, "client_cert", "the client certificate does not parse: %v", err)
			}
		}
		if m.good.cert.Leaf != nil {
			m.good.serial = m.good.cert.Leaf.SerialNumber.Text(16)
		}
	default:
		id, err := issue(CaseControl, o.Env, o.Product, o.Name, time.Time{}, time.Time{}, nil)
		if err != nil {
			return nil, err
		}
		m.good = *id
	}
	if m.expired, err = issue(CaseExpired, o.Env, o.Product, o.Name, now.Add(-windowOffset-windowLength), now.Add(-windowOffset), nil); err != nil {
		return nil, err
	}
	if m.notYet, err = issue(CaseNotYetValid, o.Env, o.Product, o.Name, now.Add(windowOffset), now.Add(windowOffset+windowLength), nil); err != nil {
		return nil, err
	}
	// The other TLS side's usage only: a client certificate that allows only serverAuth, a server
	// certificate that allows only clientAuth (RFC 5280 4.2.1.12).
	wrong := x509.ExtKeyUsageServerAuth
	if o.Side == Server {
		wrong = x509.ExtKeyUsageClientAuth
	}
	if m.wrongEKU, err = issue(CaseWrongEKU, o.Env, o.Product, o.Name, time.Time{}, time.Time{}, []x509.ExtKeyUsage{wrong}); err != nil {
		return nil, err
	}
	missing, err := issue(CaseMissingIntermediate, o.Env, o.Product, o.Name, time.Time{}, time.Time{}, nil)
	if err != nil {
		return nil, err
	}
	missing.cert.Certificate = missing.cert.Certificate[:1]
	m.missingIntermediate = missing
	if o.Side == Server {
		if m.wrongName, err = issue(CaseWrongName, o.Env, o.Product, wrongName(o.Name), time.Time{}, time.Time{}, nil); err != nil {
			return nil, fmt.Errorf("the wrong-name case's name %q (derived from --name): %w", wrongName(o.Name), err)
		}
	}
	if err := m.addStation(ctx, a, o, now); err != nil {
		return nil, err
	}
	if env, product := otherEnvironment(a.RA, o.Env, o.Profile); env == "" {
		m.na[CaseOtherEnvironment] = fmt.Sprintf("keyward.yaml configures no other environment (but production, which is never probed) with a product line issuing under %q", o.Profile)
	} else if m.otherEnv, err = issue(CaseOtherEnvironment, env, product, o.Name, time.Time{}, time.Time{}, nil); err != nil {
		if k := ra.KindOf(err); k == ra.KindConflict || k == ra.KindNotFound {
			m.na[CaseOtherEnvironment] = fmt.Sprintf("environment %s cannot issue for it: %v", env, err)
			m.otherEnv = nil
		} else {
			return nil, err
		}
	}
	if err := m.throwaway(o, prof, now); err != nil {
		return nil, err
	}
	if m.revoked, err = issue(CaseRevoked, o.Env, o.Product, o.Name, time.Time{}, time.Time{}, nil); err != nil {
		return nil, err
	}
	if err := republish(ctx, a, o, m.revoked, r); err != nil {
		return nil, err
	}
	return m, nil
}

// issueRA makes a key and a CSR and has the RA issue a probe certificate for them.
func issueRA(ctx context.Context, a Authority, caseName, env, product, profName string, prof *profile.Profile, name string, nb, na time.Time, eku []x509.ExtKeyUsage) (*identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: dnsNames(prof, name)}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	row, err := a.RA.IssueProbe(ctx, a.Principal, ra.ProbeRequest{
		IssueRequest: ra.IssueRequest{Profile: profName, Environment: env, ProductLine: product, CSR: csr},
		Case:         caseName, NotBefore: nb, NotAfter: na, ExtKeyUsage: eku,
	})
	if err != nil {
		return nil, fmt.Errorf("issue the %s case's certificate: %w", caseName, err)
	}
	chain, err := a.RA.Chain(ctx, env, product)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(row.DER)
	if err != nil {
		return nil, err
	}
	certs := [][]byte{row.DER}
	// The chain up to but without the root, as a TLS peer sends it (RFC 8446 4.4.2: the root may be
	// omitted, since the relying party must hold it already).
	for _, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(c.RawSubject, c.RawIssuer) && !slices.ContainsFunc(certs, func(b []byte) bool { return bytes.Equal(b, der) }) {
			certs = append(certs, der)
		}
	}
	return &identity{cert: tls.Certificate{Certificate: certs, PrivateKey: key, Leaf: leaf}, serial: row.Serial}, nil
}

// dnsNames returns name as the certificate's one DNS name when the profile allows DNS names and name is one
// of them.
func dnsNames(prof *profile.Profile, name string) []string {
	if r := prof.SANs.DNS; r.Max > 0 && r.Pattern != nil && r.Pattern.MatchString(name) {
		return []string{name}
	}
	return nil
}

// wrongName derives a name the device does not expect from the one it does: "-wrong" added to its first
// label ("ingest.services.example.com" → "ingest-wrong.services.example.com"), in the case of its letters, so
// that a profile's name rule still accepts it.
func wrongName(name string) string {
	first, rest := name, ""
	for i, r := range name {
		if r == '.' {
			first, rest = name[:i], name[i:]
			break
		}
	}
	suffix := "-wrong"
	if first != "" && first == toUpper(first) && first != toLower(first) {
		suffix = "-WRONG"
	}
	return first + suffix + rest
}

func toUpper(s string) string { return string(bytes.ToUpper([]byte(s))) }
func toLower(s string) string { return string(bytes.ToLower([]byte(s))) }

// otherEnvironment returns another environment (not production) and one of its product lines that issue
// under profile, or "".
func otherEnvironment(r *ra.RA, env, profName string) (string, string) {
	h := r.Hierarchy()
	for _, e := range h.EnvironmentNames() {
		if e == env || e == ra.ProductionEnvironment {
			continue
		}
		for _, pl := range h.ProductLineNames(e) {
			if slices.Contains(h.Environments[e].ProductLines[pl].Profiles, profName) {
				return e, pl
			}
		}
	}
	return "", ""
}

// addStation adds a factory station for the run: its certificate is a real station identity of the
// environment, which a device must never take for another role. The station is revoked after the run.
func (m *material) addStation(ctx context.Context, a Authority, o *Options, now time.Time) error {
	creds, err := a.RA.AddStation(ctx, a.Principal, ra.StationRequest{Environment: o.Env, Site: "probe", ProductLines: []string{o.Product},
		Quota: 1, ValidUntil: now.Add(MaxValidity)})
	if err != nil {
		if k := ra.KindOf(err); k == ra.KindConflict || k == ra.KindNotFound {
			m.na[CaseStation] = fmt.Sprintf("no station certificate can be made in %s: %v", o.Env, err)
			return nil
		}
		return fmt.Errorf("add the station case's factory station: %w", err)
	}
	m.stationID = creds.Station.ID
	var certs [][]byte
	rest := creds.CertPEM
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certs = append(certs, b.Bytes)
		}
	}
	key, err := x509.ParsePKCS8PrivateKey(creds.KeyPKCS8)
	if err != nil || len(certs) == 0 {
		return fmt.Errorf("the station case's credentials do not parse: %v", err)
	}
	leaf, err := x509.ParseCertificate(certs[0])
	if err != nil {
		return err
	}
	m.station = &identity{cert: tls.Certificate{Certificate: certs, PrivateKey: key, Leaf: leaf}, serial: leaf.SerialNumber.Text(16)}
	return nil
}

// MaxValidity is how long the station added for a run stays valid at most.
const MaxValidity = ra.MaxProbeValidity

// cleanup revokes the run's station, which is no use once the run is over.
func (m *material) cleanup(ctx context.Context, a Authority, r *Report) {
	if m.stationID == "" {
		return
	}
	if _, err := a.RA.SetStationState(context.WithoutCancel(ctx), a.Principal, m.stationID, "revoked"); err != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("the run's factory station %s could not be revoked: %v; revoke it with 'keyward station revoke %s'", m.stationID, err, m.stationID))
		return
	}
	r.Notes = append(r.Notes, fmt.Sprintf("the run's factory station %s was revoked after the run", m.stationID))
}

// republish revokes the revoked case's certificate through the RA and publishes its issuing CA's CRL and the
// revocation filters of the environment and the product line, so the target can know of it before the case
// runs.
func republish(ctx context.Context, a Authority, o *Options, id *identity, r *Report) error {
	// cessationOfOperation (RFC 5280 5.3.1): the certificate served one probe case and is no longer needed.
	const cessationOfOperation = 5
	entry, err := a.RA.Revoke(ctx, a.Principal, ra.RevokeRequest{Serial: id.serial, Reason: cessationOfOperation})
	if err != nil {
		return fmt.Errorf("revoke the revoked case's certificate %s: %w", id.serial, err)
	}
	pub := &Publication{RevokedSerial: id.serial, CRLIssuer: entry.IssuerID, Filters: map[string]int64{}}
	crl, err := a.Revocation.PublishCRLs(ctx, entry.IssuerID, o.CRL)
	if err != nil {
		return fmt.Errorf("publish the CRL of %s: %w", entry.IssuerID, err)
	}
	pub.CRLNumber = crl.Number
	if o.Publish != nil {
		var buf bytes.Buffer
		if err := a.Revocation.WriteCRL(ctx, crl, &buf); err != nil {
			return err
		}
		if len(id.cert.Certificate) < 2 {
			return fmt.Errorf("the revoked case's certificate %s came without its issuing CA", id.serial)
		}
		caCert, err := x509.ParseCertificate(id.cert.Certificate[1])
		if err != nil {
			return err
		}
		// The path the public listener serves it at, which the certificates' CRL distribution points name.
		if err := o.Publish(revocation.CRLPath(caCert), buf.Bytes()); err != nil {
			return err
		}
	}
	for _, product := range []string{"", o.Product} {
		res, err := a.Revocation.BuildFilter(ctx, a.Principal, revocation.FilterRequest{Environment: o.Env, Product: product})
		if err != nil {
			if product == "" && ra.KindOf(err) == ra.KindConflict {
				r.Notes = append(r.Notes, fmt.Sprintf("the environment's revocation filter was not rebuilt: %v", err))
				continue
			}
			return fmt.Errorf("build the revocation filter of %s: %w", revocation.Scope(o.Env, product), err)
		}
		pub.Filters[res.Scope] = res.Version
		if o.Publish != nil {
			if err := o.Publish("/filter/"+res.Scope+".kwf", res.Data); err != nil {
				return err
			}
		}
	}
	r.Publication = pub
	return nil
}

// throwaway makes the cases that no Keyward key may sign: under a CA generated in memory for this run.
func (m *material) throwaway(o *Options, prof *profile.Profile, now time.Time) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca, err := throwawayCA("Keyward probe throwaway CA (trusted by no one)", caKey, x509.ECDSAWithSHA256, now)
	if err != nil {
		return err
	}
	leafTmpl := func() *x509.Certificate {
		t := &x509.Certificate{
			Subject: pkix.Name{CommonName: o.Name}, DNSNames: dnsNames(prof, o.Name),
			NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(MaxValidity),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: slices.Clone(prof.ExtKeyUsage),
		}
		if prof.Role != "" {
			t.Policies = []x509.OID{prof.PolicyArc().Policy(prof.Role)}
		}
		return t
	}
	ecKey := func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
	if m.unknownCA, err = throwawayLeaf(leafTmpl(), ca, caKey, ecKey); err != nil {
		return err
	}
	// Self-signed: the leaf is its own issuer.
	k, err := ecKey()
	if err != nil {
		return err
	}
	t := leafTmpl()
	if t.SerialNumber, err = serial(); err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, t, t, k.Public(), k)
	if err != nil {
		return fmt.Errorf("self-signed case: %w", err)
	}
	m.selfSigned = &identity{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}}
	// RSA-1024: below every current minimum (NIST SP 800-131A Rev. 2: 2048 bits; Keyward's profiles: 3072).
	if m.rsa1024, err = throwawayLeaf(leafTmpl(), ca, caKey, func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 1024) }); err != nil {
		return err
	}
	// SHA-1: a good key in a certificate signed with SHA-1 (RFC 9155, CA/B BR 7.1.3.2: not for new
	// signatures), by an RSA throwaway CA since Go signs SHA-1 only with RSA.
	rsaCAKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	rsaCA, err := throwawayCA("Keyward probe throwaway RSA CA (trusted by no one)", rsaCAKey, x509.SHA256WithRSA, now)
	if err != nil {
		return err
	}
	st := leafTmpl()
	st.SignatureAlgorithm = x509.SHA1WithRSA
	if m.sha1, err = throwawayLeaf(st, rsaCA, rsaCAKey, ecKey); err != nil {
		return err
	}
	m.na[CaseP192] = "Go's crypto/tls and crypto/ecdsa have no P-192 (secp192r1), and Keyward uses only vetted cryptography, so the probe cannot prove possession of a P-192 key in a handshake; a certificate sent with a signature it cannot make would be refused for the signature, which shows nothing about the curve. Check it with a TLS stack that still has P-192"
	return nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func throwawayCA(cn string, key crypto.Signer, alg x509.SignatureAlgorithm, now time.Time) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: cn, Organization: []string{"Keyward probe"}},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(MaxValidity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SignatureAlgorithm: alg,
	}
	der, err := x509.CreateCertificate(rand.Reader, t, t, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("throwaway CA: %w", err)
	}
	return x509.ParseCertificate(der)
}

func throwawayLeaf(t *x509.Certificate, ca *x509.Certificate, caKey crypto.Signer, newKey func() (crypto.Signer, error)) (*identity, error) {
	k, err := newKey()
	if err != nil {
		return nil, err
	}
	if t.SerialNumber, err = serial(); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, t, ca, k.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("throwaway certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &identity{cert: tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: k, Leaf: leaf}}, nil
}
