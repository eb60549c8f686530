package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/profile"
)

// newTimedStamp issues the first certificate at headAt through the full path and makes a stamp with
// VaryValidity whose probe is built at probeAt.
func newTimedStamp(t testing.TB, pki *testPKI, p *profile.Profile, role string, headAt, probeAt time.Time, cn, probeCN string, key crypto.Signer) (*stampFixture, error) {
	t.Helper()
	head := profileTemplate(p, role, pki.inter, headAt, nil)
	tmpl, err := head(serial(t), cn, key.Public())
	if err != nil {
		t.Fatalf("template for %q: %v", cn, err)
	}
	prep, err := pki.iss.Prepare(tmpl, key.Public(), MaxDERSize(p.MaxDERSize))
	if err != nil {
		t.Fatalf("Prepare %q: %v", cn, err)
	}
	der, err := pki.iss.Issue(context.Background(), prep)
	if err != nil {
		t.Fatalf("Issue %q: %v", cn, err)
	}
	s, err := pki.iss.NewStamp(prep, der, StampConfig{Template: profileTemplate(p, role, pki.inter, probeAt, nil), VaryValidity: true,
		Check: profileCheck(p, role), ProbeCN: probeCN, MaxDERSize: p.MaxDERSize})
	return &stampFixture{pki: pki, tmpl: head, maxDER: p.MaxDERSize, head: mustParse(t, der), stamp: s}, err
}

