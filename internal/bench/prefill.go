package bench

// The prefill of 'bench issue --prefill N': before the timed part, the store receives N devices enrolled by a
// factory station under the issuing CA that the benchmark then issues from, each with what an EST enrollment
// stores (internal/ra/enroll.go): its certificate, the glossary row of its key, its registry row and the audit
// event that records the three with their state, chained after the events before it. The rows go in through
// the backend's bulk path (store.BulkLoader).
//
// The certificates are real, each with a P-256 key of its own, a random serial and its own device serial,
// signed with the CA's key. The first goes through the full path (profile template, lint, signature); the
// others are stamped from it by issuer.Stamp (Prepare: the linted TBSCertificate with the serial, common name,
// subject key and key identifier of each, as a factory batch's and the online path's certificates are made),
// then signed here. The stamp's Sign would check every signature, which costs twice the signature and would
// make the certificates the load's bottleneck; one certificate in prefillCheckEvery is checked instead (parsed,
// its signature verified, compared with its rows). Nothing in the store tells a prefilled device from an
// enrolled one but the station's usage count, which the load does not raise.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

const (
	benchEnv     = "dev"
	benchProduct = "demo-implant"
	// deviceSerials is how many device serials the profile's common-name rule (DEMO- and eight digits) allows.
	deviceSerials = 100_000_000
	// prefillCheckEvery: one stamped certificate in this many is parsed again and compared with its rows.
	prefillCheckEvery = 4096
)

// deviceSerial is the device serial (and certificate common name) of index i, as writeCSRs names them.
func deviceSerial(i int) string { return fmt.Sprintf("DEMO-%08d", i%deviceSerials) }

// prefilled is what the prefill did.
type prefilled struct {
	count   int64
	seconds float64
	settled string
	bytes   int64
}

