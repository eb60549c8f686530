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
	"net/http"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// errNoClientCert is the 401 reason a client without a certificate reads.
var (
	errNoClientCert = errors.New("no client certificate: present a factory-station certificate (simpleenroll) or the device's identity certificate (simplereenroll) in the TLS handshake (RFC 7030 3.3.2)")
)

// clientCaller authenticates the request's TLS client certificate. Errors of kind KindUnauthorized are for
// the client; others are ours.
func (s *Server) clientCaller(r *http.Request) (ra.Caller, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ra.Caller{}, ra.Wrap(ra.KindUnauthorized, errNoClientCert)
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	ctx := r.Context()
	verify := func(reload bool) ([][]*x509.Certificate, *ra.ClientCAs, error) {
		cas, err := s.ra.ClientCAs(ctx, reload)
		if err != nil {
			return nil, nil, err
		}
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: cas.Pool, Intermediates: inter, CurrentTime: s.ra.Now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return chains, cas, err
	}
	chains, cas, err := verify(false)
	if unknown := (x509.UnknownAuthorityError{}); errors.As(err, &unknown) {
		chains, cas, err = verify(true)
	}
	if ra.KindOf(err) == ra.KindUnavailable {
		return ra.Caller{}, err
	}
	if err != nil {
		return ra.Caller{}, ra.Errorf(ra.KindUnauthorized, "client certificate %q (serial %s) is not a valid certificate of a Keyward factory-station or issuing CA: %v", leaf.Subject.CommonName, ra.SerialString(leaf), err)
	}
	ca := cas.ByRaw[string(chains[0][1].Raw)]
	if ca == nil {
		return ra.Caller{}, ra.Errorf(ra.KindUnauthorized, "client certificate %q chains to no station or issuing CA", leaf.Subject.CommonName)
	}
	switch ca.Kind {
	case store.CAKindStation:
		return s.ra.StationCaller(ctx, ca, leaf)
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
		if s.limited(w, r, true) {
			return
		}
		caller, err := s.clientCaller(r)
		if err != nil {
			if ra.KindOf(err) != ra.KindUnauthorized {
				s.estFail(w, r, ra.Principal{ID: "anonymous:" + r.RemoteAddr}, err)
				return
			}
			// Counted and logged, not audited one by one (ra/refused.go).
			reason := ra.RefusalNoClientCert
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				reason = ra.RefusalUnknownClientCert
			}
			s.refuseClientCert(r, reason, ra.Principal{}, err)
			w.Header().Set("WWW-Authenticate", `TLS-client-certificate realm="keyward-est"`)
			writeText(w, http.StatusUnauthorized, err.Error())
			return
		}
		notePrincipal(r, caller.Principal)
		if !contains(rt.Roles, caller.Principal.Role) {
			err := ra.Errorf(ra.KindForbidden, "%s (role %s) may not %s %s", caller.Principal.ID, caller.Principal.Role, rt.Method, r.URL.Path)
			s.refuseClientCert(r, ra.AuthForbiddenRole, caller.Principal, err)
			writeText(w, http.StatusForbidden, err.Error())
			return
		}
		rt.Handler(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)), caller.Principal)
	})
}
