package server

// Client-certificate authentication for factory stations and devices.
//
// The listener requests a client certificate but does not verify it in the handshake (tls.RequestClientCert;
// TLS 1.3 still makes the client prove possession of the key with CertificateVerify, RFC 8446 4.4.3). The
// chain is verified here, per request, against the station, issuing and factory site CAs in the store (a device
// provisioned at a site renews at headquarters with its site-CA certificate), for two reasons:
// an unknown certificate must get an HTTP 401 with a reason (RFC 7030 3.3.2 leaves the failure to the
// server; a failed handshake would give none), and a station CA created after the server started (by
// 'keyward station add') must be accepted without a restart. Operator routes ignore client certificates.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// caReload is the least time between two reloads of the client CA pool on an unknown issuer, so a flood of
// unknown certificates cannot turn into a flood of store reads.
const caReload = time.Second

// clientCAs caches the CAs that issue client certificates: station CAs (stations), issuing CAs and site CAs
// (devices).
type clientCAs struct {
	mu     sync.Mutex
	pool   *x509.CertPool
	byRaw  map[string]*store.CA
	loaded time.Time
}

func (c *clientCAs) get(ctx context.Context, s store.Store, reload bool) (*x509.CertPool, map[string]*store.CA, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pool != nil && (!reload || time.Since(c.loaded) < caReload) {
		return c.pool, c.byRaw, nil
	}
	cas, err := s.ListCAs(ctx)
	if err != nil {
		return nil, nil, err
	}
	pool, byRaw := x509.NewCertPool(), map[string]*store.CA{}
	for _, ca := range cas {
		if (ca.Kind != store.CAKindStation && ca.Kind != store.CAKindIssuing && ca.Kind != store.CAKindSite) || ca.Status != store.CAStatusActive || len(ca.CertDER) == 0 {
			continue
		}
		cert, err := x509.ParseCertificate(ca.CertDER)
		if err != nil {
			return nil, nil, fmt.Errorf("parse CA %s: %w", ca.ID, err)
		}
		pool.AddCert(cert)
		byRaw[string(cert.Raw)] = ca
	}
	c.pool, c.byRaw, c.loaded = pool, byRaw, time.Now()
	return pool, byRaw, nil
}

// errNoClientCert is the 401 reason a client without a certificate reads.
var (
	errNoClientCert = errors.New("no client certificate: present a factory-station certificate (simpleenroll) or the device's identity certificate (simplereenroll) in the TLS handshake (RFC 7030 3.3.2)")
)

// clientCaller authenticates the request's TLS client certificate. Errors of kind KindUnauthorized are for
// the client; others are ours.
func (s *Server) clientCaller(r *http.Request) (ra.Caller, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ra.Caller{}, &ra.Error{Kind: ra.KindUnauthorized, Err: errNoClientCert}
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	ctx := r.Context()
	verify := func(reload bool) ([][]*x509.Certificate, map[string]*store.CA, error) {
		pool, byRaw, err := s.est.cas.get(ctx, s.node.Store, reload)
		if err != nil {
			return nil, nil, &ra.Error{Kind: ra.KindUnavailable, Err: err}
		}
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: s.node.Now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return chains, byRaw, err
	}
	chains, byRaw, err := verify(false)
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		chains, byRaw, err = verify(true)
	}
	if ra.KindOf(err) == ra.KindUnavailable {
		return ra.Caller{}, err
	}
	if err != nil {
		return ra.Caller{}, &ra.Error{Kind: ra.KindUnauthorized, Err: fmt.Errorf("client certificate %q (serial %s) is not a valid certificate of a Keyward factory-station or issuing CA: %v", leaf.Subject.CommonName, ra.SerialString(leaf), err)}
	}
	ca := byRaw[string(chains[0][1].Raw)]
	if ca == nil {
		return ra.Caller{}, &ra.Error{Kind: ra.KindUnauthorized, Err: fmt.Errorf("client certificate %q chains to no station or issuing CA", leaf.Subject.CommonName)}
	}
	switch ca.Kind {
	case store.CAKindStation:
		st, err := s.node.Store.GetStation(ctx, leaf.Subject.CommonName)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (st.CertSerial != ra.SerialString(leaf) || st.Environment != ca.Environment)) {
			return ra.Caller{}, &ra.Error{Kind: ra.KindUnauthorized, Err: fmt.Errorf("client certificate %q (serial %s) belongs to no registered factory station", leaf.Subject.CommonName, ra.SerialString(leaf))}
		} else if err != nil {
			return ra.Caller{}, &ra.Error{Kind: ra.KindUnavailable, Err: err}
		}
		return ra.Caller{Principal: ra.StationPrincipal(st.ID), Station: st, Cert: leaf, Environment: ca.Environment}, nil
	default:
		return ra.Caller{Principal: ra.DevicePrincipal(ca.Environment, ca.ProductLine, leaf.Subject.CommonName), Cert: leaf,
			Environment: ca.Environment, ProductLine: ca.ProductLine}, nil
	}
}

type callerKey struct{}

// callerFrom returns the certificate-authenticated caller of a request that went through wrapCert.
func callerFrom(r *http.Request) ra.Caller {
	c, _ := r.Context().Value(callerKey{}).(ra.Caller)
	return c
}

// wrapCert authenticates a client-certificate route and checks the caller's role; refusals are text/plain
// (RFC 7030 4.2.3 lets the server explain an error in a human-readable body) and audited.
func (s *Server) wrapCert(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, err := s.clientCaller(r)
		if err != nil {
			actor := ra.Principal{ID: "anonymous:" + r.RemoteAddr}
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				actor.ID = "unknown-certificate:" + ra.SerialString(r.TLS.PeerCertificates[0])
			}
			s.estFail(w, r, actor, err)
			return
		}
		if !contains(rt.Roles, caller.Principal.Role) {
			s.estFail(w, r, caller.Principal, &ra.Error{Kind: ra.KindForbidden, Err: fmt.Errorf("%s (role %s) may not %s %s", caller.Principal.ID, caller.Principal.Role, rt.Method, r.URL.Path)})
			return
		}
		rt.Handler(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)), caller.Principal)
	})
}
