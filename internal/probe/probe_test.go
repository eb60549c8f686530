package probe_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/probe"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/verify"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// certCases are the cases whose flaw is in the certificate (not the protocol offer).
var certCases = []string{probe.CaseExpired, probe.CaseNotYetValid, probe.CaseWrongEKU, probe.CaseStation, probe.CaseOtherEnvironment,
	probe.CaseUnknownCA, probe.CaseSelfSigned, probe.CaseRevoked, probe.CaseMissingIntermediate, probe.CaseRSA1024, probe.CaseSHA1}

func failing(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = probe.Fail
	}
	return m
}

// A device that serves and checks its clients with pkg/verify refuses every flawed client certificate and
// every weak offer; the report records it, and the state the probe left is what it says.
func TestClientAgainstVerifyingDevice(t *testing.T) {
	e := newEnv(t)
	addr := pkitest.ServeTLS(t, func() *tls.Config {
		cfg, err := e.verifier([]certpolicy.Role{certpolicy.Gateway}, x509.ExtKeyUsageClientAuth).ServerConfig(selfCert(t))
		if err != nil {
			t.Error(err)
		}
		return cfg
	})
	o := e.options(probe.Client)
	o.Target = addr
	before := countCerts(t, e.node.Store)
	r, err := probe.Run(context.Background(), e.authority(), o)
	if err != nil {
		t.Fatal(err)
	}
	wantResults(t, r, nil)
	if r.Failed() || r.Summary.Result != probe.Pass || r.Summary.Pass != 15 || r.Summary.NA != 2 || r.Summary.Total != 17 {
		t.Errorf("summary %+v", r.Summary)
	}
	byName := map[string]probe.Case{}
	for _, c := range r.Cases {
		byName[c.Name] = c
	}
	if c := byName[probe.CaseExpired]; c.Alert != "bad certificate" || !strings.Contains(c.Observed, "after the handshake") {
		t.Errorf("expired: alert %q, observed %q: a TLS 1.3 server refuses a client certificate after the client's handshake", c.Alert, c.Observed)
	}
	if c := byName[probe.CaseTLS10]; c.Alert != "protocol version not supported" {
		t.Errorf("tls10: alert %q (%s)", c.Alert, c.Observed)
	}
	// What the probe issued: 10 certificates by the RA (control, expired, not yet valid, wrong EKU, missing
	// intermediate, other environment, revoked; the station's) and no more.
	after := countCerts(t, e.node.Store)
	if after-before != 8 {
		t.Errorf("the run stored %d certificates, want 8 (control, expired, not-yet-valid, wrong-eku, missing-intermediate, station, other-environment, revoked)", after-before)
	}
	ctx := context.Background()
	rev, err := e.node.Store.GetCertificate(ctx, byName[probe.CaseRevoked].Serial)
	if err != nil || rev.Status != store.CertStatusRevoked {
		t.Fatalf("revoked case's certificate: %+v %v", rev, err)
	}
	if r.Publication == nil || r.Publication.RevokedSerial != rev.Serial || r.Publication.CRLNumber == 0 || r.Publication.Filters["dev"] == 0 || r.Publication.Filters["dev/demo-implant"] == 0 {
		t.Errorf("publication %+v", r.Publication)
	}
	if _, err := os.Stat(filepath.Join(e.publish, "crl")); err != nil {
		t.Errorf("the CRL was not handed to Publish: %v", err)
	}
	exp, err := e.node.Store.GetCertificate(ctx, byName[probe.CaseExpired].Serial)
	if err != nil || !exp.NotAfter.Before(time.Now().Add(-50*time.Minute)) {
		t.Errorf("expired case's certificate: %+v %v", exp, err)
	}
	for _, name := range []string{probe.CaseControl, probe.CaseWrongEKU} {
		c, err := e.node.Store.GetCertificate(ctx, byName[name].Serial)
		if err != nil || c.NotAfter.Sub(c.NotBefore) > ra.MaxProbeValidity {
			t.Errorf("%s: a probe certificate lives at most %s: %+v %v", name, ra.MaxProbeValidity, c, err)
		}
	}
	// Audited under the probe's principal, each issuance naming its case; the station revoked after the run.
	cases := map[string]bool{}
	stationRevoked := false
	err = e.node.Store.WalkAudit(ctx, 0, func(ev *audit.Event) error {
		if ev.Actor != "probe:test" {
			return nil
		}
		if ev.Action == "cert.issue" && ev.Outcome == "success" {
			cases[ev.Details["probe"]] = true
		}
		if ev.Action == "station.revoke" && ev.Outcome == "success" {
			stationRevoked = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{probe.CaseControl, probe.CaseExpired, probe.CaseNotYetValid, probe.CaseWrongEKU, probe.CaseMissingIntermediate, probe.CaseOtherEnvironment, probe.CaseRevoked} {
		if !cases[name] {
			t.Errorf("no audited issuance by probe:test for case %s (have %v)", name, cases)
		}
	}
	if !stationRevoked {
		t.Error("the run's station was not revoked")
	}
	checkShape(t, r)
}

// Broken devices: each defect shows as FAIL on exactly the cases it lets through.
func TestClientAgainstBrokenDevices(t *testing.T) {
	e := newEnv(t)
	chain, err := e.node.RA.Chain(context.Background(), "dev", "demo-implant")
	if err != nil {
		t.Fatal(err)
	}
	issuing, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	// device is a verifying device with its options changed by mod.
	device := func(mod func(*verify.Options)) func() *tls.Config {
		return func() *tls.Config {
			o := verify.Options{Anchors: []*x509.Certificate{e.root}, Roles: []certpolicy.Role{certpolicy.Gateway}, Usage: x509.ExtKeyUsageClientAuth,
				ClockSkew: 5 * time.Minute, Revocation: verify.Revocation{Policy: verify.FailClosed, Filter: e.filter()}}
			mod(&o)
			v, err := verify.New(o)
			if err != nil {
				t.Error(err)
			}
			cfg, err := v.ServerConfig(selfCert(t))
			if err != nil {
				t.Error(err)
			}
			return cfg
		}
	}
	for _, tc := range []struct {
		name         string
		config       func() *tls.Config
		peerHasInter bool
		want         map[string]string
	}{
		{"no revocation check", device(func(o *verify.Options) { o.Revocation = verify.Revocation{Policy: verify.FailOpen} }), false, failing(probe.CaseRevoked)},
		{"holds the issuing CA", device(func(o *verify.Options) { o.Intermediates = []*x509.Certificate{issuing} }), false, failing(probe.CaseMissingIntermediate)},
		{"holds the issuing CA, as the probe is told", device(func(o *verify.Options) { o.Intermediates = []*x509.Certificate{issuing} }), true, nil},
		{"no client verification", func() *tls.Config {
			return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{selfCert(t)}, ClientAuth: tls.NoClientCert}
		}, false, failing(certCases...)},
		{"accepts TLS 1.0", func() *tls.Config {
			cfg, err := e.verifier([]certpolicy.Role{certpolicy.Gateway}, x509.ExtKeyUsageClientAuth).ServerConfig(selfCert(t))
			if err != nil {
				t.Error(err)
			}
			cfg.MinVersion = tls.VersionTLS10
			return cfg
		}, false, failing(probe.CaseTLS12Only, probe.CaseTLS10, probe.CaseWeakCipher)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := e.options(probe.Client)
			o.Target = pkitest.ServeTLS(t, tc.config)
			o.PeerHasIntermediates = tc.peerHasInter
			r, err := probe.Run(context.Background(), e.authority(), o)
			if err != nil {
				t.Fatal(err)
			}
			wantResults(t, r, tc.want)
			if r.Failed() != (len(tc.want) > 0) || r.Summary.Fail != len(tc.want) {
				t.Errorf("summary %+v, want %d FAIL", r.Summary, len(tc.want))
			}
		})
	}
}

const serverName = "ingest.services.example.com"

// A device that connects and checks its server with pkg/verify refuses every flawed server certificate and
// weak offer; one that skips verification accepts them all, which shows as FAIL.
func TestServerSide(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		config func() *tls.Config
		want   map[string]string
	}{
		{"verifying device", func() *tls.Config {
			cfg, err := e.verifier([]certpolicy.Role{certpolicy.Service}, x509.ExtKeyUsageServerAuth).ClientConfig(nil, serverName)
			if err != nil {
				t.Error(err)
			}
			// The device reads its newest revocation filter when it checks the server, not when it dials:
			// the probe holds the first connection while it republishes.
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				return e.verifier([]certpolicy.Role{certpolicy.Service}, x509.ExtKeyUsageServerAuth).VerifyConnection(cs)
			}
			return cfg
		}, nil},
		{"InsecureSkipVerify", func() *tls.Config {
			return &tls.Config{MinVersion: tls.VersionTLS13, ServerName: serverName, InsecureSkipVerify: true} //nolint:gosec // the broken device under test
		}, failing(append([]string{probe.CaseWrongName}, certCases...)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { defer close(done); connectDevice(ln.Addr().String(), tc.config, stop) }()
			o := e.options(probe.Server)
			o.Listener, o.Name = ln, serverName
			r, err := probe.Run(context.Background(), e.authority(), o)
			close(stop)
			<-done
			if err != nil {
				t.Fatal(err)
			}
			wantResults(t, r, tc.want)
			if r.Failed() != (len(tc.want) > 0) || r.Summary.Fail != len(tc.want) {
				t.Errorf("summary %+v", r.Summary)
			}
		})
	}
}

