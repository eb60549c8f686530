package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/metrics"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/client"
)

func init() {
	// The API's binary and text bodies are checked for their media type, not decoded.
	openapi3filter.RegisterBodyDecoder("application/pem-certificate-chain", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/cbor", openapi3filter.FileBodyDecoder)
}

// openAPI is the embedded document as kin-openapi loads it, validated once, and a router over its paths.
var openAPI = sync.OnceValues(func() (*openAPIDoc, error) {
	b, err := api.OpenAPIJSON()
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &openAPIDoc{doc: doc, router: router}, nil
})

type openAPIDoc struct {
	doc    *openapi3.T
	router routers.Router
}

func loadOpenAPI(t testing.TB) *openAPIDoc {
	t.Helper()
	d, err := openAPI()
	if err != nil {
		t.Fatalf("OpenAPI document: %v", err)
	}
	return d
}

// operatorRoute reports whether rt belongs in the OpenAPI document: every route of the API listener but EST's
// (RFC 7030 defines those; docs/enrollment.md describes them).
func operatorRoute(rt Route) bool { return !strings.HasPrefix(rt.Pattern, "/.well-known/est/") }

// TestOpenAPICoversEveryRoute walks the server's route table and the document both ways: a route missing from
// the document, or a documented operation the server does not serve, fails. The server is built with metrics,
// so that /metrics is registered.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	d := loadOpenAPI(t)
	ts := startDeps(t, nil, Deps{Metrics: metrics.New()})
	served := map[string]bool{}
	for _, rt := range ts.s.Routes() {
		if operatorRoute(rt) {
			served[rt.Method+" "+rt.Pattern] = true
		}
	}
	documented := map[string]bool{}
	for path, item := range d.doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for k := range served {
		if !documented[k] {
			t.Errorf("route %s is served but missing from internal/api/openapi.yaml", k)
		}
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("operation %s is documented in internal/api/openapi.yaml but the server has no such route", k)
		}
	}
	if len(served) < 30 {
		t.Errorf("only %d operator routes: the walk found too few to prove anything", len(served))
	}
	// Every documented operation but the public ones requires the operator token, and the public ones are
	// exactly the server's public routes.
	for _, rt := range ts.s.Routes() {
		if !operatorRoute(rt) {
			continue
		}
		op := d.doc.Paths.Find(rt.Pattern).GetOperation(rt.Method)
		public := op.Security != nil && len(*op.Security) == 0
		if public != rt.Public {
			t.Errorf("%s %s: public %v in the server, %v in the document", rt.Method, rt.Pattern, rt.Public, public)
		}
	}
}

// TestOpenAPIServed: the document served is the embedded one, to anyone, and it is OpenAPI 3.1.
func TestOpenAPIServed(t *testing.T) {
	ts := start(t)
	code, body := ts.do(t, "GET", "/api/v1/openapi.json", "", nil)
	want, err := api.OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	if code != 200 || !bytes.Equal(body, want) {
		t.Fatalf("GET /api/v1/openapi.json: %d, %d bytes; want 200 and the embedded document (%d bytes)", code, len(body), len(want))
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q (%v), want 3.1.0", doc.OpenAPI, err)
	}
}

// TestSchemasMatchTypes holds every request and response schema of the document equal to the Go type the
// server decodes or encodes: the same property names, required exactly where the type requires (requests: tag
// `required:"true"`; responses: no omitempty).
func TestSchemasMatchTypes(t *testing.T) {
	d := loadOpenAPI(t)
	requests := map[string]any{
		"IssueRequest": IssueRequest{}, "RevokeRequest": RevokeRequest{}, "BulkRevokeRequest": BulkRevokeByRegistryRequest{},
		"RevokeTokenRequest": RevokeTokenRequest{}, "TokenRequest": TokenRequest{}, "DecommissionRequest": DecommissionRequest{},
		"StationRequest": StationRequest{},
	}
	for name, v := range requests {
		fields := bodyFields(reflect.TypeOf(v))
		props, required := map[string]bool{}, map[string]bool{}
		for k, f := range fields {
			props[k] = true
			if f.required {
				required[k] = true
			}
		}
		compareSchema(t, d, name, props, required)
	}
	responses := map[string]any{
		"CA": api.CA{}, "Certificate": api.Certificate{}, "Revocation": api.Revocation{}, "BulkResult": ra.BulkResult{}, "Key": api.Key{},
		"Event": api.Event{}, "Token": api.Token{}, "NewToken": api.NewTokenSecret{}, "Station": api.Station{},
		"StationCredentials": api.StationCredentials{}, "Device": api.Device{}, "DecommissionResult": ra.DecommissionResult{},
		"FirmwareRelease": api.FirmwareRelease{}, "ReconcileResult": ra.ReconcileResult{}, "History": api.History{}, "Error": struct {
			Error string `json:"error"`
			Field string `json:"field,omitempty"`
		}{},
	}
	for name, v := range responses {
		props, required := jsonFields(v)
		compareSchema(t, d, name, props, required)
	}
	// pkg/client's types read and write the same fields: its responses as the server's, its requests with
	// every required field sent even when empty (no omitempty), so the server names what is missing.
	clientTypes := map[string]any{
		"CA": client.CA{}, "Certificate": client.Certificate{}, "Revocation": client.Revocation{}, "BulkResult": client.BulkResult{}, "Key": client.Key{},
		"Event": client.Event{}, "Token": client.Token{}, "NewToken": client.NewToken{}, "Station": client.Station{},
		"StationCredentials": client.StationCredentials{}, "Device": client.Device{}, "DecommissionResult": client.DecommissionResult{},
		"FirmwareRelease": client.FirmwareRelease{}, "ReconcileResult": client.ReconcileResult{}, "History": client.History{},
		"IssueRequest": client.IssueRequest{}, "RevokeRequest": client.RevokeRequest{}, "BulkRevokeRequest": client.BulkRevokeRequest{},
		"TokenRequest": client.TokenRequest{}, "StationRequest": client.StationRequest{},
	}
	for name, v := range clientTypes {
		props, required := jsonFields(v)
		compareSchema(t, d, name, props, required)
	}
	// Every request schema of the document is one the test compared.
	for name, ref := range d.doc.Components.Schemas {
		if strings.HasSuffix(name, "Request") && requests[name] == nil {
			t.Errorf("schema %s is not compared with a Go type", name)
		}
		_ = ref
	}
}

