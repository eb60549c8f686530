package server

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

func (s *Server) health(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	if _, err := s.node.Store.ListCAs(r.Context()); err != nil {
		s.log.ErrorContext(r.Context(), "health: store", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "store": "error"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// CAView is the API form of a CA.
type CAView struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	Environment string    `json:"environment"`
	ProductLine string    `json:"product_line,omitempty"`
	Parent      string    `json:"parent,omitempty"`
	KeyURI      string    `json:"key_uri"`
	Subject     string    `json:"subject"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Status      string    `json:"status"`
	PEM         string    `json:"pem"`
}

func (s *Server) listCAs(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	cas, err := s.node.Store.ListCAs(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]CAView, 0, len(cas))
	for _, c := range cas {
		key := c.KeyURI
		if key == "" {
			key = "offline"
		}
		out = append(out, CAView{c.ID, c.Kind, c.Environment, c.ProductLine, c.ParentID, key, c.Subject, c.NotBefore, c.NotAfter, c.Status,
			string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.CertDER}))})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) chain(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	chain, err := s.node.RA.Chain(r.Context(), r.PathValue("env"), r.URL.Query().Get("product"))
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
	Profile     string `json:"profile"`
	Environment string `json:"environment,omitempty"`
	ProductLine string `json:"product_line,omitempty"`
	// CSR is PEM, or base64 of DER.
	CSR string `json:"csr"`
}

// CertView is the API form of a certificate.
type CertView struct {
	Serial         string     `json:"serial"`
	Issuer         string     `json:"issuer"`
	Profile        string     `json:"profile"`
	ProfileVersion int        `json:"profile_version"`
	Subject        string     `json:"subject"`
	NotBefore      time.Time  `json:"not_before"`
	NotAfter       time.Time  `json:"not_after"`
	Status         string     `json:"status"`
	SPKISHA256     string     `json:"spki_sha256"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	PEM            string     `json:"pem"`
}

func certView(c *store.Certificate) CertView {
	return CertView{c.Serial, c.IssuerID, c.Profile, c.ProfileVersion, c.Subject, c.NotBefore, c.NotAfter, c.Status, hex.EncodeToString(c.SPKISHA256), c.RevokedAt,
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))}
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
			s.fail(w, r, &ra.Error{Kind: ra.KindBadRequest, Err: errors.New("csr is neither PEM nor base64 DER")})
			return
		}
		csr = der
	}
	cert, err := s.node.RA.Issue(r.Context(), p, ra.IssueRequest{Profile: req.Profile, Environment: req.Environment, ProductLine: req.ProductLine, CSR: csr})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/certificates/"+cert.Serial)
	writeJSON(w, http.StatusCreated, certView(cert))
}

func (s *Server) getCert(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	c, err := s.node.GetCertificate(r.Context(), r.PathValue("serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, certView(c))
}

func (s *Server) listCerts(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	q := r.URL.Query()
	f := store.CertFilter{Profile: q.Get("profile"), Status: q.Get("status"), IssuerID: q.Get("issuer"), Subject: q.Get("subject"), Limit: 100}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			s.fail(w, r, &ra.Error{Kind: ra.KindBadRequest, Err: errors.New("limit must be a number from 1 to 10000")})
			return
		}
		f.Limit = n
	}
	certs, err := s.node.Store.ListCertificates(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]CertView, 0, len(certs))
	for _, c := range certs {
		out = append(out, certView(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	keys, err := s.node.Store.ListKeys(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type keyView struct {
		URI            string     `json:"uri"`
		Purpose        string     `json:"purpose"`
		Algorithm      string     `json:"algorithm"`
		Location       string     `json:"location"`
		State          string     `json:"state"`
		Owner          string     `json:"owner"`
		CreatedAt      time.Time  `json:"created_at"`
		StateChangedAt time.Time  `json:"state_changed_at"`
		DestroyedAt    *time.Time `json:"destroyed_at,omitempty"`
	}
	out := make([]keyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyView{k.URI, k.Purpose, k.Algorithm, k.Location, k.State, k.Owner, k.CreatedAt, k.StateChangedAt, k.DestroyedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	const limit = 1000
	var out []*audit.Event
	errStop := errors.New("stop")
	err := s.node.Store.WalkAudit(r.Context(), after, func(e *audit.Event) error {
		if len(out) == limit {
			return errStop
		}
		out = append(out, e)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		s.fail(w, r, err)
		return
	}
	if out == nil {
		out = []*audit.Event{}
	}
	writeJSON(w, http.StatusOK, out)
}
