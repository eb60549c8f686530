package ra_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// sanCSR is a gateway's request with DNS names.
func sanCSR(t *testing.T, k *ecdsa.PrivateKey, cn string, dns ...string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// issuance is one certificate issued through the RA and what it was asked with.
type issuance struct {
	row     *store.Certificate
	csr     []byte
	role    string
	stamped bool      // IssuanceCounts says it was stamped
	at      time.Time // the RA's clock when it was issued; zero: unknown, taken from the certificate
}

// counted runs issue and reports whether the RA counted the certificate as stamped.
func counted(t *testing.T, r *ra.RA, issue func() (*store.Certificate, error)) (*store.Certificate, bool) {
	t.Helper()
	before := r.IssuanceCounts()
	row, err := issue()
	if err != nil {
		t.Fatal(err)
	}
	after := r.IssuanceCounts()
	switch {
	case after.Stamped == before.Stamped+1 && after.Full == before.Full:
		return row, true
	case after.Full == before.Full+1 && after.Stamped == before.Stamped:
		return row, false
	}
	t.Fatalf("counts went from %+v to %+v for one certificate", before, after)
	return nil, false
}

// checkFullPath proves that the certificate of iss is, byte for byte in its TBSCertificate, the one the full
// path (profile template, lint, CA's Prepare) builds for the same request, serial and issuance time; that its
// row holds what parsing it gives; and that its audit event records the lint warnings the full path finds.
func checkFullPath(t *testing.T, n *node.Node, iss issuance) {
	t.Helper()
	ctx := context.Background()
	cert, err := x509.ParseCertificate(iss.row.DER)
	if err != nil {
		t.Fatal(err)
	}
	prof := n.Profiles[iss.row.Profile]
	csr, err := profile.ParseCSR(iss.csr)
	if err != nil {
		t.Fatal(err)
	}
	caIss, err := n.CA.Issuer(ctx, iss.row.IssuerID)
	if err != nil {
		t.Fatal(err)
	}
	at := iss.at
	if at.IsZero() {
		at = cert.NotBefore.Add(prof.Backdate) // the issuance time, to the second
	}
	tmpl, err := prof.Template(&profile.Request{CSR: csr, Role: iss.role}, cert.SerialNumber, at, caIss.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	full, err := caIss.Prepare(tmpl, csr.PublicKey, issuer.MaxDERSize(prof.MaxDERSize))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(full.TBS(), cert.RawTBSCertificate) {
		t.Fatalf("%s (stamped %v): TBSCertificate differs from the full path's\nissued %x\nfull   %x", cert.Subject.CommonName, iss.stamped, cert.RawTBSCertificate, full.TBS())
	}
	if err := cert.CheckSignatureFrom(caIss.Certificate()); err != nil {
		t.Fatal(err)
	}
	checkRow(t, iss.row, cert)
	var warned []string
	for _, f := range full.Warnings() {
		warned = append(warned, f.Lint)
	}
	ev := issuanceEvent(t, n, iss.row.Serial)
	if got := ev.Details["lint_warnings"]; got != strings.Join(warned, ",") {
		t.Fatalf("%s (stamped %v): audit lint_warnings %q; the full path finds %q", cert.Subject.CommonName, iss.stamped, got, warned)
	}
}

// checkRow compares a stored row with what parsing its certificate gives.
func checkRow(t *testing.T, row *store.Certificate, cert *x509.Certificate) {
	t.Helper()
	h := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	if row.Serial != ra.SerialString(cert) || row.Subject != cert.Subject.String() || row.NotBefore != cert.NotBefore || row.NotAfter != cert.NotAfter ||
		!bytes.Equal(row.SPKISHA256, h[:]) || !bytes.Equal(row.DER, cert.Raw) {
		t.Fatalf("row %s %q %s..%s %x; the certificate parses as %s %q %s..%s %x", row.Serial, row.Subject, row.NotBefore, row.NotAfter, row.SPKISHA256,
			ra.SerialString(cert), cert.Subject.String(), cert.NotBefore, cert.NotAfter, h)
	}
}

// issuanceEvent returns the audit event of the certificate with serial.
func issuanceEvent(t *testing.T, n *node.Node, serial string) *audit.Event {
	t.Helper()
	var ev *audit.Event
	_ = n.Store.WalkAudit(context.Background(), 0, func(e *audit.Event) error {
		if e.Outcome == audit.OutcomeSuccess && (e.Subject == serial || e.Details["serial"] == serial) {
			ev = e
		}
		return nil
	})
	if ev == nil {
		t.Fatalf("no audit event for certificate %s", serial)
	}
	return ev
}

// TestStampedIssueMatchesFullPath: RA.Issue issues the first two certificates of a profile shape through the full
// path and stamps the next ones, at issuance times that move second by second and minute by minute; every one
// is what the full path builds for the same inputs, its row is what parsing gives, and its audit event has the
// full path's lint warnings (implant-identity warns that it has no subject key identifier; gateway-identity
// carries one, and CRL and OCSP URLs).
func TestStampedIssueMatchesFullPath(t *testing.T) {
	c := &clock{t: time.Now().UTC()}
	n := openNodeAt(t, c)
	ctx := context.Background()
	steps := []time.Duration{0, 0, time.Second, 0, 1500 * time.Millisecond, 7 * time.Second, time.Minute, 3 * time.Minute, 0, 2*time.Minute + 300*time.Millisecond}
	for _, tc := range []struct {
		profile string
		cn      func(int) string
	}{
		{"implant-identity", func(i int) string { return fmt.Sprintf("DEMO-%08d", i) }},
		{"gateway-identity", func(i int) string { return fmt.Sprintf("GW-WARD-%04d", i) }},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			for i, d := range steps {
				c.add(d)
				der := csr(t, key(t), tc.cn(i))
				row, stamped := counted(t, n.RA, func() (*store.Certificate, error) {
					return n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: tc.profile, CSR: der})
				})
				if want := i >= 2; stamped != want {
					t.Fatalf("certificate %d stamped %v, want %v (counts %+v)", i, stamped, want, n.RA.IssuanceCounts())
				}
				checkFullPath(t, n, issuance{row: row, csr: der, role: ra.RoleAdmin, stamped: stamped, at: c.now()})
			}
		})
	}
	if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
		t.Fatal(err)
	}
	if got := n.RA.IssuanceCounts(); got.Stamped != 2*int64(len(steps)-2) || got.Full != 4 || got.StampRefused != "" {
		t.Fatalf("counts %+v", got)
	}
}

