package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/revocation/filter"
	"github.com/keyward/keyward/pkg/trust"
)

func (p *testPKI) verifier(t testing.TB, mutate func(*Options)) *Verifier {
	t.Helper()
	o := Options{Anchors: []*x509.Certificate{p.root}, Roles: []certpolicy.Role{certpolicy.Device}, Usage: x509.ExtKeyUsageClientAuth,
		Now: func() time.Time { return p.now }, Revocation: Revocation{Policy: FailOpen}}
	if mutate != nil {
		mutate(&o)
	}
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNewRefusesIncompleteOptions(t *testing.T) {
	p := newTestPKI(t)
	good := Options{Anchors: []*x509.Certificate{p.root}, Roles: []certpolicy.Role{certpolicy.Device}, Usage: x509.ExtKeyUsageClientAuth, Revocation: Revocation{Policy: FailClosed}}
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
	anchors, err := trust.NewAnchors("dev", 0, p.root)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"no revocation policy", func(o *Options) { o.Revocation.Policy = 0 }, "choose verify.FailClosed or verify.FailOpen"},
		{"no anchors", func(o *Options) { o.Anchors = nil }, "no trust anchors"},
		{"anchors twice", func(o *Options) { o.TrustStore = anchors }, "not both"},
		{"leaf as anchor", func(o *Options) { o.Anchors = []*x509.Certificate{{}} }, "not a CA certificate"},
		{"no roles", func(o *Options) { o.Roles = nil }, "Roles is empty"},
		{"unknown role", func(o *Options) { o.Roles = []certpolicy.Role{"implant"} }, `"implant" is not a role`},
		{"bad arc", func(o *Options) { o.Arc = "1.3.x" }, "invalid policy arc"},
		{"bad usage", func(o *Options) { o.Usage = x509.ExtKeyUsageCodeSigning }, "Usage"},
		{"negative skew", func(o *Options) { o.ClockSkew = -time.Second }, "ClockSkew"},
		{"huge skew", func(o *Options) { o.ClockSkew = 48 * time.Hour }, "ClockSkew"},
	}
	for _, tc := range tests {
		o := good
		tc.mutate(&o)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	// The anchors of a pkg/trust store work like Anchors.
	o := good
	o.Anchors, o.TrustStore = nil, anchors
	if _, err := New(o); err != nil {
		t.Errorf("TrustStore: %v", err)
	}
}

// TestRefusals: one case per error, each on a certificate that passes every other check.
func TestRefusals(t *testing.T) {
	p := newTestPKI(t)
	device, _ := p.leaf(t, "DEMO-00000001", certpolicy.Device)
	gateway, _ := p.leaf(t, "GW-WARD-7", certpolicy.Gateway)
	station, _ := p.leaf(t, "cm-a-01", certpolicy.Station)
	other := newTestPKI(t) // another environment's root
	foreign, _ := other.leaf(t, "DEMO-00000001", certpolicy.Device)
	noPolicy, _ := p.leaf(t, "DEMO-00000002", "")
	twoRoles, _ := p.leaf(t, "DEMO-00000003", certpolicy.Device, withPolicies(p.arc.Policy(certpolicy.Device), p.arc.Policy(certpolicy.Gateway)))
	otherArc, _ := p.leaf(t, "DEMO-00000004", "", withPolicies(certpolicy.MustParseArc("2.999").Policy(certpolicy.Device)))
	expired, _ := p.leaf(t, "DEMO-00000005", certpolicy.Device, withValidity(p.now.AddDate(-2, 0, 0), p.now.Add(-time.Hour)))
	future, _ := p.leaf(t, "DEMO-00000006", certpolicy.Device, withValidity(p.now.Add(time.Hour), p.now.AddDate(1, 0, 0)))
	clientOnly, _ := p.leaf(t, "DEMO-00000007", certpolicy.Device, withEKU(x509.ExtKeyUsageClientAuth))
	// A station CA's key making a "device": the station CA carries only the station policy.
	forged := p.under(t, p.station, p.stKey, "DEMO-00000008", []x509.OID{p.arc.Policy(certpolicy.Device)}, x509.ExtKeyUsageClientAuth)
	legacyDevice := p.under(t, p.legacy, p.legKey, "DEMO-00000009", []x509.OID{p.arc.Policy(certpolicy.Device)})

	chain := func(cs ...*x509.Certificate) []*x509.Certificate { return cs }
	devices := func(o *Options) {}
	tests := []struct {
		name   string
		chain  []*x509.Certificate
		mutate func(*Options)
		want   error
		detail string
	}{
		{"empty", nil, devices, ErrMalformed, "no certificate"},
		{"other environment", chain(foreign, other.issuing), devices, ErrUntrusted, "no chain to the pinned anchors"},
		{"missing intermediate", chain(device), devices, ErrUntrusted, ""},
		{"expired", chain(expired, p.issuing), devices, ErrExpired, "expired"},
		{"not yet valid", chain(future, p.issuing), devices, ErrNotYetValid, "valid from"},
		{"client-only as server", chain(clientOnly, p.issuing), func(o *Options) { o.Usage = x509.ExtKeyUsageServerAuth }, ErrEKU, "serverAuth"},
		{"station as server", chain(station, p.station), func(o *Options) {
			o.Usage = x509.ExtKeyUsageServerAuth
			o.Roles = []certpolicy.Role{certpolicy.Station}
		}, ErrEKU, ""},
		{"no policy", chain(noPolicy, p.issuing), devices, ErrWrongPolicy, "no Keyward role policy"},
		{"two roles", chain(twoRoles, p.issuing), devices, ErrWrongPolicy, "several roles"},
		{"policy under another arc", chain(otherArc, p.issuing), devices, ErrWrongPolicy, "no Keyward role policy under " + certpolicy.DefaultArc},
		{"gateway as device", chain(gateway, p.issuing), devices, ErrWrongRole, "its role is gateway"},
		{"CA as peer", chain(p.issuing), func(o *Options) { o.Usage = x509.ExtKeyUsageAny }, ErrWrongRole, "CA certificate"},
		{"device made by the station CA", chain(forged, p.station), devices, ErrWrongPolicy, "may not vouch for the device role"},
		{"CA without policies", chain(legacyDevice, p.legacy), devices, ErrWrongPolicy, "AllowCAsWithoutPolicies"},
		{"revocation unknown, fail-closed", chain(device, p.issuing), func(o *Options) { o.Revocation.Policy = FailClosed }, ErrRevocationUnknown, "no revocation source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := p.verifier(t, tc.mutate)
			res, err := v.Verify(context.Background(), tc.chain)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v (result %+v), want %v", err, res, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("err = %v, want an *Error saying %q", err, tc.detail)
			}
		})
	}
}

