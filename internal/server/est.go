package server

// EST (RFC 7030, with the RFC 8951 clarifications) under /.well-known/est/<label>/, where the label is the
// product line ("demo-implant"), or "<product>.<environment>" where several environments declare it:
//
//	GET  cacerts         public (RFC 7030 4.1.1: SHOULD NOT require authentication); certs-only PKCS #7 of
//	                     the label's issuing CA and root
//	GET  csrattrs        stations and devices; what the label's profile requires (RFC 7030 4.5)
//	POST simpleenroll    factory stations (mTLS); a device's first identity (RFC 7030 4.2.1)
//	POST simplereenroll  devices (mTLS with the current identity); renewal (RFC 7030 4.2.2)
//
// Requests carry base64 DER with or without line breaks; a Content-Transfer-Encoding header is ignored
// (RFC 8951 3). Responses are base64 DER, application/pkcs7-mime; smime-type=certs-only for enrollments.
// Errors are text/plain: 400 malformed or against a rule, 401 no or unknown client certificate, 403 an
// authenticated caller without the right, 404 unknown label, 409 conflict with the registry or a key already
// certified, 413 body over 64 KiB (refused from Content-Length before the body is read, or once 64 KiB are
// read), 415 a content type other than application/pkcs10.

import (
	"bytes"
	"context"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/smallstep/pkcs7"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/est"
)

// maxESTBody bounds an EST request body: a CSR is at most 64 KiB of DER (profile.MaxCSRSize is smaller), and
// base64 with line breaks adds about 37 %; anything larger is refused.
const maxESTBody = 96 << 10

// maxAttestationCerts bounds the attestation chain a request may carry.
const maxAttestationCerts = 4

func (s *Server) estRoutes() []Route {
	est := "/.well-known/est/{label}/"
	both := []string{ra.RoleFactoryStation, ra.RoleDevice}
	return []Route{
		{Method: "GET", Pattern: est + "cacerts", Public: true, Handler: s.estCACerts},
		{Method: "GET", Pattern: est + "csrattrs", ClientCert: true, Roles: both, Handler: s.estCSRAttrs},
		// Devices may reach simpleenroll so that the RA can refuse them with the precise reason (another serial,
		// or "renew with simplereenroll"), audited.
		{Method: "POST", Pattern: est + "simpleenroll", ClientCert: true, Roles: both, Handler: s.estEnroll},
		{Method: "POST", Pattern: est + "simplereenroll", ClientCert: true, Roles: both, Handler: s.estReenroll},
	}
}

// writeText writes an EST error: a text/plain reason.
func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// estAction names the audit action of an EST request path.
func estAction(path string) string {
	switch {
	case strings.HasSuffix(path, "/simplereenroll"):
		return audit.ActionESTReenroll
	case strings.HasSuffix(path, "/simpleenroll"):
		return audit.ActionESTEnroll
	case strings.HasSuffix(path, "/csrattrs"):
		return audit.ActionESTCSRAttrs
	}
	return audit.ActionESTCACerts
}

// estFail answers an EST request with err. Refusals (4xx) the RA has not audited yet are audited here.
func (s *Server) estFail(w http.ResponseWriter, r *http.Request, p ra.Principal, err error) {
	noteReason(r, err)
	var he *httpError
	status := api.StatusOf(err)
	if errors.As(err, &he) {
		status = he.status
	}
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "EST request failed", "path", r.URL.Path, "actor", p.ID, "err", err)
		writeText(w, status, "internal error; see the server log")
		return
	}
	if p.ID == anonymous {
		// A public route's caller is nobody in particular: counted and logged, not audited one by one.
		s.ra.CountRefusal(sourceOf(r), ra.RefusalPublic)
		s.log.WarnContext(r.Context(), "request refused", "reason", ra.RefusalPublic, "remote", sourceOf(r), "method", r.Method,
			"path", boundPath(r), "err", audit.Bound(err.Error(), 2*audit.MaxDetail))
	} else if !errors.Is(err, errAudited) {
		s.ra.Refuse(r.Context(), p, estAction(r.URL.Path), map[string]string{"path": r.URL.Path, "remote": r.RemoteAddr, "status": fmt.Sprint(status)}, err)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `TLS-client-certificate realm="keyward-est"`)
	}
	writeText(w, status, strings.TrimPrefix(err.Error(), errAudited.Error()+": "))
}

