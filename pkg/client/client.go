package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls one Keyward server with one operator token. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// maxResponse bounds a response body the client reads (a history with proofs, a listing of 10,000 records).
const maxResponse = 64 << 20

// TLSConfig returns the client TLS configuration: TLS 1.3 only, trusting only the CA certificates in caPEM (the
// server's service CA, DATA/tls/ca.pem, which belongs to no device environment).
func TLSConfig(caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no PEM certificate in the server CA file")
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}, nil
}

// New returns a client of the server at serverURL (https://host:port) that authenticates with token and trusts
// only caPEM's certificates. The token is a secret: it goes only into the Authorization header.
func New(serverURL, token string, caPEM []byte) (*Client, error) {
	cfg, err := TLSConfig(caPEM)
	if err != nil {
		return nil, err
	}
	return NewWithTLS(serverURL, token, cfg)
}

// NewWithTLS is New with a TLS configuration of the caller's (a client certificate, another CA pool; nil
// trusts the system's roots). Its minimum version is raised to TLS 1.3, the only version Keyward speaks.
func NewWithTLS(serverURL, token string, cfg *tls.Config) (*Client, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	cfg.MinVersion = tls.VersionTLS13
	tr := &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 5 * time.Minute, IdleConnTimeout: 90 * time.Second}
	return NewWithTransport(serverURL, token, tr)
}

// NewWithTransport is New with an HTTP transport of the caller's, which then owns TLS: use it to trace or
// check requests, and configure TLS as TLSConfig does.
func NewWithTransport(serverURL, token string, rt http.RoundTripper) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", serverURL, err)
	}
	if u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("server URL %q: use https://HOST[:PORT], with no path, query or user", serverURL)
	}
	u.Path = ""
	if strings.ContainsAny(token, "\r\n") || strings.TrimSpace(token) == "" {
		return nil, errors.New("operator token is empty or spans lines")
	}
	return &Client{base: u, token: strings.TrimSpace(token), hc: &http.Client{Transport: rt}}, nil
}

// Error is a refusal from the server: the HTTP status, the kind of error it stands for, the server's message
// and the request field it is about (the API's field name, e.g. "attested_by"), if any.
type Error struct {
	StatusCode int
	Kind       Kind
	Message    string
	Field      string
	// RetryAfter is the server's Retry-After on a 429 (too many refused requests from this source).
	RetryAfter time.Duration
}

// Kind classifies an Error as the server's error kinds do.
type Kind string

// Error kinds, one per status the server answers.
const (
	KindBadRequest      Kind = "bad-request"       // 400: the request breaks a rule or the API's schema
	KindUnauthorized    Kind = "unauthorized"      // 401: no, unknown, revoked or expired token
	KindForbidden       Kind = "forbidden"         // 403: the token's role may not
	KindNotFound        Kind = "not-found"         // 404
	KindConflict        Kind = "conflict"          // 409: conflicts with existing state
	KindTooManyRequests Kind = "too-many-requests" // 429
	KindUnavailable     Kind = "unavailable"       // 503: a backend of the server is unavailable
	KindInternal        Kind = "internal"          // any other status
)

func kindOf(status int) Kind {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return KindBadRequest
	case http.StatusUnauthorized:
		return KindUnauthorized
	case http.StatusForbidden:
		return KindForbidden
	case http.StatusNotFound:
		return KindNotFound
	case http.StatusConflict:
		return KindConflict
	case http.StatusTooManyRequests:
		return KindTooManyRequests
	case http.StatusServiceUnavailable:
		return KindUnavailable
	}
	return KindInternal
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("server answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return e.Message
}

// Is matches an *Error of the same Kind, so callers can test errors.Is(err, &client.Error{Kind: client.KindNotFound}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && (t.StatusCode == 0 || t.StatusCode == e.StatusCode)
}

// request is one call: method, path (escaped), query, and a body that is JSON (in) or a stream (raw, with its
// content type).
type request struct {
	method, path string
	query        url.Values
	in           any
	raw          io.Reader
	rawType      string
}