// prefill enrolls count devices, with device serials from index first on, into n's store through its bulk
// path, then settles the store for the measurement and measures its size.
func prefill(ctx context.Context, n *node.Node, count, first int, progress func(string, ...any)) (*prefilled, error) {
	loader, ok := n.Store.(store.BulkLoader)
	if !ok {
		return nil, fmt.Errorf("bench: the %T store has no bulk path for --prefill", n.Store)
	}
	// The station that enrolled them: a real one, with its certificate and audit events.
	cred, err := n.RA.AddStation(ctx, ra.Principal{ID: "bench", Role: ra.RoleAdmin},
		ra.StationRequest{Environment: benchEnv, Site: "prefill", ProductLines: []string{benchProduct}, Name: "prefill-station"})
	if err != nil {
		return nil, fmt.Errorf("bench: prefill station: %w", err)
	}
	f, err := newFactory(ctx, n, cred.Station, first, count)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs := make(chan *store.Enrolled, 8192)
	var (
		nextIndex atomic.Int64
		genErr    error
		errOnce   sync.Once
		wg        sync.WaitGroup
	)
	nextIndex.Store(1) // index 0 is the fully linted certificate the stamp was made from
	recs <- f.head
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := nextIndex.Add(1) - 1
				if i >= int64(count) || ctx.Err() != nil {
					return
				}
				r, err := f.record(ctx, int(i))
				if err != nil {
					errOnce.Do(func() { genErr = err })
					cancel()
					return
				}
				select {
				case recs <- r:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(recs) }()
	next := func() (*store.Enrolled, error) {
		r, ok := <-recs
		if !ok {
			wg.Wait()
			if genErr != nil {
				return nil, genErr
			}
			return nil, ctx.Err()
		}
		return r, nil
	}

	progress("prefill: enrolling %d devices (certificate, key, device, audit event each) through the store's bulk path (not timed)", count)
	start := time.Now()
	last := start
	loaded, err := loader.LoadEnrolled(ctx, next, func(done int64) {
		if t := time.Now(); t.Sub(last) >= 5*time.Second || done == int64(count) {
			last = t
			progress("  %d of %d stored, %.0f/s", done, count, float64(done)/t.Sub(start).Seconds())
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bench: prefill: %w", err)
	}
	if loaded != int64(count) {
		return nil, fmt.Errorf("bench: prefill stored %d devices, want %d", loaded, count)
	}
	res := &prefilled{count: loaded, seconds: time.Since(start).Seconds()}
	progress("prefill: %d devices in %.1fs (%.0f/s); settling the store", loaded, res.seconds, float64(loaded)/res.seconds)
	if res.settled, err = loader.SettleBulk(ctx); err != nil {
		return nil, err
	}
	if res.bytes, err = loader.SizeBytes(ctx); err != nil {
		return nil, err
	}
	progress("prefill: %s; store %d bytes, %.0f per certificate", res.settled, res.bytes, float64(res.bytes)/float64(loaded))
	return res, nil
}

// enrollFactory makes the prefill's records: the certificates of one issuance time under the benchmark's
// issuing CA and profile, as the station would have had them issued.
type enrollFactory struct {
	iss     *ca.Issuer
	prof    *profile.Profile
	stamp   *issuer.Stamp
	signer  *certSigner
	station *store.Station
	first   int
	now     time.Time
	name    pkix.Name // the subject of the first certificate; the others differ in the common name only
	// notBefore and notAfter are the validity every stamped certificate shares.
	notBefore, notAfter time.Time
	warnings            string
	head                *store.Enrolled // the record of the first certificate
}

// newFactory issues the first certificate (index first) through the full path and makes the stamps of the
// others from it.
func newFactory(ctx context.Context, n *node.Node, st *store.Station, first, count int) (*enrollFactory, error) {
	caID := hierarchy.IssuingID(benchEnv, benchProduct)
	iss, err := n.CA.Issuer(ctx, caID)
	if err != nil {
		return nil, err
	}
	f := &enrollFactory{iss: iss, prof: n.Profiles[benchProfile], station: st, first: first, now: time.Now().UTC().Truncate(time.Second)}
	if f.prof == nil {
		return nil, fmt.Errorf("bench: no profile %q", benchProfile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := issuer.NewSerial(time.Now())
	if err != nil {
		return nil, err
	}
	cn := deviceSerial(first)
	tmpl, err := f.template(serial, cn, &key.PublicKey)
	if err != nil {
		return nil, err
	}
	p, err := iss.Prepare(tmpl, &key.PublicKey, issuer.MaxDERSize(f.prof.MaxDERSize))
	if err != nil {
		return nil, err
	}
	der, err := iss.Issue(ctx, p)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	f.name, f.notBefore, f.notAfter = cert.Subject, cert.NotBefore, cert.NotAfter
	if w := p.Warnings(); len(w) > 0 {
		names := make([]string, len(w))
		for i, x := range w {
			names[i] = x.Lint
		}
		f.warnings = strings.Join(names, ",")
	}
	sk, err := issuer.NewSubjectKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if f.head, err = f.enrolled(serial, cn, sk, der); err != nil {
		return nil, err
	}
	if count == 1 {
		return f, nil
	}
	f.stamp, err = iss.NewStamp(p, der, issuer.StampConfig{Template: f.template, Check: f.check, ProbeCN: deviceSerial(first + 1),
		MaxDERSize: f.prof.MaxDERSize})
	if err != nil {
		return nil, fmt.Errorf("bench: prefill stamp: %w", err)
	}
	signer, err := n.Keys.Signer(ctx, iss.CA().KeyURI, keystore.PurposeCASigning)
	if err != nil {
		return nil, err
	}
	if f.signer, err = newCertSigner(cert, signer); err != nil {
		return nil, fmt.Errorf("bench: prefill: %w", err)
	}
	// A stamped certificate is checked before any other is made.
	if _, err := f.record(ctx, prefillCheckEvery); err != nil {
		return nil, err
	}
	return f, nil
}

// template and check are the profile's, for a factory station's request, as the RA applies them at enrollment.
func (f *enrollFactory) template(serial *big.Int, cn string, pub crypto.PublicKey) (*x509.Certificate, error) {
	return f.prof.Template(&profile.Request{CSR: deviceCSR(cn, pub), Role: ra.RoleFactoryStation}, serial, f.now, f.iss.Certificate())
}

func (f *enrollFactory) check(cn string, pub crypto.PublicKey) error {
	return f.prof.CheckRequest(&profile.Request{CSR: deviceCSR(cn, pub), Role: ra.RoleFactoryStation})
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// deviceCSR is the request a device with serial cn and key pub makes, as the profile reads it.
func deviceCSR(cn string, pub crypto.PublicKey) *x509.CertificateRequest {
	return &x509.CertificateRequest{PublicKey: pub, Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: cn}}}}
}

// record makes the record of index i (i > 0): a fresh key, a random serial, a stamped certificate.
func (f *enrollFactory) record(ctx context.Context, i int) (*store.Enrolled, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := issuer.NewSerial(time.Now())
	if err != nil {
		return nil, err
	}
	cn := deviceSerial(f.first + i)
	sk, err := issuer.NewSubjectKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	// Prepare applies the profile's subject check, as Issue would.
	t, err := f.stamp.Prepare(issuer.StampInput{Serial: serial, CommonName: cn, Key: sk})
	if err != nil {
		return nil, fmt.Errorf("bench: prefill certificate %d: %w", i, err)
	}
	der, err := f.signer.sign(t.TBS())
	if err != nil {
		return nil, fmt.Errorf("bench: prefill certificate %d: %w", i, err)
	}
	r, err := f.enrolled(serial, cn, sk, der)
	if err != nil {
		return nil, err
	}
	if i%prefillCheckEvery == 0 {
		if err := f.recheck(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// enrolled returns the rows and the audit event an enrollment of device cn with certificate der stores
// (ra.RA.Enroll: record, then the device), with the state details the RA's recorder adds.
func (f *enrollFactory) enrolled(serial *big.Int, cn string, key *issuer.SubjectKey, der []byte) (*store.Enrolled, error) {
	spki := sha256.Sum256(key.SPKI()) // goodkey.SPKIHash
	alg, err := keystore.AlgorithmOf(key.Public())
	if err != nil {
		return nil, err
	}
	name := f.name
	name.CommonName = cn
	r := &store.Enrolled{}
	c := &r.Cert
	*c = store.Certificate{Serial: serial.Text(16), IssuerID: f.iss.CA().ID, Profile: f.prof.Name, ProfileVersion: f.prof.Version,
		Subject: name.String(), NotBefore: f.notBefore, NotAfter: f.notAfter, SPKISHA256: spki[:], DER: der,
		Status: store.CertStatusValid, CreatedAt: f.now}
	r.Key = store.Key{URI: ra.DeviceKeyURI(c.SPKISHA256), Purpose: string(keystore.PurposeDeviceIdentity), Algorithm: string(alg),
		Location: string(keystore.LocationDevice), State: store.KeyActive, Owner: c.Serial, SPKISHA256: c.SPKISHA256,
		CreatedAt: f.now, StateChangedAt: f.now}
	st := f.station
	r.Device = store.Device{Environment: benchEnv, ProductLine: benchProduct, Serial: cn, State: store.DeviceActive, StationID: st.ID,
		Site: st.Site, EnrolledAt: f.now, CertSerial: c.Serial, SPKISHA256: c.SPKISHA256, UpdatedAt: f.now}
	d := map[string]string{"profile": c.Profile, "issuer": c.IssuerID, "subject": c.Subject, "role": ra.RoleFactoryStation,
		"spki_sha256": hex.EncodeToString(c.SPKISHA256), "not_after": c.NotAfter.Format(time.RFC3339), "serial": c.Serial,
		"station": st.ID, "site": st.Site, "device": cn, "environment": benchEnv, "product_line": benchProduct}
	if f.warnings != "" {
		d["lint_warnings"] = f.warnings
	}
	for _, s := range []struct {
		kind, id string
		fields   map[string]string
	}{
		{audit.StateCert, c.Serial, ra.CertFields(c)},
		{audit.StateKey, r.Key.URI, ra.KeyFields(&r.Key)},
		{audit.StateDevice, ra.DeviceID(benchEnv, benchProduct, cn), ra.DeviceFields(&r.Device)},
	} {
		k, v := audit.StateDetail(s.kind, s.id, s.fields)
		d[k] = v
	}
	r.Event = audit.Event{Time: f.now, Actor: ra.StationPrincipal(st.ID).ID, Action: ra.ActionEnroll, Subject: cn,
		Outcome: audit.OutcomeSuccess, Details: d}
	return r, nil
}

// recheck parses a certificate again, verifies its signature and compares it with its rows: a signer or a
// stamp gone wrong would otherwise fill the store with certificates that do not verify or say something else
// than their rows.
func (f *enrollFactory) recheck(r *store.Enrolled) error {
	cert, err := x509.ParseCertificate(r.Cert.DER)
	if err != nil {
		return fmt.Errorf("bench: prefill certificate %s does not parse: %w", r.Cert.Serial, err)
	}
	if err := cert.CheckSignatureFrom(f.iss.Certificate()); err != nil {
		return fmt.Errorf("bench: prefill certificate %s: %w", r.Cert.Serial, err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	if cert.SerialNumber.Text(16) != r.Cert.Serial || cert.Subject.String() != r.Cert.Subject || !bytes.Equal(spki[:], r.Cert.SPKISHA256) ||
		!cert.NotAfter.Equal(r.Cert.NotAfter) || len(r.Cert.DER) > f.prof.MaxDERSize {
		return fmt.Errorf("bench: prefill certificate %s (%s, %d bytes) differs from its rows (%s)", cert.SerialNumber.Text(16), cert.Subject, len(r.Cert.DER), r.Cert.Subject)
	}
	return nil
}

// certSigner signs stamped TBSCertificates with the CA key and assembles the certificates (RFC 5280 4.1:
// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }), with the signature
// algorithm of the certificate the stamp was made from.
type certSigner struct {
	algID  []byte
	signer crypto.Signer
	opts   crypto.SignerOpts
}

func newCertSigner(cert *x509.Certificate, signer crypto.Signer) (*certSigner, error) {
	s := &certSigner{signer: signer}
	switch cert.SignatureAlgorithm {
	case x509.ECDSAWithSHA256:
		s.opts = crypto.SHA256
	case x509.ECDSAWithSHA384:
		s.opts = crypto.SHA384
	case x509.PureEd25519:
		s.opts = crypto.Hash(0)
	default:
		return nil, fmt.Errorf("CA signature algorithm %s: the prefill signs with ECDSA and Ed25519 keys only", cert.SignatureAlgorithm)
	}
	in := cryptobyte.String(cert.Raw)
	var outer cryptobyte.String
	if !in.ReadASN1(&outer, cbasn1.SEQUENCE) || !outer.SkipASN1(cbasn1.SEQUENCE) || !outer.ReadASN1Element((*cryptobyte.String)(&s.algID), cbasn1.SEQUENCE) {
		return nil, errors.New("the stamped certificate is malformed")
	}
	return s, nil
}

// sign returns the certificate of tbs, signed.
func (s *certSigner) sign(tbs []byte) ([]byte, error) {
	// crypto.SignMessage hashes for signers that expect a digest, as issuer does.
	sig, err := crypto.SignMessage(s.signer, rand.Reader, tbs, s.opts)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(s.algID)+len(sig)+16))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(s.algID)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// errPrefillRange: the prefill's device serials would run past the profile's eight digits.
var errPrefillRange = errors.New("bench: --n plus --prefill exceed the 100,000,000 device serials of the profile (DEMO- and eight digits)")