// errAudited marks an error the RA has audited already.
var errAudited = errors.New("audited")

// httpError is a refusal with an HTTP status that no RA kind maps to (413, 415).
type httpError struct {
	status int
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func (s *Server) estLabel(r *http.Request) (string, string, error) {
	return s.ra.ResolveLabel(r.PathValue("label"))
}

func (s *Server) estCACerts(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	env, product, err := s.estLabel(r)
	if err != nil {
		s.estFail(w, r, p, err)
		return
	}
	chain, err := s.ra.Chain(r.Context(), env, product)
	if err != nil {
		s.estFail(w, r, p, err)
		return
	}
	body, err := certsOnly(chain...)
	if err != nil {
		s.estFail(w, r, p, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkcs7-mime")
	_, _ = w.Write(body)
}

// certsOnly returns base64 of a degenerate ("certs-only") CMS SignedData holding ders (RFC 7030 4.1.3).
func certsOnly(ders ...[]byte) ([]byte, error) {
	p7, err := pkcs7.DegenerateCertificate(bytes.Join(ders, nil))
	if err != nil {
		return nil, fmt.Errorf("encode certs-only PKCS #7: %w", err)
	}
	return est.EncodeBase64(p7), nil
}

// OIDs of the CSR attributes Keyward asks for (RFC 7030 4.5.2; RFC 5480, RFC 8410, RFC 8017).
var (
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidP256          = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384          = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidEd25519       = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidECDSAWithSHA2 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

type csrAttribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

// csrAttrs encodes CsrAttrs (RFC 7030 4.5.2) for the key algorithms a profile allows: for EC keys an
// Attribute id-ecPublicKey { curve }, as RFC 7030's own example does; Ed25519 as its OID; RSA as an Attribute
// rsaEncryption { modulus bits } (RFC 8951 4 keeps this form); and ecdsa-with-SHA256 when EC keys are allowed.
func csrAttrs(algs []keystore.Algorithm) ([]byte, error) {
	var items []asn1.RawValue
	add := func(v any) error {
		der, err := asn1.Marshal(v)
		if err != nil {
			return err
		}
		items = append(items, asn1.RawValue{FullBytes: der})
		return nil
	}
	ec := false
	for _, a := range algs {
		var err error
		switch a {
		case keystore.ECDSAP256, keystore.ECDSAP384:
			curve := oidP256
			if a == keystore.ECDSAP384 {
				curve = oidP384
			}
			c, _ := asn1.Marshal(curve)
			err = add(csrAttribute{Type: oidECPublicKey, Values: []asn1.RawValue{{FullBytes: c}}})
			ec = true
		case keystore.Ed25519:
			err = add(oidEd25519)
		case keystore.RSA3072, keystore.RSA4096:
			bits := 3072
			if a == keystore.RSA4096 {
				bits = 4096
			}
			b, _ := asn1.Marshal(bits)
			err = add(csrAttribute{Type: oidRSAEncryption, Values: []asn1.RawValue{{FullBytes: b}}})
		}
		if err != nil {
			return nil, err
		}
	}
	if ec {
		if err := add(oidECDSAWithSHA2); err != nil {
			return nil, err
		}
	}
	return asn1.Marshal(items)
}

func (s *Server) estCSRAttrs(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	env, product, err := s.estLabel(r)
	if err != nil {
		s.estFail(w, r, p, err)
		return
	}
	prof, err := s.ra.ESTProfile(env, product)
	if err != nil {
		s.estFail(w, r, p, err)
		return
	}
	der, err := csrAttrs(prof.KeyAlgorithms)
	if err != nil {
		s.estFail(w, r, p, err)
		return
	}
	w.Header().Set("Content-Type", "application/csrattrs")
	_, _ = w.Write(est.EncodeBase64(der))
}

// decodePKCS10 checks an EST enrollment request's content type and decodes its base64 body to DER
// (RFC 7030 4.2.1: application/pkcs10; RFC 8951 3: base64 with any line breaks, Content-Transfer-Encoding
// ignored). It does not parse the CSR: the RA does, with every profile rule.
func decodePKCS10(contentType string, body []byte) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/pkcs10" {
		return nil, &httpError{http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: an EST enrollment is application/pkcs10, a base64-encoded DER CSR (RFC 7030 4.2.1)", contentType)}
	}
	der, err := est.DecodeBase64(body)
	if err != nil {
		return nil, ra.Errorf(ra.KindBadRequest, "request %w; send the CSR as base64 of its DER encoding (RFC 8951 3)", err)
	}
	return der, nil
}

// decodeAttestation parses the attestation header: base64 DER certificates, leaf first, comma-separated.
func decodeAttestation(h string) ([][]byte, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return nil, nil
	}
	parts := strings.Split(h, ",")
	if len(parts) > maxAttestationCerts {
		return nil, ra.Errorf(ra.KindBadRequest, "%s header carries %d certificates; at most %d (leaf and intermediates)", ra.AttestationHeader, len(parts), maxAttestationCerts)
	}
	out := make([][]byte, 0, len(parts))
	for i, p := range parts {
		der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(p))
		if err != nil || len(der) == 0 {
			return nil, ra.Errorf(ra.KindBadRequest, "%s header: certificate %d is not base64 DER", ra.AttestationHeader, i+1)
		}
		out = append(out, der)
	}
	return out, nil
}

// readESTRequest reads and decodes an enrollment request, refusing an oversized body before reading it.
func (s *Server) readESTRequest(w http.ResponseWriter, r *http.Request) (ra.EnrollRequest, error) {
	var req ra.EnrollRequest
	env, product, err := s.estLabel(r)
	if err != nil {
		return req, err
	}
	req.Environment, req.ProductLine = env, product
	tooLarge := &httpError{http.StatusRequestEntityTooLarge, fmt.Errorf("request body is over %d bytes; a base64 CSR is far smaller", maxESTBody)}
	if r.ContentLength > maxESTBody {
		return req, tooLarge
	}
	mt := r.Header.Get("Content-Type")
	if _, err := decodePKCS10(mt, []byte("MA==")); err != nil {
		return req, err // wrong content type: refuse before reading the body
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxESTBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, tooLarge
		}
		return req, ra.Errorf(ra.KindBadRequest, "read request body: %w", err)
	}
	if req.CSR, err = decodePKCS10(mt, body); err != nil {
		return req, err
	}
	req.Attestation, err = decodeAttestation(r.Header.Get(ra.AttestationHeader))
	return req, err
}

func (s *Server) estEnroll(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	s.estIssue(w, r, p, s.ra.Enroll)
}

func (s *Server) estReenroll(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	s.estIssue(w, r, p, s.ra.Reenroll)
}

func (s *Server) estIssue(w http.ResponseWriter, r *http.Request, p ra.Principal, do func(ctx context.Context, c ra.Caller, req ra.EnrollRequest) (*ra.EnrollResult, error)) {
	req, err := s.readESTRequest(w, r)
	if err != nil {
		s.estFail(w, r, p, err)
		return
	}
	res, err := do(r.Context(), callerFrom(r), req)
	if err != nil {
		// The RA audits its refusals itself.
		s.estFail(w, r, p, fmt.Errorf("%w: %w", errAudited, err))
		return
	}
	body, err := certsOnly(res.Cert.DER)
	if err != nil {
		s.estFail(w, r, p, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkcs7-mime; smime-type=certs-only")
	_, _ = w.Write(body)
}