// TestStampedRowsAreParsedRows: the rows of stamped certificates, made without parsing them, hold what parsing
// gives (serial, subject, validity, key hash), for a stream of certificates with names of every character
// PrintableString allows and UTF-8 names (another shape each), issued on several workers.
func TestStampedRowsAreParsedRows(t *testing.T) {
	n := openNode(t)
	ctx := context.Background()
	names := []string{"GW-ABCD", "GW-A-B-C-D", "GW-0000-ZZZZ-9999"}
	var reqs []ra.IssueRequest
	for i := range 60 {
		reqs = append(reqs, ra.IssueRequest{Profile: "gateway-identity", CSR: csr(t, key(t), fmt.Sprintf("%s-%03d", names[i%len(names)], i))})
	}
	i := 0
	next := func() (ra.IssueRequest, bool) {
		if i == len(reqs) {
			return ra.IssueRequest{}, false
		}
		i++
		return reqs[i-1], true
	}
	var mu sync.Mutex
	var rows []*store.Certificate
	err := n.RA.IssueStream(ctx, admin, ra.StreamOptions{Workers: 4, BatchSize: 8}, next, func(r ra.StreamResult) {
		mu.Lock()
		defer mu.Unlock()
		if r.Err != nil {
			t.Errorf("request %d: %v", r.Index, r.Err)
			return
		}
		rows = append(rows, r.Cert)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		cert, err := x509.ParseCertificate(row.DER)
		if err != nil {
			t.Fatal(err)
		}
		checkRow(t, row, cert)
		stored, err := n.Store.GetCertificate(ctx, row.Serial)
		if err != nil {
			t.Fatal(err)
		}
		checkRow(t, stored, cert)
	}
	if got := n.RA.IssuanceCounts(); got.Stamped < 40 {
		t.Fatalf("counts %+v: want most of 60 certificates of 3 shapes stamped", got)
	}
}

// TestStampedEnrollMatchesFullPath: EST enrollment by a factory station and a device's renewal stamp their
// certificates too, byte for byte as the full path would build them with the station's role.
func TestStampedEnrollMatchesFullPath(t *testing.T) {
	c := &clock{t: time.Now().UTC()}
	n := openNodeAt(t, c)
	ctx := context.Background()
	cred, err := n.RA.AddStation(ctx, admin, ra.StationRequest{Environment: "dev", Site: "hq", Name: "hq-01", ProductLines: []string{"demo-implant"}})
	if err != nil {
		t.Fatal(err)
	}
	station := ra.Caller{Principal: ra.StationPrincipal(cred.Station.ID), Station: cred.Station, Environment: "dev"}
	var last *x509.Certificate
	for i := range 6 {
		c.add(time.Duration(i) * 700 * time.Millisecond)
		// The station row is read again: its quota count changes with every enrollment.
		st, err := n.Store.GetStation(ctx, cred.Station.ID)
		if err != nil {
			t.Fatal(err)
		}
		station.Station = st
		der := csr(t, key(t), fmt.Sprintf("DEMO-%08d", 100+i))
		row, stamped := counted(t, n.RA, func() (*store.Certificate, error) {
			res, err := n.RA.Enroll(ctx, station, ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: der})
			if err != nil {
				return nil, err
			}
			return res.Cert, nil
		})
		if want := i >= 2; stamped != want {
			t.Fatalf("enrollment %d stamped %v, want %v", i, stamped, want)
		}
		checkFullPath(t, n, issuance{row: row, csr: der, role: ra.RoleFactoryStation, stamped: stamped, at: c.now()})
		if last, err = x509.ParseCertificate(row.DER); err != nil {
			t.Fatal(err)
		}
	}
	// The last device renews, with a new key, now (an operator forces it).
	serial := last.Subject.CommonName
	if _, err := n.RA.ApplyDeviceAction(ctx, admin, ra.DeviceRef{Environment: "dev", ProductLine: "demo-implant", Serial: serial}, ra.ForceRenew); err != nil {
		t.Fatal(err)
	}
	c.add(42 * time.Second)
	der := csr(t, key(t), serial)
	device := ra.Caller{Principal: ra.DevicePrincipal("dev", "demo-implant", serial), Cert: last, Environment: "dev", ProductLine: "demo-implant"}
	row, stamped := counted(t, n.RA, func() (*store.Certificate, error) {
		res, err := n.RA.Reenroll(ctx, device, ra.EnrollRequest{Environment: "dev", ProductLine: "demo-implant", CSR: der})
		if err != nil {
			return nil, err
		}
		return res.Cert, nil
	})
	if !stamped {
		t.Fatal("the renewal was not stamped")
	}
	checkFullPath(t, n, issuance{row: row, csr: der, role: ra.RoleFactoryStation, stamped: true, at: c.now()})
	if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
		t.Fatal(err)
	}
}

