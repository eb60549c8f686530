package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/metrics"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/client"
	"github.com/keyward/keyward/pkg/est"
	"github.com/keyward/keyward/pkg/firmware/verify"
)

// recording notes the documented operation of every request it carries ("METHOD /path/{template}").
type recording struct {
	base http.RoundTripper
	mu   sync.Mutex
	ops  map[string]bool
}

func (r *recording) RoundTrip(req *http.Request) (*http.Response, error) {
	if d, err := openAPI(); err == nil {
		if route, _, err := d.router.FindRoute(req); err == nil {
			r.mu.Lock()
			r.ops[req.Method+" "+route.Path] = true
			r.mu.Unlock()
		}
	}
	return r.base.RoundTrip(req)
}

// apiClient returns a pkg/client client of ts with token, whose requests and responses are checked against the
// OpenAPI document, and recorded in rec if not nil.
func (ts *testServer) apiClient(t *testing.T, token string, rec *recording) *client.Client {
	t.Helper()
	caPEM, err := os.ReadFile(ts.caFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := client.TLSConfig(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	var rt http.RoundTripper = &validating{t: t, base: &http.Transport{TLSClientConfig: cfg}}
	if rec != nil {
		rec.base = rt
		rt = rec
	}
	c, err := client.NewWithTransport(ts.url, token, rt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func must[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

// TestClientCoversEveryRoute drives every documented operation through pkg/client against a real server, in
// the flows an operator runs (tokens, a station that enrolls a device, the registry, a firmware release through
// its approvals, revocation, decommissioning), and fails if any operation of the document was not called.
func TestClientCoversEveryRoute(t *testing.T) {
	ts := startDeps(t, nil, Deps{Metrics: metrics.New()})
	ctx := context.Background()
	rec := &recording{ops: map[string]bool{}}
	admin := ts.apiClient(t, ts.admin, rec)

	// Health and the document.
	if err := admin.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := admin.Live(ctx); err != nil {
		t.Fatal(err)
	}
	if r := must[*client.Readiness](t, "ready")(admin.Ready(ctx)); r.Status != "ready" {
		t.Fatalf("readiness %+v", r)
	}
	doc := must[[]byte](t, "openapi")(admin.OpenAPI(ctx))
	if want, _ := api.OpenAPIJSON(); !bytes.Equal(doc, want) {
		t.Fatal("client read a document other than the embedded one")
	}
	if m := must[[]byte](t, "metrics")(admin.Metrics(ctx)); !bytes.Contains(m, []byte("keyward_http_requests_total")) {
		t.Fatalf("metrics: %.200s", m)
	}

	// Tokens.
	tokens := map[string]string{}
	for name, role := range map[string]string{"olga": "ca-officer", "aude": "auditor", "signer-a": "release-signer", "signer-b": "release-signer"} {
		nt := must[*client.NewToken](t, "create token "+name)(admin.CreateToken(ctx, client.TokenRequest{Name: name, Role: role, Expires: "30d"}))
		if nt.Token == "" || nt.Name != name || nt.Role != role || nt.ExpiresAt == nil {
			t.Fatalf("new token %+v", nt)
		}
		tokens[name] = nt.Token
	}
	officer, auditor := ts.apiClient(t, tokens["olga"], rec), ts.apiClient(t, tokens["aude"], rec)
	list := must[[]client.Token](t, "tokens")(auditor.Tokens(ctx))
	if len(list) < 5 || strings.Contains(mustJSON(t, list), tokens["olga"]) {
		t.Fatalf("token listing: %d tokens, or it shows a token", len(list))
	}

	// A station made over the API enrolls a device over EST with the credentials it answered.
	cred := must[*client.StationCredentials](t, "add station")(officer.AddStation(ctx, client.StationRequest{Environment: "dev", Site: "line-1", ProductLines: []string{"demo-implant"}, Quota: 10}))
	if cred.Station.State != store.StationActive || cred.Station.Quota != 10 || !strings.Contains(cred.KeyPEM, "PRIVATE KEY") {
		t.Fatalf("station %+v", cred.Station)
	}
	pair, err := tls.X509KeyPair([]byte(cred.CertificatePEM), []byte(cred.KeyPEM))
	if err != nil {
		t.Fatalf("station credentials from the API: %v", err)
	}
	ecfg, err := est.TLSConfig([]byte(cred.TrustPEM), &pair)
	if err != nil {
		t.Fatalf("trust_pem: %v", err)
	}
	station, err := est.NewClient(ts.url, "demo-implant", ecfg)
	if err != nil {
		t.Fatal(err)
	}
	defer station.Close()
	const serial = "DEMO-00000077"
	if _, err := station.SimpleEnroll(ctx, mustCSR(t, serial), nil); err != nil {
		t.Fatalf("enroll through the API's station: %v", err)
	}
	if sts := must[[]client.Station](t, "stations")(auditor.Stations(ctx)); len(sts) != 1 || sts[0].Used != 1 {
		t.Fatalf("stations %+v", sts)
	}
	for verb, state := range map[string]string{"suspend": store.StationSuspended, "resume": store.StationActive} {
		if st := must[*client.Station](t, verb)(officer.SetStationState(ctx, cred.Station.ID, verb)); st.State != state {
			t.Fatalf("%s: state %s", verb, st.State)
		}
	}

	// The registry.
	devs := must[[]client.Device](t, "devices")(auditor.Devices(ctx, client.DeviceFilter{Serial: serial}))
	if len(devs) != 1 || devs[0].Station != cred.Station.ID {
		t.Fatalf("devices %+v", devs)
	}
	ref := client.DeviceRef{Environment: "dev", ProductLine: "demo-implant", Serial: serial}
	for _, a := range []string{client.Suspend, client.Resume, client.AllowReprovision, client.ForceRenew} {
		d := must[*client.Device](t, a)(officer.DeviceAction(ctx, ref, a))
		if a == client.Suspend && d.State != "suspended" || a == client.AllowReprovision && !d.ReprovisionAllowed || a == client.ForceRenew && !d.ForceRenew {
			t.Fatalf("%s: %+v", a, d)
		}
	}
	h := must[*client.History](t, "device history")(admin.DeviceHistory(ctx, ref, nil, true))
	if len(h.Events) == 0 || len(h.Proofs) != len(h.Events) || h.Device.Serial != serial {
		t.Fatalf("history: %d events, %d proofs", len(h.Events), len(h.Proofs))
	}
	if ch := must[*client.History](t, "certificate history")(auditor.CertificateHistory(ctx, devs[0].Certificate, nil)); ch.Device.Serial != serial {
		t.Fatalf("certificate history of %s names %s", devs[0].Certificate, ch.Device.Serial)
	}

	// Certificates and revocation.
	c := must[*client.Certificate](t, "issue")(officer.Issue(ctx, client.IssueRequest{Profile: "implant-identity", CSR: string(mustCSRPEM(t, "DEMO-00000099"))}))
	if got := must[*client.Certificate](t, "certificate")(auditor.Certificate(ctx, c.Serial)); got.Serial != c.Serial || got.PEM == "" {
		t.Fatalf("certificate %+v", got)
	}
	if cs := must[[]client.Certificate](t, "certificates")(auditor.Certificates(ctx, client.CertificateFilter{Profile: "implant-identity", Limit: 10})); len(cs) != 2 {
		t.Fatalf("%d certificates of implant-identity, want 2", len(cs))
	}
	if r := must[*client.Revocation](t, "revoke")(officer.Revoke(ctx, c.Serial, client.RevokeRequest{Reason: "certificateHold"})); r.Status != store.CertStatusRevoked || r.Reason != "certificateHold" {
		t.Fatalf("revoke %+v", r)
	}
	if r := must[*client.Revocation](t, "unhold")(officer.Unhold(ctx, c.Serial)); r.Status != store.CertStatusValid {
		t.Fatalf("unhold %+v", r)
	}
	if b := must[*client.BulkResult](t, "bulk")(officer.BulkRevoke(ctx, client.BulkRevokeRequest{Device: serial, Reason: "keyCompromise", DryRun: true})); b.Matched != 1 || !b.DryRun {
		t.Fatalf("bulk dry run %+v", b)
	}
	if d := must[*client.DecommissionResult](t, "decommission")(officer.Decommission(ctx, ref, "QA, destruction record 7")); d.State != "decommissioned" || len(d.Revoked) != 1 {
		t.Fatalf("decommission %+v", d)
	}
	if cas := must[[]client.CA](t, "cas")(auditor.CAs(ctx)); len(cas) < 2 {
		t.Fatalf("%d CAs", len(cas))
	}
	if pemChain := must[[]byte](t, "chain")(auditor.Chain(ctx, "dev", "demo-implant")); bytes.Count(pemChain, []byte("BEGIN CERTIFICATE")) != 2 {
		t.Fatalf("chain: %s", pemChain)
	}
	if keys := must[[]client.Key](t, "keys")(auditor.Keys(ctx)); len(keys) == 0 {
		t.Fatal("no keys")
	}
	evs := must[[]client.Event](t, "audit")(auditor.Audit(ctx, 0))
	if len(evs) == 0 || len(must[[]client.Event](t, "audit after")(auditor.Audit(ctx, evs[len(evs)-1].Seq))) != 0 {
		t.Fatalf("audit: %d events", len(evs))
	}

	// A firmware release: created over the API, approved by two signers with their own tokens, signed.
	signerA, signerB := ts.apiClient(t, tokens["signer-a"], rec), ts.apiClient(t, tokens["signer-b"], rec)
	image := make([]byte, 64<<10)
	rand.Read(image)
	rel := must[*client.FirmwareRelease](t, "create release")(signerA.CreateRelease(ctx, client.ReleaseRequest{Environment: "dev", ProductLine: "demo-implant", Version: "2.0.0"}, bytes.NewReader(image)))
	if rel.ImageSize != int64(len(image)) || rel.Status != "draft" {
		t.Fatalf("release %+v", rel)
	}
	must[*client.FirmwareRelease](t, "approve a")(signerA.ApproveRelease(ctx, rel.ID))
	if r := must[*client.FirmwareRelease](t, "approve b")(signerB.ApproveRelease(ctx, rel.ID)); len(r.Approvers) != 2 || r.Approvers[0] != "signer-a" {
		t.Fatalf("approvals %+v", r.Approvers)
	}
	m := must[[]byte](t, "sign")(admin.SignRelease(ctx, rel.ID))
	trust, _, err := ts.n.RA.FirmwareTrust(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify.Verify(m, bytes.NewReader(image), trust, verify.Options{DeviceClass: "demo-implant"}); err != nil {
		t.Fatalf("manifest of a release created over the API: %v", err)
	}
	if got := must[*client.FirmwareRelease](t, "release")(auditor.Release(ctx, rel.ID)); got.Status != "signed" {
		t.Fatalf("release status %s", got.Status)
	}
	if rs := must[[]client.FirmwareRelease](t, "releases")(signerB.Releases(ctx, "dev", "demo-implant")); len(rs) != 1 {
		t.Fatalf("%d releases", len(rs))
	}

	// A factory export that is not one is refused, and records nothing (cmd/keyward's remote CLI test
	// reconciles a real one).
	before := ts.state(t)
	_, err = officer.ReconcileExport(ctx, client.ReconcileOptions{Environment: "dev"}, strings.NewReader("not an export"))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Kind != client.KindBadRequest {
		t.Fatalf("reconcile garbage: %v", err)
	}
	if after := ts.state(t); after != before {
		t.Fatalf("a refused export changed the store:\n%s\n%s", before, after)
	}

	must[*client.Station](t, "revoke station")(officer.SetStationState(ctx, cred.Station.ID, "revoke"))
	if tk := must[*client.Token](t, "revoke token")(admin.RevokeToken(ctx, "olga", "left the team")); tk.State != "revoked" {
		t.Fatalf("revoked token %+v", tk)
	}
	if _, err := officer.CAs(ctx); !errors.Is(err, &client.Error{Kind: client.KindUnauthorized}) {
		t.Fatalf("revoked token still works: %v", err)
	}

	d := loadOpenAPI(t)
	var missing []string
	for path, item := range d.doc.Paths.Map() {
		for method := range item.Operations() {
			if !rec.ops[method+" "+path] {
				missing = append(missing, method+" "+path)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("pkg/client never called %d documented operations: %s", len(missing), strings.Join(missing, ", "))
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustCSRPEM(t *testing.T, cn string) []byte { return []byte(csrPEM(t, cn)) }

// state is what a refused request must leave alone: every station, token, device and release with its state,
// the certificates, and the successful audit events.
func (ts *testServer) state(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	sts, err := ts.n.Store.ListStations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		b.WriteString("station " + s.ID + " " + s.State + "\n")
	}
	toks, err := ts.n.Store.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range toks {
		b.WriteString("token " + tk.Name + " " + tk.Role + " " + tk.RevocationReason + "\n")
	}
	devs, _ := ts.n.Store.ListDevices(ctx, store.DeviceFilter{})
	for _, d := range devs {
		b.WriteString(mustJSON(t, api.NewDevice(d)) + "\n")
	}
	rels, _ := ts.n.Store.ListFirmwareReleases(ctx, "", "")
	for _, r := range rels {
		b.WriteString("release " + r.ID + " " + r.Status + "\n")
	}
	certs, _ := ts.n.Store.ListCertificates(ctx, store.CertFilter{})
	for _, c := range certs {
		b.WriteString("cert " + c.Serial + " " + c.Status + "\n")
	}
	n := 0
	for _, e := range ts.events(t) {
		if e.Outcome == audit.OutcomeSuccess {
			n++
		}
	}
	b.WriteString("successful events " + strings.Repeat("|", n) + "\n")
	return b.String()
}

// TestOperatorRoutesRefuse: a body the OpenAPI document refuses is answered 400 naming the field, and a token
// whose role lacks the right is answered 403; neither changes anything.
func TestOperatorRoutesRefuse(t *testing.T) {
	ts := start(t)
	officer, auditor, signer := operatorToken(t, ts, "ca-officer"), operatorToken(t, ts, "auditor"), operatorToken(t, ts, "release-signer")
	_, cl := stationClient(t, ts, "site-r")
	if _, err := cl.SimpleEnroll(context.Background(), mustCSR(t, "DEMO-00000055"), nil); err != nil {
		t.Fatal(err)
	}
	const dev = "/api/v1/devices/dev/demo-implant/DEMO-00000055"
	before := ts.state(t)
	for _, tc := range []struct {
		method, path, token, ctype, body string
		code                             int
		field                            string
	}{
		// Bodies the schema refuses.
		{"POST", "/api/v1/stations", ts.admin, "", `{"environment":"dev","site":"s1","product_lines":"demo-implant"}`, 400, "product_lines"},
		{"POST", "/api/v1/stations", ts.admin, "", `{"environment":"dev","site":"s1"}`, 400, "product_lines"},
		{"POST", "/api/v1/stations", ts.admin, "", `{"environment":"dev","site":"s1","product_lines":["demo-implant"],"quota":"ten"}`, 400, "quota"},
		{"POST", "/api/v1/stations", ts.admin, "", `{"environment":"dev","site":"s1","product_lines":["demo-implant"],"valid_until":"tomorrow"}`, 400, "valid_until"},
		{"POST", "/api/v1/stations", ts.admin, "", `{"environment":"dev","site":"s1","product_lines":["demo-implant"],"owner":"x"}`, 400, "owner"},
		{"POST", "/api/v1/stations", ts.admin, "", `["dev"]`, 400, ""},
		{"POST", "/api/v1/tokens", ts.admin, "", `{"name":"x"}`, 400, "role"},
		{"POST", "/api/v1/tokens", ts.admin, "", `{"name":7,"role":"auditor"}`, 400, "name"},
		{"POST", "/api/v1/tokens", ts.admin, "", `{"name":"x","role":"auditor","expires":"soon"}`, 400, "expires"},
		{"POST", "/api/v1/tokens", ts.admin, "", `{"name":"x","role":"root"}`, 400, "role"},
		{"POST", "/api/v1/certificates/00ff/revoke", officer, "", `{"reason":1}`, 400, "reason"},
		{"POST", dev + "/decommission", officer, "", `{"attested_by":null}`, 400, "attested_by"},
		{"POST", "/api/v1/revocations", officer, "", `{"reason":"superseded","dry_run":"yes"}`, 400, "dry_run"},
		// Query parameters and uploads.
		{"POST", "/api/v1/firmware/releases?environment=dev&product_line=demo-implant", signer, "application/octet-stream", "image", 400, "version"},
		{"POST", "/api/v1/firmware/releases?environment=dev&product_line=demo-implant&version=1.0.0&color=red", signer, "application/octet-stream", "image", 400, "color"},
		{"POST", "/api/v1/firmware/releases?environment=dev&product_line=demo-implant&version=1.0.0", signer, "application/json", "image", 400, "Content-Type"},
		{"POST", "/api/v1/factory/exports?final=maybe", officer, "application/octet-stream", "x", 400, "final"},
		{"GET", "/api/v1/devices?limit=0", auditor, "", "", 400, "limit"},
		{"GET", "/api/v1/certificates/00ff/history?at=yesterday", auditor, "", "", 400, "at"},
		// Roles without the right.
		{"POST", "/api/v1/stations", auditor, "", `{"environment":"dev","site":"s1","product_lines":["demo-implant"]}`, 403, ""},
		{"POST", "/api/v1/stations", signer, "", `{"environment":"dev","site":"s1","product_lines":["demo-implant"]}`, 403, ""},
		{"GET", "/api/v1/stations", signer, "", "", 403, ""},
		{"POST", "/api/v1/stations/site-r-x/suspend", auditor, "", "", 403, ""},
		{"POST", "/api/v1/tokens", officer, "", `{"name":"x","role":"admin"}`, 403, ""},
		{"POST", dev + "/suspend", auditor, "", "", 403, ""},
		{"POST", dev + "/force-renew", signer, "", "", 403, ""},
		{"GET", "/api/v1/devices", signer, "", "", 403, ""},
		{"GET", "/api/v1/certificates/00ff/history", officer, "", "", 403, ""},
		{"POST", "/api/v1/firmware/releases?environment=dev&product_line=demo-implant&version=1.0.0", officer, "application/octet-stream", "image", 403, ""},
		{"GET", "/api/v1/firmware/releases", officer, "", "", 403, ""},
		{"POST", "/api/v1/factory/exports", auditor, "application/octet-stream", "x", 403, ""},
		{"POST", "/api/v1/factory/exports", signer, "application/octet-stream", "x", 403, ""},
	} {
		req, err := http.NewRequest(tc.method, ts.url+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tc.token)
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := ts.client(0).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error, Field string
		}
		derr := json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || derr != nil || body.Error == "" || body.Field != tc.field {
			t.Errorf("%s %s %s: %d %+v (%v); want %d naming field %q", tc.method, tc.path, tc.body, resp.StatusCode, body, derr, tc.code, tc.field)
		}
		if tc.field != "" && !strings.Contains(body.Error, tc.field) {
			t.Errorf("%s %s: the message %q does not name %q", tc.method, tc.path, body.Error, tc.field)
		}
	}
	if after := ts.state(t); after != before {
		t.Fatalf("refused requests changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