func subjectKey(t testing.TB, pub crypto.PublicKey) *SubjectKey {
	t.Helper()
	k, err := NewSubjectKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestStampValidityMatchesFullPath: a stamp made with VaryValidity issues, at issuance times seconds, hours and
// years away from the certificate it was stamped from, exactly the TBSCertificate the full path builds and lints
// at that time, for both default profiles; the signature verifies and the certificate parses with the validity
// the profile gives.
func TestStampValidityMatchesFullPath(t *testing.T) {
	profiles := defaults(t)
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	t0 := time.Now().UTC().Truncate(time.Second)
	for _, tc := range []struct {
		prof *profile.Profile
		role string
		cn   func(testing.TB) string
	}{
		{profiles["implant-identity"], "factory-station", implantCN},
		{profiles["gateway-identity"], "admin", gatewayCN},
	} {
		t.Run(tc.prof.Name, func(t *testing.T) {
			f, err := newTimedStamp(t, pki, tc.prof, tc.role, t0, t0.Add(37*time.Second), tc.cn(t), tc.cn(t), pkitest.ECKey(t, elliptic.P256()))
			if err != nil {
				t.Fatalf("NewStamp: %v", err)
			}
			if !f.stamp.VariesValidity() {
				t.Fatal("a stamp made with VaryValidity does not vary the validity")
			}
			// Times within the issuing CA's validity (newPKI: 20 years) that leave room for the profile's.
			room := pki.inter.NotAfter.Sub(t0) - tc.prof.Validity - time.Hour
			for _, d := range []time.Duration{0, time.Second, time.Minute + 500*time.Millisecond, 3 * time.Hour, 400 * 24 * time.Hour, room / 2, room, -30 * time.Minute} {
				at := t0.Add(d)
				s, cn, key := serial(t), tc.cn(t), pkitest.ECKey(t, elliptic.P256())
				nb, na, err := tc.prof.ValidityAt(at, pki.inter)
				if err != nil {
					t.Fatalf("at %s: %v", at, err)
				}
				tok, err := f.stamp.Prepare(StampInput{Serial: s, CommonName: cn, Key: subjectKey(t, key.Public()), NotBefore: nb, NotAfter: na})
				if err != nil {
					t.Fatalf("at +%s: %v", d, err)
				}
				tmpl, err := profileTemplate(tc.prof, tc.role, pki.inter, at, nil)(s, cn, key.Public())
				if err != nil {
					t.Fatal(err)
				}
				full, err := pki.iss.Prepare(tmpl, key.Public(), MaxDERSize(tc.prof.MaxDERSize))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(tok.TBS(), full.TBS()) {
					t.Fatalf("at +%s: stamped TBSCertificate differs from the full path's\nstamped %x\nfull    %x", d, tok.TBS(), full.TBS())
				}
				der, err := f.stamp.Sign(context.Background(), tok)
				if err != nil {
					t.Fatal(err)
				}
				cert := mustParse(t, der)
				if !cert.NotBefore.Equal(nb) || !cert.NotAfter.Equal(na) || cert.Subject.CommonName != cn {
					t.Fatalf("at +%s: parsed %s to %s, CN %q; want %s to %s, %q", d, cert.NotBefore, cert.NotAfter, cert.Subject.CommonName, nb, na, cn)
				}
				if err := cert.CheckSignatureFrom(pki.inter); err != nil {
					t.Fatal(err)
				}
				if _, err := f.stamp.Sign(context.Background(), tok); !errors.Is(err, ErrRedeemed) {
					t.Fatalf("second Sign of one token: %v, want ErrRedeemed", err)
				}
			}
		})
	}
}

// TestStampValidityRefusals: a validity the stamp cannot carry is refused before anything is signed: another
// encoded type (UTCTime ends with 2049, RFC 5280 4.1.2.5), a stamp made without VaryValidity asked for another
// validity, a probe built at the stamped certificate's own time, half a validity.
func TestStampValidityRefusals(t *testing.T) {
	imp := defaults(t)["implant-identity"]
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	t0 := time.Now().UTC().Truncate(time.Second)
	timed, err := newTimedStamp(t, pki, imp, "admin", t0, t0.Add(time.Second), "DEMO-00000001", "DEMO-00000002", pkitest.ECKey(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	fixed, err := newStamp(t, pki, profileTemplate(imp, "admin", pki.inter, t0, nil), profileCheck(imp, "admin"), imp.MaxDERSize,
		"DEMO-00000001", pkitest.ECKey(t, elliptic.P256()), "DEMO-00000002")
	if err != nil {
		t.Fatal(err)
	}
	if fixed.stamp.VariesValidity() {
		t.Fatal("a stamp made without VaryValidity varies the validity")
	}
	nb, na, err := imp.ValidityAt(t0, pki.inter)
	if err != nil {
		t.Fatal(err)
	}
	y2049 := time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)
	y2050 := time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		stamp    *Stamp
		nb, na   time.Time
		stampErr bool
		want     string
	}{
		{"notAfter in 2050", timed.stamp, y2049.Add(-time.Hour), y2050, true, "notAfter 2050-01-01T00:00:00Z encodes as a 17-byte GeneralizedTime; the stamp's is a 15-byte UTCTime"},
		{"notBefore in 2050", timed.stamp, y2050, y2050.Add(time.Hour), true, "notBefore 2050-01-01T00:00:00Z encodes as a 17-byte GeneralizedTime"},
		{"notBefore before 1950", timed.stamp, time.Date(1949, 12, 31, 0, 0, 0, 0, time.UTC), na, true, "notBefore 1949-12-31T00:00:00Z encodes as a 17-byte GeneralizedTime"},
		{"another validity, fixed stamp", fixed.stamp, nb.Add(time.Second), na.Add(time.Second), true, "made without VaryValidity"},
		{"notBefore only", timed.stamp, nb, time.Time{}, false, "needs both notBefore and notAfter"},
		{"notAfter only", timed.stamp, time.Time{}, na, false, "needs both notBefore and notAfter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := pki.signer.n.Load()
			tok, err := tc.stamp.Prepare(StampInput{Serial: serial(t), CommonName: "DEMO-00000003", Key: subjectKey(t, &pkitest.ECKey(t, elliptic.P256()).PublicKey), NotBefore: tc.nb, NotAfter: tc.na})
			if err == nil || tok != nil {
				t.Fatal("stamped; want a refusal")
			}
			if errors.Is(err, ErrNotStampable) != tc.stampErr || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want ErrNotStampable %v and %q", err, tc.stampErr, tc.want)
			}
			if pki.signer.n.Load() != before {
				t.Error("a refused input was signed")
			}
		})
	}
	// The stamp's own validity, given explicitly, is no change: a fixed stamp accepts it.
	tok, err := fixed.stamp.Prepare(StampInput{Serial: serial(t), CommonName: "DEMO-00000003", Key: subjectKey(t, &pkitest.ECKey(t, elliptic.P256()).PublicKey), NotBefore: nb, NotAfter: na})
	if err != nil {
		t.Fatalf("a fixed stamp given its own validity: %v", err)
	}
	if !bytes.Equal(tok.TBS()[fixed.stamp.l.notBefore.off:fixed.stamp.l.notAfter.off+fixed.stamp.l.notAfter.n],
		fixed.stamp.tbs[fixed.stamp.l.notBefore.off:fixed.stamp.l.notAfter.off+fixed.stamp.l.notAfter.n]) {
		t.Fatal("a fixed stamp changed its validity")
	}

	// The probe must be built at another time, else it proves nothing about the time fields.
	if _, err := newTimedStamp(t, pki, imp, "admin", t0, t0.Add(400*time.Millisecond), "DEMO-00000001", "DEMO-00000002", pkitest.ECKey(t, elliptic.P256())); !errors.Is(err, ErrNotStampable) ||
		!strings.Contains(err.Error(), "build the probe at another issuance time") {
		t.Fatalf("a probe at the stamped certificate's second: %v", err)
	}
	// A template that puts the issuance time somewhere else than the validity is caught by the probe.
	head := profileTemplate(imp, "admin", pki.inter, t0, nil)
	k := pkitest.ECKey(t, elliptic.P256())
	tmpl, _ := head(serial(t), "DEMO-00000001", k.Public())
	tmpl.Subject.OrganizationalUnit = []string{t0.Format("20060102150405")}
	prep, err := pki.iss.Prepare(tmpl, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.iss.Issue(context.Background(), prep)
	if err != nil {
		t.Fatal(err)
	}
	probeAt := t0.Add(time.Hour)
	_, err = pki.iss.NewStamp(prep, der, StampConfig{VaryValidity: true, Check: profileCheck(imp, "admin"), ProbeCN: "DEMO-00000002",
		Template: func(s *big.Int, cn string, pub crypto.PublicKey) (*x509.Certificate, error) {
			c, err := profileTemplate(imp, "admin", pki.inter, probeAt, nil)(s, cn, pub)
			if err == nil {
				c.Subject.OrganizationalUnit = []string{probeAt.Format("20060102150405")}
			}
			return c, err
		}})
	if !errors.Is(err, ErrNotStampable) || !strings.Contains(err.Error(), "differs from the full path's TBSCertificate") {
		t.Fatalf("a template with the time outside the validity: %v", err)
	}
}