// Production is refused before anything is issued or any connection made; a target that is down or does not
// speak TLS is unavailable, and nothing is issued for it either.
func TestRefusals(t *testing.T) {
	e := newEnv(t)
	// A listener that counts connections and answers like a plain HTTP server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan struct{}, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- struct{}{}
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			_ = c.Close()
		}
	}()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	_ = down.Close()

	before := countCerts(t, e.node.Store)
	for _, tc := range []struct {
		name   string
		mod    func(*probe.Options)
		kind   ra.Kind
		target bool
		text   string
	}{
		{"production", func(o *probe.Options) { o.Env = "production"; o.Target = ln.Addr().String() }, ra.KindForbidden, false, "refused against production CAs"},
		{"unknown environment", func(o *probe.Options) { o.Env = "qa"; o.Target = ln.Addr().String() }, ra.KindBadRequest, false, `unknown environment "qa"`},
		{"target down", func(o *probe.Options) { o.Target = downAddr }, ra.KindUnavailable, true, "cannot connect to " + downAddr},
		{"target not TLS", func(o *probe.Options) { o.Target = ln.Addr().String() }, ra.KindUnavailable, true, "does not speak TLS"},
		{"target not HOST:PORT", func(o *probe.Options) { o.Target = "device.example" }, ra.KindBadRequest, false, "is not HOST:PORT"},
		{"server without a name", func(o *probe.Options) { o.Side = probe.Server; o.Listener = ln }, ra.KindBadRequest, false, "the name the device expects"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for len(conns) > 0 {
				<-conns
			}
			o := e.options(probe.Client)
			tc.mod(&o)
			r, err := probe.Run(context.Background(), e.authority(), o)
			if err == nil || r != nil {
				t.Fatalf("ran: %+v", r)
			}
			if k := ra.KindOf(err); k != tc.kind || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %v (kind %v), want kind %v naming %q", err, k, tc.kind, tc.text)
			}
			if tc.kind == ra.KindUnavailable && !errors.Is(err, probe.ErrTarget) {
				t.Errorf("%v does not match ErrTarget", err)
			}
			if tc.target == false && tc.name != "server without a name" && len(conns) > 0 {
				t.Errorf("a refused run connected to the target")
			}
			if n := countCerts(t, e.node.Store); n != before {
				t.Errorf("a refused run issued %d certificates", n-before)
			}
		})
	}
	// The RA refuses a probe certificate in production on its own, too, audited.
	_, err = e.node.RA.IssueProbe(context.Background(), ra.Principal{ID: "probe:test", Role: ra.RoleAdmin},
		ra.ProbeRequest{IssueRequest: ra.IssueRequest{Profile: "gateway-identity", Environment: "production", ProductLine: "demo-implant"}, Case: "control"})
	if ra.KindOf(err) != ra.KindForbidden || ra.FieldOf(err) != "environment" {
		t.Errorf("IssueProbe in production: %v", err)
	}
}

