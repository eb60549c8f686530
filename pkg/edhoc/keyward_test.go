package edhoc_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	mrand "math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/edhoc"
	"github.com/keyward/keyward/pkg/revocation/filter"
	"github.com/keyward/keyward/pkg/trust"
)

func TestMain(m *testing.M) {
	pkitest.Hermetic()
	os.Exit(m.Run())
}

// fleet is a dev hierarchy shaped as Keyward issues it: a root, the demo-implant issuing CA, the
// environment's station CA, implant and gateway certificates made from Keyward's default profiles
// (internal/profile/defaults) and a station certificate as 'keyward station add' makes it.
type fleet struct {
	root, issuing, stations *pkitest.CA
	profiles                map[string]*profile.Profile
	anchors                 *trust.Anchors
	filter                  *filter.Filter
}

type holder struct {
	cert  *x509.Certificate
	key   crypto.Signer
	chain [][]byte
}

// arc is the role policy arc of the test fleet: keyward.yaml's default.
var arc = certpolicy.MustParseArc(certpolicy.DefaultArc)

func newFleet(t *testing.T) *fleet {
	t.Helper()
	f := &fleet{root: longCA(t, "dev root CA", nil)}
	f.issuing = longCA(t, "demo-implant dev CA", f.root, arc.Policies(certpolicy.IssuerRoles(false)...)...)
	f.stations = longCA(t, "dev factory stations CA", f.root, arc.Policies(certpolicy.IssuerRoles(true)...)...)
	var err error
	if f.profiles, err = profile.LoadDefaults(); err != nil {
		t.Fatal(err)
	}
	if f.anchors, err = trust.NewAnchors("dev", 0, f.root.Cert); err != nil {
		t.Fatal(err)
	}
	return f
}

// longCA makes a CA valid for 30 years, so that the 15-year implant-identity profile fits under it (the
// profile refuses a certificate that would outlive its issuer); pkitest's CAs live a day.
// It carries the role policies given, as Keyward's CAs below the root do.
func longCA(t *testing.T, cn string, parent *pkitest.CA, policies ...x509.OID) *pkitest.CA {
	t.Helper()
	key := pkitest.Key(t)
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	ski := sha256.Sum256(spki)
	tmpl := &x509.Certificate{SerialNumber: pkitest.Serial(t), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().AddDate(30, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId: ski[:20], Policies: policies}
	issuerCert, issuerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
		issuerCert, issuerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuerCert, key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pkitest.CA{Cert: c, Key: key}
}

// issue makes a certificate as Keyward's CA does for a CSR under one of its default profiles: the
// profile's template (subject, validity, key usage, EKU, SANs, extensions), signed by the issuing CA.
func (f *fleet) issue(t *testing.T, profileName, cn string, dns ...string) *holder {
	t.Helper()
	key := pkitest.Key(t)
	csr, err := profile.ParseCSR(pkitest.CSR(t, key, cn, dns...))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := f.profiles[profileName].Template(&profile.Request{CSR: csr, Role: "ca-officer"}, pkitest.Serial(t), time.Now(), f.issuing.Cert)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.issuing.Cert, key.Public(), f.issuing.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &holder{cert: c, key: key, chain: [][]byte{c.Raw, f.issuing.Cert.Raw}}
}

// publish builds and verifies the environment's revocation filter listing revoked among all.
func (f *fleet) publish(t *testing.T, all []*holder, revoked ...*holder) {
	t.Helper()
	signerKey := pkitest.Key(t)
	signer := f.root.Leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: "dev revocation filter signer"},
		KeyUsage: x509.KeyUsageDigitalSignature, UnknownExtKeyUsage: []asn1.ObjectIdentifier{filter.OIDDocumentSigning}}, signerKey.Public())
	var rev, valid [][]byte
	for _, h := range all {
		isRevoked := false
		for _, r := range revoked {
			isRevoked = isRevoked || r == h
		}
		if isRevoked {
			rev = append(rev, h.cert.SerialNumber.Bytes())
		} else {
			valid = append(valid, h.cert.SerialNumber.Bytes())
		}
	}
	now := time.Now()
	data, _, err := filter.Build(filter.Source{Revoked: rev, ValidCount: uint64(len(valid)), Valid: func(yield func([]byte) error) error {
		for _, v := range valid {
			if err := yield(v); err != nil {
				return err
			}
		}
		return nil
	}}, filter.BuildOptions{Environment: "dev", Version: 1, IssuedAt: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour),
		Signer: signerKey, Chain: [][]byte{signer.Raw}})
	if err != nil {
		t.Fatal(err)
	}
	if f.filter, err = filter.Verify(data, filter.VerifyOptions{Roots: f.anchors.CertPool(), Environment: "dev"}); err != nil {
		t.Fatal(err)
	}
}