// TestStampValidityGeneralizedTime: a certificate whose notAfter is a GeneralizedTime (after 2049) stamps
// others of the same encoding and refuses a UTCTime notAfter.
func TestStampValidityGeneralizedTime(t *testing.T) {
	imp := defaults(t)["implant-identity"]
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	late := func(at time.Time) TemplateFunc {
		return func(s *big.Int, cn string, pub crypto.PublicKey) (*x509.Certificate, error) {
			c, err := profileTemplate(imp, "admin", pki.inter, at, nil)(s, cn, pub)
			if err == nil {
				c.NotAfter = c.NotBefore.AddDate(40, 0, 0) // past 2049: GeneralizedTime
			}
			return c, err
		}
	}
	t0 := time.Now().UTC().Truncate(time.Second)
	k := pkitest.ECKey(t, elliptic.P256())
	tmpl, _ := late(t0)(serial(t), "DEMO-00000001", k.Public())
	prep, err := pki.iss.Prepare(tmpl, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.iss.Issue(context.Background(), prep)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pki.iss.NewStamp(prep, der, StampConfig{Template: late(t0.Add(time.Minute)), VaryValidity: true, Check: profileCheck(imp, "admin"), ProbeCN: "DEMO-00000002"})
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(90 * 24 * time.Hour)
	want, _ := late(at)(serial(t), "DEMO-00000003", k.Public())
	key := pkitest.ECKey(t, elliptic.P256())
	want.SerialNumber = serial(t)
	want.PublicKey = key.Public()
	tok, err := s.Prepare(StampInput{Serial: want.SerialNumber, CommonName: "DEMO-00000003", Key: subjectKey(t, key.Public()), NotBefore: want.NotBefore, NotAfter: want.NotAfter})
	if err != nil {
		t.Fatal(err)
	}
	full, err := pki.iss.Prepare(want, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tok.TBS(), full.TBS()) {
		t.Fatal("a GeneralizedTime validity stamped differs from the full path's")
	}
	_, err = s.Prepare(StampInput{Serial: serial(t), CommonName: "DEMO-00000003", Key: subjectKey(t, key.Public()), NotBefore: want.NotBefore, NotAfter: time.Date(2049, 1, 1, 0, 0, 0, 0, time.UTC)})
	if !errors.Is(err, ErrNotStampable) || !strings.Contains(err.Error(), "15-byte UTCTime; the stamp's is a 17-byte GeneralizedTime") {
		t.Fatalf("a UTCTime notAfter on a GeneralizedTime stamp: %v", err)
	}
}

// TestStampValidityConcurrent stamps and signs with validities of their own on many goroutines (run with
// -race): every certificate carries its own validity and the stamp is unchanged.
func TestStampValidityConcurrent(t *testing.T) {
	imp := defaults(t)["implant-identity"]
	pki := newPKI(t, pkitest.ECKey(t, elliptic.P256()), pkitest.ECKey(t, elliptic.P256()))
	t0 := time.Now().UTC().Truncate(time.Second)
	f, err := newTimedStamp(t, pki, imp, "factory-station", t0, t0.Add(-time.Second), "DEMO-00000001", "DEMO-99999999", pkitest.ECKey(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	head := bytes.Clone(f.stamp.tbs)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				nb, na, err := imp.ValidityAt(t0.Add(time.Duration(g*8+i)*time.Second), pki.inter)
				if err != nil {
					t.Error(err)
					return
				}
				k := pkitest.ECKey(t, elliptic.P256())
				tok, err := f.stamp.Prepare(StampInput{Serial: serial(t), CommonName: "DEMO-0000000" + string(rune('0'+i)), Key: subjectKey(t, &k.PublicKey), NotBefore: nb, NotAfter: na})
				if err != nil {
					t.Error(err)
					return
				}
				der, err := f.stamp.Sign(context.Background(), tok)
				if err != nil {
					t.Error(err)
					return
				}
				c, err := x509.ParseCertificate(der)
				if err != nil || !c.NotBefore.Equal(nb) || !c.NotAfter.Equal(na) || c.CheckSignatureFrom(pki.inter) != nil {
					t.Errorf("certificate %d/%d: %v, %s to %s", g, i, err, c.NotBefore, c.NotAfter)
				}
			}
		}()
	}
	wg.Wait()
	if !bytes.Equal(head, f.stamp.tbs) {
		t.Error("the stamp's TBSCertificate changed")
	}
}