// shape lists the JSON paths of a report with their types, cases once ("cases[]").
func shape(v any, path string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		out[path+" object"] = true
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			// Filters are keyed by scope: the shape is their type, not their names.
			if path == "publication.filters" {
				p = path + ".<scope>"
			}
			shape(e, p, out)
		}
	case []any:
		out[path+" array"] = true
		for _, e := range x {
			shape(e, path+"[]", out)
		}
	case string:
		out[path+" string"] = true
	case float64:
		out[path+" number"] = true
	case bool:
		out[path+" bool"] = true
	case nil:
		out[path+" null"] = true
	}
}

// checkShape holds a real report's JSON to testdata/report-shape.golden: every field, with its type, that
// 'keyward evidence' and other readers rely on; and checks the values' formats.
func checkShape(t *testing.T, r *probe.Report) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	shape(v, "", paths)
	var lines []string
	for p := range paths {
		lines = append(lines, strings.TrimSpace(p))
	}
	sort.Strings(lines)
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join("testdata", "report-shape.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("report JSON shape changed (go test -run TestClientAgainstVerifyingDevice -update after checking the readers):\ngot:\n%s\nwant:\n%s", got, want)
	}
	m := v.(map[string]any)
	if m["kind"] != "probe-tls" || m["env"] != "dev" || m["product"] != "demo-implant" || m["as"] != "client" {
		t.Errorf("report header %v %v %v %v", m["kind"], m["env"], m["product"], m["as"])
	}
	if s, _ := m["generated_at"].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(s) {
		t.Errorf("generated_at %q is not RFC 3339 UTC", s)
	}
	for _, c := range r.Cases {
		if c.Result != probe.Pass && c.Result != probe.Fail && c.Result != probe.NA {
			t.Errorf("%s: result %q", c.Name, c.Result)
		}
		if c.Description == "" || c.Observed == "" || (c.Expected != probe.ExpectAccepted && c.Expected != probe.ExpectRefused) {
			t.Errorf("%s: %+v", c.Name, c)
		}
	}
}