// jsonFields returns the JSON names of struct v's fields, and those without omitempty.
func jsonFields(v any) (props, required map[string]bool) {
	props, required = map[string]bool{}, map[string]bool{}
	rt := reflect.TypeOf(v)
	for i := 0; i < rt.NumField(); i++ {
		tag := rt.Field(i).Tag.Get("json")
		n, opts, _ := strings.Cut(tag, ",")
		props[n] = true
		if !strings.Contains(opts, "omitempty") {
			required[n] = true
		}
	}
	return props, required
}

func compareSchema(t *testing.T, d *openAPIDoc, name string, props, required map[string]bool) {
	t.Helper()
	ref := d.doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		t.Errorf("schema %s missing from the document", name)
		return
	}
	s := ref.Value
	if s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has {
		t.Errorf("schema %s allows additional properties; every body is strict", name)
	}
	got := map[string]bool{}
	for k := range s.Properties {
		got[k] = true
	}
	if !maps(got, props) {
		t.Errorf("schema %s properties %v, Go type %v", name, keys(got), keys(props))
	}
	req := map[string]bool{}
	for _, k := range s.Required {
		req[k] = true
	}
	if !maps(req, required) {
		t.Errorf("schema %s required %v, Go type %v", name, keys(req), keys(required))
	}
}

func maps(a, b map[string]bool) bool { return reflect.DeepEqual(keys(a), keys(b)) }

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// validating is the transport of the API tests' HTTP clients: it checks every request to a documented route
// and its response against the OpenAPI document. A request the document refuses must be refused by the server
// with a 4xx; a request the server accepts (2xx) must be one the document accepts; every response body must
// match its documented schema.
type validating struct {
	t    testing.TB // nil: check nothing
	base http.RoundTripper
}

func (v *validating) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := v.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	rb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	v.check(req, body, resp, rb)
	return resp, nil
}

func (v *validating) check(req *http.Request, body []byte, resp *http.Response, rb []byte) {
	t := v.t
	if t == nil { // a site's server (NewSite), which the document does not describe
		return
	}
	d, err := openAPI()
	if err != nil {
		t.Errorf("OpenAPI document: %v", err)
		return
	}
	if strings.HasPrefix(req.URL.Path, "/.well-known/est/") {
		return
	}
	// The validator sees the request as the server did; a JSON body sent without a type is JSON to the server.
	vr := req.Clone(context.Background())
	vr.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) > 0 && vr.Header.Get("Content-Type") == "" {
		vr.Header.Set("Content-Type", "application/json")
	}
	route, params, err := d.router.FindRoute(vr)
	if err != nil {
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: answered %d, and the document has no such operation (%v)", req.Method, req.URL.Path, resp.StatusCode, err)
		}
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: vr, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	// A request the schema accepts may still break a rule (an unknown profile, a missing token): only the
	// other way round is checked.
	if reqErr := openapi3filter.ValidateRequest(context.Background(), in); reqErr != nil && (resp.StatusCode < 400 || resp.StatusCode >= 500) {
		t.Errorf("%s %s: the server answered %d to a request the document refuses: %v\nbody: %.300s", req.Method, req.URL.Path, resp.StatusCode, reqErr, body)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	out.SetBodyBytes(rb)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: response %d does not match the document: %v\nbody: %.500s", req.Method, req.URL.Path, resp.StatusCode, err, rb)
	}
}