func (f *fleet) implant(t *testing.T, serial string) *holder {
	return f.issue(t, "implant-identity", "DEMO-"+serial)
}

func (f *fleet) gateway(t *testing.T) *holder {
	return f.issue(t, "gateway-identity", "GW-WARD-0001", "ward-1.gateways.example.com")
}

// station makes a factory station certificate as 'keyward station add' does (internal/ra/station.go):
// under the environment's station CA, the site as organizationalUnit, a TLS client key.
func (f *fleet) station(t *testing.T) *holder {
	t.Helper()
	key := pkitest.Key(t)
	c := f.stations.Leaf(t, &x509.Certificate{Subject: pkix.Name{Organization: []string{"Keyward Test"}, OrganizationalUnit: []string{"lyon"}, CommonName: "lyon-0a1b2c3d"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Policies: []x509.OID{arc.Policy(certpolicy.Station)}}, key.Public())
	return &holder{cert: c, key: key, chain: [][]byte{c.Raw, f.stations.Cert.Raw}}
}

func (f *fleet) verifier(roles ...edhoc.Role) *edhoc.CertVerifier {
	return &edhoc.CertVerifier{Anchors: f.anchors, Filter: f.filter, Roles: roles}
}

// lossyLink carries requests and replies, dropping and duplicating datagrams at random (a fixed seed, so
// a failure reproduces).
type lossyLink struct {
	rng                  *mrand.Rand
	loss, dup            float64
	sent, dropped, duped int
	responder            *edhoc.Responder
	lastErr              error
}

// roundTrip returns the reply to req, or nil when the request or the reply was lost.
func (l *lossyLink) roundTrip(req []byte) []byte {
	l.sent++
	if l.rng.Float64() < l.loss {
		l.dropped++
		return nil
	}
	reply, err := l.responder.Handle(req, true)
	l.lastErr = err
	if l.rng.Float64() < l.dup { // the network delivers the request twice; the second copy must not disturb
		l.duped++
		again, err2 := l.responder.Handle(req, true)
		if err == nil && (err2 != nil || !bytes.Equal(again, reply)) {
			panic("a duplicated request was not answered with the same reply: " + errString(err2))
		}
	}
	if l.rng.Float64() < l.loss {
		l.dropped++
		return nil
	}
	return reply
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// run performs a whole session over the link with retransmissions, as a CoAP client would.
func run(t *testing.T, l *lossyLink, init *edhoc.Initiator) error {
	t.Helper()
	m1, err := init.Message1()
	if err != nil {
		t.Fatal(err)
	}
	var m2 []byte
	for try := 0; m2 == nil; try++ {
		if try == 40 {
			t.Fatal("message_2 never arrived")
		}
		m2 = l.roundTrip(edhoc.Message1Request(m1))
	}
	if err := init.ProcessMessage2(m2); err != nil {
		return err
	}
	m3, err := init.Message3()
	if err != nil {
		t.Fatal(err)
	}
	_, cR := init.ConnectionIDs()
	var m4 []byte
	for try := 0; m4 == nil; try++ {
		if try == 40 {
			t.Fatal("message_4 never arrived")
		}
		m4 = l.roundTrip(edhoc.Message3Request(cR, m3))
	}
	return init.ProcessMessage4(m4)
}

func newInitiator(t *testing.T, f *fleet, h *holder, roles ...edhoc.Role) *edhoc.Initiator {
	t.Helper()
	cred, err := edhoc.X509Credential(h.chain, h.key, true)
	if err != nil {
		t.Fatal(err)
	}
	i, err := edhoc.NewInitiator(edhoc.Config{Method: edhoc.MethodSigSig, Suites: []edhoc.Suite{edhoc.Suite2}, Credential: cred, Verifier: f.verifier(roles...)})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestKeywardCertificatesOverLossyLink runs implants against a gateway with Keyward-issued certificates
// over a link that loses and duplicates datagrams, and checks what the gateway must refuse.
func TestKeywardCertificatesOverLossyLink(t *testing.T) {
	f := newFleet(t)
	implant, revokedImplant, gw, station := f.implant(t, "00000001"), f.implant(t, "00000002"), f.gateway(t), f.station(t)
	f.publish(t, []*holder{implant, revokedImplant, gw, station}, revokedImplant)
	gwCred, err := edhoc.X509Credential(gw.chain, gw.key, true)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := edhoc.NewResponder(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite2}, Methods: []edhoc.Method{edhoc.MethodSigSig},
		Credential: gwCred, Verifier: f.verifier(edhoc.RoleDevice)})
	if err != nil {
		t.Fatal(err)
	}
	link := &lossyLink{rng: mrand.New(mrand.NewPCG(9528, 9529)), loss: 0.3, dup: 0.3, responder: resp}

	t.Run("implant completes", func(t *testing.T) {
		for n := range 5 {
			init := newInitiator(t, f, implant, edhoc.RoleGateway)
			if err := run(t, link, init); err != nil {
				t.Fatalf("session %d: %v", n, err)
			}
			cI, cR := init.ConnectionIDs()
			rs := resp.Session(cR)
			if rs == nil || !rs.Complete() {
				t.Fatalf("session %d: the Responder has no complete session for C_R %x", n, cR)
			}
			if got := init.Peer().Certificate.Subject.CommonName; got != "GW-WARD-0001" || init.Peer().Role != edhoc.RoleGateway {
				t.Fatalf("Initiator authenticated %q as %s", got, init.Peer().Role)
			}
			if rs.Peer().Certificate.Subject.CommonName != "DEMO-00000001" || rs.Peer().Role != edhoc.RoleDevice {
				t.Fatalf("Responder authenticated %q as %s", rs.Peer().Certificate.Subject.CommonName, rs.Peer().Role)
			}
			oi, err := init.OSCORE()
			if err != nil {
				t.Fatal(err)
			}
			or, err := rs.OSCORE()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(oi.MasterSecret, or.MasterSecret) || !bytes.Equal(oi.MasterSalt, or.MasterSalt) ||
				!bytes.Equal(oi.SenderID, or.RecipientID) || !bytes.Equal(oi.SenderID, cR) || !bytes.Equal(or.SenderID, cI) {
				t.Fatalf("session %d: the two ends derived different OSCORE contexts", n)
			}
			ei, _ := init.Exporter(40000, []byte("ctx"), 24)
			er, _ := rs.Exporter(40000, []byte("ctx"), 24)
			if len(ei) != 24 || !bytes.Equal(ei, er) {
				t.Fatalf("exporters differ")
			}
		}
		if link.dropped == 0 || link.duped == 0 {
			t.Fatalf("the link dropped %d and duplicated %d of %d datagrams; the test exercised no loss", link.dropped, link.duped, link.sent)
		}
	})

	refused := func(t *testing.T, h *holder, want error) {
		t.Helper()
		init := newInitiator(t, f, h, edhoc.RoleGateway)
		m1, _ := init.Message1()
		m2, err := resp.Handle(edhoc.Message1Request(m1), true)
		if err != nil {
			t.Fatal(err)
		}
		if err := init.ProcessMessage2(m2); err != nil {
			t.Fatal(err)
		}
		m3, _ := init.Message3()
		_, cR := init.ConnectionIDs()
		reply, err := resp.Handle(edhoc.Message3Request(cR, m3), true)
		if !errors.Is(err, want) || !errors.Is(err, edhoc.ErrCredential) {
			t.Fatalf("message_3 of %s: got %v, want %v", h.cert.Subject.CommonName, err, want)
		}
		if rs := resp.Session(cR); rs != nil {
			t.Fatalf("a refused session is still held")
		}
		// The Initiator gets an error message in place of message_4, with no detail of the refusal.
		err = init.ProcessMessage4(reply)
		var pe *edhoc.PeerError
		if !errors.As(err, &pe) || pe.Message.Code != edhoc.ErrCodeUnspecified || pe.Message.Diagnostic != "authentication failed" {
			t.Fatalf("Initiator: %v", err)
		}
	}
	t.Run("station certificate refused", func(t *testing.T) { refused(t, station, edhoc.ErrRole) })
	t.Run("revoked implant refused", func(t *testing.T) { refused(t, revokedImplant, edhoc.ErrRevoked) })

	t.Run("implant from another environment refused", func(t *testing.T) {
		other := newFleet(t)
		refused(t, other.implant(t, "00000009"), edhoc.ErrUntrusted)
	})

	t.Run("x5t by reference", func(t *testing.T) {
		v := f.verifier(edhoc.RoleDevice)
		v.Known, v.Intermediates = []*x509.Certificate{implant.cert}, []*x509.Certificate{f.issuing.Cert}
		r, err := edhoc.NewResponder(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite2}, Credential: gwCred, Verifier: v})
		if err != nil {
			t.Fatal(err)
		}
		cred, err := edhoc.X509Credential(implant.chain[:1], implant.key, false)
		if err != nil {
			t.Fatal(err)
		}
		init, err := edhoc.NewInitiator(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite2}, Credential: cred, Verifier: f.verifier(edhoc.RoleGateway)})
		if err != nil {
			t.Fatal(err)
		}
		if err := run(t, &lossyLink{rng: mrand.New(mrand.NewPCG(3, 4)), responder: r}, init); err != nil {
			t.Fatal(err)
		}
		// A certificate the Responder does not hold is an unknown credential, answered with error code 3.
		stranger := f.implant(t, "00000004")
		cred, err = edhoc.X509Credential(stranger.chain[:1], stranger.key, false)
		if err != nil {
			t.Fatal(err)
		}
		init, err = edhoc.NewInitiator(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite2}, Credential: cred, Verifier: f.verifier(edhoc.RoleGateway)})
		if err != nil {
			t.Fatal(err)
		}
		m1, _ := init.Message1()
		m2, err := r.Handle(edhoc.Message1Request(m1), true)
		if err != nil {
			t.Fatal(err)
		}
		if err := init.ProcessMessage2(m2); err != nil {
			t.Fatal(err)
		}
		m3, _ := init.Message3()
		_, cR := init.ConnectionIDs()
		reply, err := r.Handle(edhoc.Message3Request(cR, m3), true)
		if !errors.Is(err, edhoc.ErrUnknownCredential) {
			t.Fatalf("unknown x5t: %v", err)
		}
		if em, perr := edhoc.ParseError(reply); perr != nil || em.Code != edhoc.ErrCodeUnknownCredential {
			t.Fatalf("reply to an unknown credential: %x", reply)
		}
	})

	t.Run("implant refuses a device posing as its gateway", func(t *testing.T) {
		other := f.implant(t, "00000003")
		f.publish(t, []*holder{implant, revokedImplant, gw, station, other}, revokedImplant)
		cred, err := edhoc.X509Credential(other.chain, other.key, true)
		if err != nil {
			t.Fatal(err)
		}
		r, err := edhoc.NewResponder(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite2}, Credential: cred, Verifier: f.verifier(edhoc.RoleDevice)})
		if err != nil {
			t.Fatal(err)
		}
		init := newInitiator(t, f, implant, edhoc.RoleGateway)
		m1, _ := init.Message1()
		m2, err := r.Handle(edhoc.Message1Request(m1), true)
		if err != nil {
			t.Fatal(err)
		}
		if err := init.ProcessMessage2(m2); !errors.Is(err, edhoc.ErrRole) {
			t.Fatalf("implant accepted a device as its gateway: %v", err)
		}
	})

	t.Run("stale revocation filter refused", func(t *testing.T) {
		v := f.verifier(edhoc.RoleDevice)
		v.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } // past NextUpdate
		r, err := edhoc.NewResponder(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite2}, Credential: gwCred, Verifier: v})
		if err != nil {
			t.Fatal(err)
		}
		init := newInitiator(t, f, implant, edhoc.RoleGateway)
		m1, _ := init.Message1()
		m2, _ := r.Handle(edhoc.Message1Request(m1), true)
		if err := init.ProcessMessage2(m2); err != nil {
			t.Fatal(err)
		}
		m3, _ := init.Message3()
		_, cR := init.ConnectionIDs()
		if _, err := r.Handle(edhoc.Message3Request(cR, m3), true); !errors.Is(err, edhoc.ErrStale) {
			t.Fatalf("stale filter: %v", err)
		}
	})

	t.Run("replayed message_1 refused", func(t *testing.T) {
		init := newInitiator(t, f, implant, edhoc.RoleGateway)
		if err := run(t, &lossyLink{rng: mrand.New(mrand.NewPCG(1, 2)), responder: resp}, init); err != nil {
			t.Fatal(err)
		}
		if _, err := init.Message1(); !errors.Is(err, edhoc.ErrState) {
			t.Fatalf("Message1 after the session: %v", err)
		}
		m1 := init.Transcript().Message1 // what an eavesdropper recorded
		reply, err := resp.Handle(edhoc.Message1Request(m1), true)
		if !errors.Is(err, edhoc.ErrReplay) {
			t.Fatalf("replayed message_1: %v", err)
		}
		if em, perr := edhoc.ParseError(reply); perr != nil || em.Code != edhoc.ErrCodeUnspecified {
			t.Fatalf("reply to a replay is not an error message: %x", reply)
		}
	})

	t.Run("message_3 of another session refused", func(t *testing.T) {
		a, b := newInitiator(t, f, implant, edhoc.RoleGateway), newInitiator(t, f, implant, edhoc.RoleGateway)
		for _, i := range []*edhoc.Initiator{a, b} {
			m1, _ := i.Message1()
			m2, err := resp.Handle(edhoc.Message1Request(m1), true)
			if err != nil {
				t.Fatal(err)
			}
			if err := i.ProcessMessage2(m2); err != nil {
				t.Fatal(err)
			}
		}
		m3a, _ := a.Message3()
		_, cRa := a.ConnectionIDs()
		_, cRb := b.ConnectionIDs()
		if _, err := resp.Handle(edhoc.Message3Request(cRb, m3a), true); !errors.Is(err, edhoc.ErrDecrypt) {
			t.Fatalf("A's message_3 sent to B's session: %v", err)
		}
		if resp.Session(cRb) != nil {
			t.Fatal("the attacked session is still held")
		}
		// A's own session is untouched and completes.
		m4, err := resp.Handle(edhoc.Message3Request(cRa, m3a), true)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.ProcessMessage4(m4); err != nil {
			t.Fatal(err)
		}
	})
}
