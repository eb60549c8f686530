package server

import (
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

func (s *Server) health(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	if _, err := s.read.ListCAs(r.Context()); err != nil {
		s.log.ErrorContext(r.Context(), "health: store", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "store": "error"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) listCAs(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	cas, err := s.read.ListCAs(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]api.CA, 0, len(cas))
	for _, c := range cas {
		out = append(out, api.NewCA(c, true))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) chain(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	chain, err := s.ra.Chain(r.Context(), r.PathValue("env"), r.URL.Query().Get("product"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	for _, der := range chain {
		_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
}

// IssueRequest is the body of POST /api/v1/certificates.
type IssueRequest struct {
	Profile     string `json:"profile" required:"true"`
	Environment string `json:"environment,omitempty"`
	ProductLine string `json:"product_line,omitempty"`
	// CSR is PEM, or base64 of DER.
	CSR string `json:"csr" required:"true"`
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	var req IssueRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	csr := []byte(req.CSR)
	if !strings.Contains(req.CSR, "-----BEGIN") {
		der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(req.CSR))
		if err != nil {
			s.fail(w, r, ra.FieldErrorf(ra.KindBadRequest, "csr", "csr is neither PEM nor base64 DER"))
			return
		}
		csr = der
	}
	cert, err := s.ra.Issue(r.Context(), p, ra.IssueRequest{Profile: req.Profile, Environment: req.Environment, ProductLine: req.ProductLine, CSR: csr})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/certificates/"+cert.Serial)
	writeJSON(w, http.StatusCreated, api.NewCertificate(cert, true))
}

func (s *Server) getCert(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	c, err := s.ra.GetCertificate(r.Context(), r.PathValue("serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.NewCertificate(c, true))
}

func (s *Server) listCerts(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	q := r.URL.Query()
	f := store.CertFilter{Profile: q.Get("profile"), Status: q.Get("status"), IssuerID: q.Get("issuer"), Subject: q.Get("subject"), Limit: 100}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			s.fail(w, r, ra.FieldErrorf(ra.KindBadRequest, "limit", "limit must be a number from 1 to 10000"))
			return
		}
		f.Limit = n
	}
	certs, err := s.read.ListCertificates(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]api.Certificate, 0, len(certs))
	for _, c := range certs {
		out = append(out, api.NewCertificate(c, true))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	keys, err := s.read.ListKeys(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]api.Key, 0, len(keys))
	for _, k := range keys {
		out = append(out, api.NewKey(k))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	const limit = 1000
	out := []api.Event{}
	errStop := errors.New("stop")
	err := s.read.WalkAudit(r.Context(), after, func(e *audit.Event) error {
		if len(out) == limit {
			return errStop
		}
		out = append(out, api.NewEvent(e))
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	toks, err := s.ra.ListTokens(r.Context(), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := s.ra.Now()
	out := make([]api.Token, 0, len(toks))
	for _, t := range toks {
		out = append(out, api.NewToken(t, ra.TokenState(t, now)))
	}
	writeJSON(w, http.StatusOK, out)
}

// RevokeTokenRequest is the body of POST /api/v1/tokens/{name}/revoke.
type RevokeTokenRequest struct {
	Reason string `json:"reason" required:"true" hint:"why the token is revoked"`
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, p ra.Principal) {
	var req RevokeTokenRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	t, err := s.ra.RevokeToken(r.Context(), p, r.PathValue("name"), req.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.NewToken(t, ra.TokenState(t, s.ra.Now())))
}
