package est

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// AttestationHeader carries a secure element's attestation chain with an enrollment: base64 DER certificates,
// leaf first, separated by commas. Keyward requires it for profiles configured with an attestation root.
const AttestationHeader = "Keyward-Attestation"

// maxResponse bounds a response body: a certs-only chain is a few KiB.
const maxResponse = 1 << 20

// Client talks to one EST server and label (RFC 7030 3.2.2).
type Client struct {
	base  string
	label string
	hc    *http.Client
}

// NewClient returns a client for server (an https:// URL: scheme, host and port) and label (Keyward uses the
// product line). tlsConfig holds the trust anchor for the server and the client certificate (a factory
// station's or the device's); TLS 1.3 is required. Connections are kept alive between requests.
func NewClient(server, label string, tlsConfig *tls.Config) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("EST server %q: want an https:// URL with a host (RFC 7030 3.3 requires TLS)", server)
	}
	if label == "" || strings.ContainsAny(label, "/?#") {
		return nil, fmt.Errorf("EST label %q: want a single non-empty path segment", label)
	}
	cfg := tlsConfig.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.MinVersion = tls.VersionTLS13
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second}
	return &Client{base: strings.TrimSuffix(u.String(), "/"), label: label, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}, nil
}

// TLSConfig returns a client TLS configuration that trusts the PEM certificates in trustPEM and, if cert has
// a certificate, presents it.
func TLSConfig(trustPEM []byte, cert *tls.Certificate) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(trustPEM) {
		return nil, errors.New("trust anchors: no PEM certificate found")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil && len(cert.Certificate) > 0 {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

// Close closes idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Error is a refusal by the EST server: its HTTP status and the reason it gave.
type Error struct {
	Op         string
	StatusCode int
	Reason     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("EST %s: %d %s: %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode), e.Reason)
}

func (c *Client) url(op string) string {
	return c.base + "/.well-known/est/" + url.PathEscape(c.label) + "/" + op
}

// CACerts fetches the CA certificates (RFC 7030 4.1): the issuing chain of the label, issuing CA first.
func (c *Client) CACerts(ctx context.Context) ([]*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("cacerts"), nil)
	if err != nil {
		return nil, err
	}
	body, err := c.do(req, "cacerts")
	if err != nil {
		return nil, err
	}
	return ParseCertsOnly(body)
}

// CSRAttrs fetches the CSR attributes the server wants (RFC 7030 4.5): DER of CsrAttrs.
func (c *Client) CSRAttrs(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("csrattrs"), nil)
	if err != nil {
		return nil, err
	}
	body, err := c.do(req, "csrattrs")
	if err != nil {
		return nil, err
	}
	return DecodeBase64(body)
}

// EnrollOptions add to an enrollment.
type EnrollOptions struct {
	// Attestation is the secure element's attestation chain, DER, leaf first.
	Attestation [][]byte
}

// SimpleEnroll requests a first certificate for csrDER (RFC 7030 4.2.1).
func (c *Client) SimpleEnroll(ctx context.Context, csrDER []byte, opts *EnrollOptions) (*x509.Certificate, error) {
	return c.enroll(ctx, "simpleenroll", csrDER, opts)
}

// SimpleReenroll renews the certificate the client authenticates with (RFC 7030 4.2.2); csrDER must name the
// same subject, and may carry a new key.
func (c *Client) SimpleReenroll(ctx context.Context, csrDER []byte, opts *EnrollOptions) (*x509.Certificate, error) {
	return c.enroll(ctx, "simplereenroll", csrDER, opts)
}

func (c *Client) enroll(ctx context.Context, op string, csrDER []byte, opts *EnrollOptions) (*x509.Certificate, error) {
	body := EncodeBase64(csrDER)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(op), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/pkcs10")
	if opts != nil && len(opts.Attestation) > 0 {
		parts := make([]string, len(opts.Attestation))
		for i, der := range opts.Attestation {
			parts[i] = base64.StdEncoding.EncodeToString(der)
		}
		req.Header.Set(AttestationHeader, strings.Join(parts, ","))
	}
	resp, err := c.do(req, op)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertsOnly(resp)
	if err != nil {
		return nil, fmt.Errorf("EST %s response: %w", op, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("EST %s response holds no certificate", op)
	}
	return certs[0], nil
}

func (c *Client) do(req *http.Request, op string) ([]byte, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("EST %s: %w", op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("EST %s: read response: %w", op, err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("EST %s: response larger than %d bytes", op, maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &Error{Op: op, StatusCode: resp.StatusCode, Reason: strings.TrimSpace(string(body))}
	}
	return body, nil
}

// EncodeBase64 returns the base64 encoding of der in lines of 64 characters, as RFC 7030 bodies are usually
// written (decoders must accept any line breaks, RFC 8951 section 3).
func EncodeBase64(der []byte) []byte {
	s := base64.StdEncoding.EncodeToString(der)
	var b bytes.Buffer
	for len(s) > 64 {
		b.WriteString(s[:64])
		b.WriteString("\r\n")
		s = s[64:]
	}
	b.WriteString(s)
	b.WriteString("\r\n")
	return b.Bytes()
}

// DecodeBase64 decodes an RFC 7030 base64 body, ignoring white space and line breaks (RFC 8951 section 3).
func DecodeBase64(body []byte) ([]byte, error) {
	clean := make([]byte, 0, len(body))
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		clean = append(clean, c)
	}
	if len(clean) == 0 {
		return nil, errors.New("body is empty: want base64 of DER")
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(out, clean)
	if err != nil {
		return nil, fmt.Errorf("body is not base64 (RFC 4648): %w", err)
	}
	return out[:n], nil
}

// ParseCertsOnly parses a base64 certs-only CMS SignedData body (RFC 7030 4.1.3, 4.2.3) into certificates.
func ParseCertsOnly(body []byte) ([]*x509.Certificate, error) {
	der, err := DecodeBase64(body)
	if err != nil {
		return nil, err
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS #7 certs-only message: %w", err)
	}
	return p7.Certificates, nil
}

// NewCSR returns the DER of a PKCS #10 request for commonName signed by key (which proves possession).
func NewCSR(key crypto.Signer, commonName string) ([]byte, error) {
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}}, key)
}

// CertPEM returns cert as PEM.
func CertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}