func (c *Client) do(ctx context.Context, rq request, out any) error {
	body, err := c.send(ctx, rq)
	if err != nil {
		return err
	}
	defer body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, maxResponse))
		return nil
	}
	if b, ok := out.(*[]byte); ok {
		data, err := io.ReadAll(io.LimitReader(body, maxResponse+1))
		if err != nil {
			return fmt.Errorf("%s %s: reading the response: %w", rq.method, rq.path, err)
		}
		if len(data) > maxResponse {
			return fmt.Errorf("%s %s: response larger than %d bytes", rq.method, rq.path, maxResponse)
		}
		*b = data
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(body, maxResponse))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the response: %w", rq.method, rq.path, err)
	}
	return nil
}

// send makes the request and returns the body of a 2xx response, or the server's refusal as an *Error.
func (c *Client) send(ctx context.Context, rq request) (io.ReadCloser, error) {
	if strings.Contains(rq.path, "//") || strings.HasSuffix(rq.path, "/") {
		return nil, fmt.Errorf("%s %s: a path segment is empty (a serial, id or name is missing)", rq.method, rq.path)
	}
	u := *c.base
	u.RawPath = rq.path
	p, err := url.PathUnescape(rq.path)
	if err != nil {
		return nil, err
	}
	u.Path = p
	if len(rq.query) > 0 {
		u.RawQuery = rq.query.Encode()
	}
	var body io.Reader
	ctype := ""
	switch {
	case rq.raw != nil:
		body, ctype = rq.raw, rq.rawType
	case rq.in != nil:
		b, err := json.Marshal(rq.in)
		if err != nil {
			return nil, err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", rq.method, rq.path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	e := &Error{StatusCode: resp.StatusCode, Kind: kindOf(resp.StatusCode)}
	var msg struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &msg) == nil && msg.Error != "" {
		e.Message, e.Field = msg.Error, msg.Field
	} else {
		e.Message = strings.TrimSpace(string(b))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
		if e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: server answered %d %s", rq.method, rq.path, resp.StatusCode, http.StatusText(resp.StatusCode))
		}
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return nil, e
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }

func devicePath(ref DeviceRef) string {
	return "/api/v1/devices/" + seg(ref.Environment) + "/" + seg(ref.ProductLine) + "/" + seg(ref.Serial)
}

func set(q url.Values, name, v string) {
	if v != "" {
		q.Set(name, v)
	}
}

// Health returns nil when the server and its store answer (GET /healthz).
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, request{method: "GET", path: "/healthz"}, nil)
}

// Live returns nil while the server's process serves (GET /livez).
func (c *Client) Live(ctx context.Context) error {
	return c.do(ctx, request{method: "GET", path: "/livez"}, nil)
}

// Ready returns the server's readiness checks (GET /readyz); a server not ready answers an *Error of kind
// KindUnavailable.
func (c *Client) Ready(ctx context.Context) (*Readiness, error) {
	var out Readiness
	return &out, c.do(ctx, request{method: "GET", path: "/readyz"}, &out)
}

// OpenAPI returns the server's OpenAPI document (JSON).
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	var out []byte
	return out, c.do(ctx, request{method: "GET", path: "/api/v1/openapi.json"}, &out)
}

// Metrics returns the server's metrics in the Prometheus text format (admin, auditor).
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	var out []byte
	return out, c.do(ctx, request{method: "GET", path: "/metrics"}, &out)
}

// CAs lists every CA.
func (c *Client) CAs(ctx context.Context) ([]CA, error) {
	var out []CA
	return out, c.do(ctx, request{method: "GET", path: "/api/v1/cas"}, &out)
}

// Chain returns env's root, or with product the issuing CA's chain to it, as PEM.
func (c *Client) Chain(ctx context.Context, env, product string) ([]byte, error) {
	q := url.Values{}
	set(q, "product", product)
	var out []byte
	return out, c.do(ctx, request{method: "GET", path: "/api/v1/cas/" + seg(env) + "/chain", query: q}, &out)
}

// Issue issues a certificate from a CSR.
func (c *Client) Issue(ctx context.Context, req IssueRequest) (*Certificate, error) {
	var out Certificate
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/certificates", in: req}, &out)
}