// TestStationNeverPassesAsAnotherRole: a factory station's certificate is refused wherever a device, gateway
// or service is expected, as a client and as a server, even by a verifier that accepts every other role.
func TestStationNeverPassesAsAnotherRole(t *testing.T) {
	p := newTestPKI(t)
	station, _ := p.leaf(t, "cm-a-01", certpolicy.Station)
	for _, role := range []certpolicy.Role{certpolicy.Device, certpolicy.Gateway, certpolicy.Service} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageAny} {
			v := p.verifier(t, func(o *Options) {
				o.Roles = []certpolicy.Role{role}
				o.Usage = usage
				o.AllowCAsWithoutPolicies = true
			})
			_, err := v.Verify(context.Background(), []*x509.Certificate{station, p.station})
			if err == nil || (!errors.Is(err, ErrWrongRole) && !errors.Is(err, ErrEKU)) {
				t.Errorf("station as %s (%v): err = %v", role, usage, err)
			}
		}
	}
	// And it passes where a station is expected (the EST server's side).
	v := p.verifier(t, func(o *Options) { o.Roles = []certpolicy.Role{certpolicy.Station} })
	res, err := v.Verify(context.Background(), []*x509.Certificate{station, p.station})
	if err != nil || res.Role != certpolicy.Station {
		t.Errorf("station as station: %v, %v", res, err)
	}
}

func TestAccepts(t *testing.T) {
	p := newTestPKI(t)
	device, _ := p.leaf(t, "DEMO-00000001", certpolicy.Device)
	svc, _ := p.leaf(t, "", certpolicy.Service, withDNS("api.services.example.com"))
	legacyDevice := p.under(t, p.legacy, p.legKey, "DEMO-00000009", []x509.OID{p.arc.Policy(certpolicy.Device)})
	edge, _ := p.leaf(t, "DEMO-00000010", certpolicy.Device, withValidity(p.now.Add(-48*time.Hour), p.now.Add(-2*time.Minute)))
	early, _ := p.leaf(t, "DEMO-00000011", certpolicy.Device, withValidity(p.now.Add(2*time.Minute), p.now.AddDate(1, 0, 0)))

	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		// An implant's certificate has no EKU extension: it is a TLS client and server.
		v := p.verifier(t, func(o *Options) { o.Usage = usage })
		res, err := v.Verify(context.Background(), []*x509.Certificate{device, p.issuing})
		if err != nil || res.Role != certpolicy.Device || len(res.Chain) != 3 || res.RevocationUnknown == "" {
			t.Errorf("device (%v): %+v, %v", usage, res, err)
		}
	}
	// The implant sends its certificate alone; the programmer holds the issuing CA.
	v := p.verifier(t, func(o *Options) { o.Intermediates = []*x509.Certificate{p.issuing} })
	if _, err := v.Verify(context.Background(), []*x509.Certificate{device}); err != nil {
		t.Errorf("with Intermediates: %v", err)
	}
	v = p.verifier(t, func(o *Options) {
		o.Roles = []certpolicy.Role{certpolicy.Service, certpolicy.Gateway}
		o.Usage = x509.ExtKeyUsageServerAuth
	})
	if res, err := v.Verify(context.Background(), []*x509.Certificate{svc, p.issuing}); err != nil || res.Role != certpolicy.Service {
		t.Errorf("service: %+v, %v", res, err)
	}
	v = p.verifier(t, func(o *Options) { o.AllowCAsWithoutPolicies = true })
	if _, err := v.Verify(context.Background(), []*x509.Certificate{legacyDevice, p.legacy}); err != nil {
		t.Errorf("legacy CA allowed: %v", err)
	}
	// Clock skew: two minutes out is refused exactly and accepted with five minutes' allowance.
	for _, c := range []*x509.Certificate{edge, early} {
		if _, err := p.verifier(t, nil).Verify(context.Background(), []*x509.Certificate{c, p.issuing}); err == nil {
			t.Errorf("%s accepted without skew", c.Subject.CommonName)
		}
		if _, err := p.verifier(t, func(o *Options) { o.ClockSkew = 5 * time.Minute }).Verify(context.Background(), []*x509.Certificate{c, p.issuing}); err != nil {
			t.Errorf("%s within skew: %v", c.Subject.CommonName, err)
		}
	}
}