// TestSANRequestsTakeFullPath: a CSR with subject alternative names, which profile.Template copies into the
// certificate, is always issued through the full path; the same profile's requests without SANs are stamped.
func TestSANRequestsTakeFullPath(t *testing.T) {
	n := openNode(t)
	ctx := context.Background()
	for i := range 5 {
		der := sanCSR(t, key(t), fmt.Sprintf("GW-WARD-%04d", i), fmt.Sprintf("ward-%d.gateways.example.com", i))
		row, stamped := counted(t, n.RA, func() (*store.Certificate, error) {
			return n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "gateway-identity", CSR: der})
		})
		if stamped {
			t.Fatalf("certificate %d with a SAN was stamped", i)
		}
		checkFullPath(t, n, issuance{row: row, csr: der, role: ra.RoleAdmin})
		if cert, _ := x509.ParseCertificate(row.DER); len(cert.DNSNames) != 1 || cert.DNSNames[0] != fmt.Sprintf("ward-%d.gateways.example.com", i) {
			t.Fatalf("certificate %d: DNS names %q", i, cert.DNSNames)
		}
	}
	for i := range 3 {
		der := csr(t, key(t), fmt.Sprintf("GW-WARD-%04d", 10+i))
		_, stamped := counted(t, n.RA, func() (*store.Certificate, error) {
			return n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "gateway-identity", CSR: der})
		})
		if stamped != (i == 2) {
			t.Fatalf("request %d without SANs: stamped %v", i, stamped)
		}
	}
}