// FuzzStampValidity: for any pair of times, the stamp either refuses them or stamps exactly the TBSCertificate
// x509.CreateCertificate builds with them (the encoder comparison without lint, so that any time is tried).
func FuzzStampValidity(f *testing.F) {
	imp := defaults(f)["implant-identity"]
	pki := newPKI(f, pkitest.ECKey(f, elliptic.P256()), pkitest.ECKey(f, elliptic.P256()))
	t0 := time.Now().UTC().Truncate(time.Second)
	fx, err := newTimedStamp(f, pki, imp, "admin", t0, t0.Add(time.Minute), "DEMO-00000001", "DEMO-00000002", pkitest.ECKey(f, elliptic.P256()))
	if err != nil {
		f.Fatal(err)
	}
	key := pkitest.ECKey(f, elliptic.P256())
	sk := subjectKey(f, key.Public())
	sn := serial(f)
	tmpl, err := fx.tmpl(sn, "DEMO-00000003", key.Public())
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][2]int64{{t0.Unix(), t0.Unix() + 3600}, {2524607999, 2524608000}, {-631152001, 0}, {253402300799, 253402300800}} {
		f.Add(s[0], s[1], int64(0))
	}
	f.Fuzz(func(t *testing.T, nbSec, naSec, nanos int64) {
		nb := time.Unix(nbSec, nanos%1e9).UTC()
		na := time.Unix(naSec, 0).UTC()
		if nb.IsZero() || na.IsZero() {
			return
		}
		tok, err := fx.stamp.Prepare(StampInput{Serial: sn, CommonName: "DEMO-00000003", Key: sk, NotBefore: nb, NotAfter: na})
		if err != nil {
			return
		}
		c := *tmpl
		c.NotBefore, c.NotAfter = nb, na
		der, err := x509.CreateCertificate(nil, &c, pki.iss.lintParent, key.Public(), pki.iss.throwaway)
		if err != nil {
			t.Fatalf("stamped %s to %s, which x509.CreateCertificate refuses: %v", nb, na, err)
		}
		tbs, _, err := splitCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tbs, tok.TBS()) {
			t.Fatalf("%s to %s: stamped %x\nx509      %x", nb, na, tok.TBS(), tbs)
		}
	})
}