func TestSaveCopyAndHTML(t *testing.T) {
	at := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	r := &probe.Report{Kind: probe.Kind, Env: "dev", Product: "demo-implant", As: probe.Client, Target: "127.0.0.1:1", GeneratedAt: at,
		Cases: []probe.Case{{Name: "control", Description: "<b>good</b>", Expected: probe.ExpectAccepted, Observed: `accepted "<script>alert(1)</script>"`, Result: probe.Pass}}}
	dir := t.TempDir()
	path, err := r.SaveCopy(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "reports", "probe", "20260314T150926Z-dev.json"); path != want {
		t.Errorf("copy at %s, want %s", path, want)
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		if st, err := os.Stat(p); err != nil || st.Mode() != mode {
			t.Errorf("%s: mode %v (%v), want %v", p, st.Mode(), err, mode)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back probe.Report
	if err := json.Unmarshal(data, &back); err != nil || back.Kind != "probe-tls" || !back.GeneratedAt.Equal(at) || len(back.Cases) != 1 {
		t.Errorf("copy reads back as %+v (%v)", back, err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".probe-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	var html bytes.Buffer
	if err := r.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	h := html.String()
	if strings.Contains(h, "<script>") || strings.Contains(h, "<b>good") || !strings.Contains(h, "&lt;script&gt;") || !strings.Contains(h, "&lt;b&gt;good") {
		t.Errorf("HTML does not escape the report's values:\n%s", h)
	}
	for _, want := range []string{"<!DOCTYPE html>", "127.0.0.1:1", "2026-03-14T15:09:26Z", `class="PASS"`} {
		if !strings.Contains(h, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(h, "src=") || strings.Contains(h, "href=") {
		t.Error("the HTML report refers to outside resources")
	}
}