// issueN issues certificates DEMO-<from>... under implant-identity and returns how many were stamped.
func issueN(t *testing.T, n *node.Node, r *ra.RA, from, count int) (stamped int, rows []*store.Certificate) {
	t.Helper()
	for i := range count {
		der := csr(t, key(t), fmt.Sprintf("DEMO-%08d", from+i))
		row, s := counted(t, r, func() (*store.Certificate, error) {
			return r.Issue(context.Background(), admin, ra.IssueRequest{Profile: "implant-identity", CSR: der})
		})
		checkFullPath(t, n, issuance{row: row, csr: der, role: ra.RoleAdmin, stamped: s})
		if s {
			stamped++
		}
		rows = append(rows, row)
	}
	return stamped, rows
}

// TestStampStopsWithItsCA: a stamp signs through the CA handle's guard. Destroying the issuing CA's key stops
// stamped issuance as it stops the full path: the RA refuses, and the stamp itself, held from before, signs
// nothing more. A new CA generation is another shape: its first certificates go through the full path.
func TestStampStopsWithItsCA(t *testing.T) {
	ctx := context.Background()
	t.Run("key destroyed", func(t *testing.T) {
		n := openNode(t)
		if stamped, _ := issueN(t, n, n.RA, 1, 3); stamped != 1 {
			t.Fatalf("%d of 3 stamped, want 1", stamped)
		}
		stamps := n.RA.StampsForTest()
		if len(stamps) != 1 {
			t.Fatalf("%d stamps", len(stamps))
		}
		row, err := n.Store.GetCA(ctx, "dev/demo-implant")
		if err != nil {
			t.Fatal(err)
		}
		if err := n.RA.DestroyKey(ctx, admin, row.KeyURI, "compromise drill"); err != nil {
			t.Fatal(err)
		}
		before := n.RA.IssuanceCounts()
		_, err = n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: csr(t, key(t), "DEMO-00000009")})
		if ra.KindOf(err) != ra.KindConflict {
			t.Fatalf("issuance after the key was destroyed: %v, want a conflict", err)
		}
		if after := n.RA.IssuanceCounts(); after.Stamped != before.Stamped || after.Full != before.Full {
			t.Fatalf("counts went from %+v to %+v", before, after)
		}
		k := key(t)
		serial, _ := issuer.NewSerial(time.Now())
		der, err := stamps[0].Issue(ctx, serial, "DEMO-00000010", &k.PublicKey)
		if !errors.Is(err, ca.ErrRetired) || der != nil {
			t.Fatalf("the stamp signed after its CA's key was destroyed: %v", err)
		}
		if certs, _ := n.Store.ListCertificates(ctx, store.CertFilter{}); len(certs) != 3 {
			t.Fatalf("%d certificates stored, want 3", len(certs))
		}
	})
	t.Run("new generation", func(t *testing.T) {
		n := openNode(t)
		_, rows := issueN(t, n, n.RA, 1, 3)
		next, err := n.RA.Rollover(ctx, admin, ra.RolloverRequest{Environment: "dev", ProductLine: "demo-implant"})
		if err != nil {
			t.Fatal(err)
		}
		stamped, after := issueN(t, n, n.RA, 11, 3)
		if stamped != 1 {
			t.Fatalf("%d of the first 3 certificates of the new generation stamped, want 1 (a stamp of its own)", stamped)
		}
		for _, r := range after {
			if r.IssuerID != next.ID || r.IssuerID == rows[0].IssuerID {
				t.Fatalf("issued by %s after the rollover to %s (before: %s)", r.IssuerID, next.ID, rows[0].IssuerID)
			}
		}
	})
}