func TestFilterRevocation(t *testing.T) {
	p := newTestPKI(t)
	good, _ := p.leaf(t, "DEMO-00000001", certpolicy.Device)
	bad, _ := p.leaf(t, "DEMO-00000002", certpolicy.Device)
	f := p.buildFilter(t, []*x509.Certificate{bad}, []*x509.Certificate{good})
	v := p.verifier(t, func(o *Options) { o.Revocation = Revocation{Policy: FailClosed, Filter: f} })
	res, err := v.Verify(context.Background(), []*x509.Certificate{good, p.issuing})
	if err != nil || res.Revocation != "filter" {
		t.Errorf("good: %+v, %v", res, err)
	}
	if _, err := v.Verify(context.Background(), []*x509.Certificate{bad, p.issuing}); !errors.Is(err, ErrRevoked) || !errors.Is(err, filter.ErrCertificateRevoked) {
		t.Errorf("revoked: err = %v", err)
	}
	// A revoked CA: everything under it.
	fca := p.buildFilter(t, nil, []*x509.Certificate{good, bad}, p.issuing)
	v = p.verifier(t, func(o *Options) { o.Revocation = Revocation{Policy: FailOpen, Filter: fca} })
	if _, err := v.Verify(context.Background(), []*x509.Certificate{good, p.issuing}); !errors.Is(err, ErrRevoked) || !errors.Is(err, filter.ErrIssuerRevoked) {
		t.Errorf("under a revoked CA: err = %v", err)
	}
	// A stale filter answers nothing: fail-closed refuses, fail-open accepts and says why.
	late := func(o *Options) { o.Now = func() time.Time { return p.now.Add(48 * time.Hour) } }
	v = p.verifier(t, func(o *Options) { late(o); o.Revocation = Revocation{Policy: FailClosed, Filter: f} })
	if _, err := v.Verify(context.Background(), []*x509.Certificate{good, p.issuing}); !errors.Is(err, ErrRevocationUnknown) || !strings.Contains(err.Error(), "stale") {
		t.Errorf("stale filter, fail-closed: err = %v", err)
	}
	v = p.verifier(t, func(o *Options) { late(o); o.Revocation = Revocation{Policy: FailOpen, Filter: f} })
	if res, err := v.Verify(context.Background(), []*x509.Certificate{good, p.issuing}); err != nil || !strings.Contains(res.RevocationUnknown, "stale") {
		t.Errorf("stale filter, fail-open: %+v, %v", res, err)
	}
}

// TestImports: the standard library and Keyward's pkg/ packages (and what those may use: CBOR and COSE, for
// pkg/trust), never internal/ or another module.
func TestImports(t *testing.T) {
	const pkg = "github.com/keyward/keyward/pkg/verify"
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \"\\n\"}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, imp := range strings.Fields(string(out)) {
		if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") && !strings.HasPrefix(imp, "github.com/keyward/keyward/pkg/") {
			t.Errorf("%s imports %s: only the standard library and Keyward's pkg/ packages", pkg, imp)
		}
	}
	out, err = exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	allowed := []string{"github.com/keyward/keyward/pkg/", "github.com/fxamacker/cbor/v2", "github.com/x448/float16", "github.com/veraison/go-cose"}
	deps := strings.Fields(string(out))
	if len(deps) < 3 {
		t.Fatalf("go list -deps listed %v; the test is not looking at what it should", deps)
	}
	for _, d := range deps {
		ok := false
		for _, a := range allowed {
			ok = ok || strings.HasPrefix(d, a)
		}
		if !ok || strings.Contains(d, "/internal/") {
			t.Errorf("%s depends on %s", pkg, d)
		}
	}
}

// serve answers every request with body (and counts them).
func serve(t *testing.T, body func() []byte) (string, *int) {
	n := new(int)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*n++
		w.Write(body())
	}))
	t.Cleanup(s.Close)
	return s.URL, n
}