// Certificates lists certificates.
func (c *Client) Certificates(ctx context.Context, f CertificateFilter) ([]Certificate, error) {
	q := url.Values{}
	set(q, "profile", f.Profile)
	set(q, "status", f.Status)
	set(q, "issuer", f.Issuer)
	set(q, "subject", f.Subject)
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out []Certificate
	return out, c.do(ctx, request{method: "GET", path: "/api/v1/certificates", query: q}, &out)
}

// Certificate returns a certificate by serial (hex).
func (c *Client) Certificate(ctx context.Context, serial string) (*Certificate, error) {
	var out Certificate
	return &out, c.do(ctx, request{method: "GET", path: "/api/v1/certificates/" + seg(serial)}, &out)
}

func atQuery(at *time.Time) url.Values {
	q := url.Values{}
	if at != nil {
		q.Set("at", at.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// CertificateHistory returns the forensic record of the device the certificate was issued to; with at, also
// what the device held then.
func (c *Client) CertificateHistory(ctx context.Context, serial string, at *time.Time) (*History, error) {
	var out History
	return &out, c.do(ctx, request{method: "GET", path: "/api/v1/certificates/" + seg(serial) + "/history", query: atQuery(at)}, &out)
}

// Revoke revokes a certificate.
func (c *Client) Revoke(ctx context.Context, serial string, req RevokeRequest) (*Revocation, error) {
	var out Revocation
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/certificates/" + seg(serial) + "/revoke", in: req}, &out)
}

// Unhold releases a certificate from certificateHold.
func (c *Client) Unhold(ctx context.Context, serial string) (*Revocation, error) {
	var out Revocation
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/certificates/" + seg(serial) + "/unhold"}, &out)
}

// BulkRevoke revokes every certificate matching req's selectors (with DryRun, only counts them).
func (c *Client) BulkRevoke(ctx context.Context, req BulkRevokeRequest) (*BulkResult, error) {
	var out BulkResult
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/revocations", in: req}, &out)
}

// Keys lists the key glossary.
func (c *Client) Keys(ctx context.Context) ([]Key, error) {
	var out []Key
	return out, c.do(ctx, request{method: "GET", path: "/api/v1/keys"}, &out)
}

// Audit returns up to 1000 audit events after sequence number after.
func (c *Client) Audit(ctx context.Context, after int64) ([]Event, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	var out []Event
	return out, c.do(ctx, request{method: "GET", path: "/api/v1/audit", query: q}, &out)
}

// Tokens lists operator tokens (never the tokens themselves).
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out []Token
	return out, c.do(ctx, request{method: "GET", path: "/api/v1/tokens"}, &out)
}

// CreateToken creates an operator token; the answer holds it, the only time it is shown.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*NewToken, error) {
	var out NewToken
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/tokens", in: req}, &out)
}

// RevokeToken revokes the operator token named name.
func (c *Client) RevokeToken(ctx context.Context, name, reason string) (*Token, error) {
	var out Token
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/tokens/" + seg(name) + "/revoke", in: map[string]string{"reason": reason}}, &out)
}

// Stations lists factory stations.
func (c *Client) Stations(ctx context.Context) ([]Station, error) {
	var out []Station
	return out, c.do(ctx, request{method: "GET", path: "/api/v1/stations"}, &out)
}

// AddStation creates a factory station and returns its credentials.
func (c *Client) AddStation(ctx context.Context, req StationRequest) (*StationCredentials, error) {
	var out StationCredentials
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/stations", in: req}, &out)
}

// SetStationState suspends, resumes or revokes a station: verb is "suspend", "resume" or "revoke".
func (c *Client) SetStationState(ctx context.Context, id, verb string) (*Station, error) {
	switch verb {
	case "suspend", "resume", "revoke":
	default:
		return nil, fmt.Errorf("station action %q: use suspend, resume or revoke", verb)
	}
	var out Station
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/stations/" + seg(id) + "/" + verb}, &out)
}

// Devices lists the device registry.
func (c *Client) Devices(ctx context.Context, f DeviceFilter) ([]Device, error) {
	q := url.Values{}
	set(q, "environment", f.Environment)
	set(q, "product_line", f.ProductLine)
	set(q, "serial", f.Serial)
	set(q, "state", f.State)
	set(q, "station", f.Station)
	set(q, "site", f.Site)
	set(q, "hardware_serial", f.HardwareSerial)
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out []Device
	return out, c.do(ctx, request{method: "GET", path: "/api/v1/devices", query: q}, &out)
}

// DeviceAction applies a registry action (Suspend, Resume, AllowReprovision, ForceRenew) to a device.
func (c *Client) DeviceAction(ctx context.Context, ref DeviceRef, action string) (*Device, error) {
	switch action {
	case Suspend, Resume, AllowReprovision, ForceRenew:
	default:
		return nil, fmt.Errorf("device action %q: use %s, %s, %s or %s", action, Suspend, Resume, AllowReprovision, ForceRenew)
	}
	var out Device
	return &out, c.do(ctx, request{method: "POST", path: devicePath(ref) + "/" + action}, &out)
}

// Decommission retires a device for good; attestedBy names who attests that its keys were destroyed.
func (c *Client) Decommission(ctx context.Context, ref DeviceRef, attestedBy string) (*DecommissionResult, error) {
	var out DecommissionResult
	return &out, c.do(ctx, request{method: "POST", path: devicePath(ref) + "/decommission", in: map[string]string{"attested_by": attestedBy}}, &out)
}

// DeviceHistory returns a device's forensic record; with at, also what it held then; with proofs, the
// inclusion proof of each event in the newest checkpoint.
func (c *Client) DeviceHistory(ctx context.Context, ref DeviceRef, at *time.Time, proofs bool) (*History, error) {
	q := atQuery(at)
	if proofs {
		q.Set("proofs", "true")
	}
	var out History
	return &out, c.do(ctx, request{method: "GET", path: devicePath(ref) + "/history", query: q}, &out)
}

// Releases lists firmware releases, of env and product if not empty.
func (c *Client) Releases(ctx context.Context, env, product string) ([]FirmwareRelease, error) {
	q := url.Values{}
	set(q, "environment", env)
	set(q, "product_line", product)
	var out []FirmwareRelease
	return out, c.do(ctx, request{method: "GET", path: "/api/v1/firmware/releases", query: q}, &out)
}

// CreateRelease records a draft release of image, which is streamed to the server.
func (c *Client) CreateRelease(ctx context.Context, req ReleaseRequest, image io.Reader) (*FirmwareRelease, error) {
	q := url.Values{}
	q.Set("environment", req.Environment)
	q.Set("product_line", req.ProductLine)
	q.Set("version", req.Version)
	set(q, "min_bootloader", req.MinBootloader)
	var out FirmwareRelease
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/firmware/releases", query: q, raw: image, rawType: "application/octet-stream"}, &out)
}

// Release returns a firmware release and its approvals.
func (c *Client) Release(ctx context.Context, id string) (*FirmwareRelease, error) {
	var out FirmwareRelease
	return &out, c.do(ctx, request{method: "GET", path: "/api/v1/firmware/releases/" + seg(id)}, &out)
}

// ApproveRelease approves a release as the release signer whose token the client holds.
func (c *Client) ApproveRelease(ctx context.Context, id string) (*FirmwareRelease, error) {
	var out FirmwareRelease
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/firmware/releases/" + seg(id) + "/approve"}, &out)
}

// SignRelease signs an approved release and returns its manifest (COSE).
func (c *Client) SignRelease(ctx context.Context, id string) ([]byte, error) {
	var out []byte
	return out, c.do(ctx, request{method: "POST", path: "/api/v1/firmware/releases/" + seg(id) + "/sign"}, &out)
}

// ReconcileExport uploads a factory site's export (.kwx), which the server verifies in full and records.
func (c *Client) ReconcileExport(ctx context.Context, o ReconcileOptions, export io.Reader) (*ReconcileResult, error) {
	q := url.Values{}
	set(q, "environment", o.Environment)
	set(q, "site", o.Site)
	if o.Final {
		q.Set("final", "true")
	}
	set(q, "attested_by", o.AttestedBy)
	var out ReconcileResult
	return &out, c.do(ctx, request{method: "POST", path: "/api/v1/factory/exports", query: q, raw: export, rawType: "application/octet-stream"}, &out)
}