// TestStampExpires: a stamp issues for StampLifetime from its first certificate; then the next certificate
// goes through the full path and, with the one after it, makes a new stamp. A lifetime of 0 never stamps.
func TestStampExpires(t *testing.T) {
	c := &clock{t: time.Now().UTC()}
	n := openNodeAt(t, c)
	if stamped, _ := issueN(t, n, n.RA, 1, 4); stamped != 2 {
		t.Fatalf("%d of 4 stamped, want 2", stamped)
	}
	first := n.RA.StampsForTest()
	c.add(ra.DefaultStampLifetime - 2*time.Second)
	if stamped, _ := issueN(t, n, n.RA, 11, 1); stamped != 1 {
		t.Fatal("not stamped before the stamp's lifetime ended")
	}
	c.add(2 * time.Second)
	var seq []bool
	for i := range 4 {
		stamped, _ := issueN(t, n, n.RA, 21+i, 1)
		seq = append(seq, stamped == 1)
	}
	if fmt.Sprint(seq) != "[false false true true]" {
		t.Fatalf("after the lifetime, stamped %v; want the first two through the full path", seq)
	}
	if again := n.RA.StampsForTest(); len(first) != 1 || len(again) != 1 || first[0] == again[0] {
		t.Fatal("the stamp was not made again")
	}

	never, err := ra.New(ra.Config{Store: n.Store, CA: n.CA, Hierarchy: n.Config, Profiles: n.Profiles, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if stamped, _ := issueN(t, n, never, 31, 4); stamped != 0 {
		t.Fatalf("%d stamped with a lifetime of 0", stamped)
	}
}

// TestStampRefusals: a request the stamp cannot carry (its notAfter crosses into 2050, a GeneralizedTime where
// the stamp has a UTCTime, RFC 5280 4.1.2.5) and a profile whose certificates cannot be stamped take the full
// path, and IssuanceCounts says why.
func TestStampRefusals(t *testing.T) {
	t.Run("notAfter in 2050", func(t *testing.T) {
		imp, err := profile.LoadDefaults()
		if err != nil {
			t.Fatal(err)
		}
		p := imp["implant-identity"]
		// The first issuance time whose notAfter is in 2050, less 10 s.
		boundary := time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC).Add(-p.Validity + time.Second + p.Backdate)
		c := &clock{t: boundary.Add(-10 * time.Second)}
		n := openNodeAt(t, c)
		if stamped, _ := issueN(t, n, n.RA, 1, 3); stamped != 1 {
			t.Fatalf("%d of 3 stamped, want 1", stamped)
		}
		c.add(10 * time.Second)
		stamped, rows := issueN(t, n, n.RA, 11, 2)
		if stamped != 0 {
			t.Fatalf("%d certificates whose notAfter is in 2050 stamped", stamped)
		}
		if cert, _ := x509.ParseCertificate(rows[0].DER); cert.NotAfter.Year() != 2050 {
			t.Fatalf("notAfter %s", cert.NotAfter)
		}
		if why := n.RA.IssuanceCounts().StampRefused; !strings.Contains(why, "GeneralizedTime") {
			t.Fatalf("StampRefused %q", why)
		}
	})
	t.Run("profile", func(t *testing.T) {
		// An organization that repeats the first device's name: the name occurs twice in its certificate.
		yaml := strings.Replace(string(profile.Defaults()["implant-identity"]), "    required: true\n", "    required: true\n  organization: DEMO-00000001\n", 1)
		yaml = strings.Replace(yaml, "max_der_size: 400", "max_der_size: 600", 1)
		p, err := profile.Parse("implant-identity", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		n := openNode(t)
		r, err := ra.New(ra.Config{Store: n.Store, CA: n.CA, Hierarchy: n.Config, Profiles: map[string]*profile.Profile{"implant-identity": p, "gateway-identity": n.Profiles["gateway-identity"]},
			StampLifetime: ra.DefaultStampLifetime})
		if err != nil {
			t.Fatal(err)
		}
		n.Profiles["implant-identity"] = p // for checkFullPath
		if stamped, _ := issueN(t, n, r, 1, 5); stamped != 0 {
			t.Fatalf("%d stamped", stamped)
		}
		if why := r.IssuanceCounts().StampRefused; !strings.Contains(why, "the common name occurs 2 times") {
			t.Fatalf("StampRefused %q", why)
		}
	})
}

// TestStampConcurrent issues on many goroutines, through Issue and IssueStream at once, while the clock moves
// past the stamp's lifetime (run with -race): every certificate is issued once, verifies, and the audit chain
// holds.
func TestStampConcurrent(t *testing.T) {
	c := &clock{t: time.Now().UTC()}
	n := openNodeAt(t, c)
	ctx := context.Background()
	const perWorker, workers, streamed = 12, 4, 80
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker+streamed)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				if w == 0 && i == perWorker/2 {
					c.add(ra.DefaultStampLifetime)
				}
				k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("DEMO-1%02d%05d", w, i)}}, k)
				if _, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: der}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		i := 0
		next := func() (ra.IssueRequest, bool) {
			if i == streamed {
				return ra.IssueRequest{}, false
			}
			i++
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("DEMO-2%07d", i)}}, k)
			return ra.IssueRequest{Profile: "implant-identity", CSR: der}, true
		}
		if err := n.RA.IssueStream(ctx, admin, ra.StreamOptions{Workers: 4, BatchSize: 16}, next, func(r ra.StreamResult) {
			if r.Err != nil {
				errs <- r.Err
			}
		}); err != nil {
			errs <- err
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	certs, err := n.Store.ListCertificates(ctx, store.CertFilter{})
	if err != nil || len(certs) != workers*perWorker+streamed {
		t.Fatalf("%d certificates stored (%v)", len(certs), err)
	}
	iss, err := n.CA.Issuer(ctx, "dev/demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range certs {
		cert, err := x509.ParseCertificate(row.DER)
		if err != nil || cert.CheckSignatureFrom(iss.Certificate()) != nil {
			t.Fatalf("%s: %v", row.Serial, err)
		}
		checkRow(t, row, cert)
	}
	got := n.RA.IssuanceCounts()
	if got.Stamped+got.Full != int64(len(certs)) || got.Stamped == 0 {
		t.Fatalf("counts %+v for %d certificates", got, len(certs))
	}
	if _, err := store.VerifyAudit(ctx, n.Store); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkIssueStream issues b.N implant certificates from distinct CSRs (made before the timer starts)
// through IssueStream into a fresh SQLite store, and reports the share of them that was stamped.
func BenchmarkIssueStream(b *testing.B) {
	n, _, err := node.Init(context.Background(), node.InitOptions{Options: node.Options{Dir: b.TempDir(), Warn: io.Discard}})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	reqs := make([]ra.IssueRequest, b.N)
	for i := range reqs {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("DEMO-%08d", i)}}, k)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = ra.IssueRequest{Profile: "implant-identity", CSR: der}
	}
	i := 0
	next := func() (ra.IssueRequest, bool) {
		if i == len(reqs) {
			return ra.IssueRequest{}, false
		}
		i++
		return reqs[i-1], true
	}
	b.ResetTimer()
	err = n.RA.IssueStream(context.Background(), admin, ra.StreamOptions{}, next, func(r ra.StreamResult) {
		if r.Err != nil {
			b.Error(r.Err)
		}
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	c := n.RA.IssuanceCounts()
	b.ReportMetric(float64(c.Stamped)/float64(c.Stamped+c.Full), "stamped-share")
}
