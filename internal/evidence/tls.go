package evidence

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// TLSStatement is what the server's TLS listener negotiates, found by handshakes against its own tls.Config
// in memory, not written by hand: a reviewer reads what the code does.
type TLSStatement struct {
	// Versions lists each protocol version a client may offer and whether the listener accepts it.
	Versions []Probe `json:"versions"`
	// Groups lists each key exchange group crypto/tls knows and whether the listener agrees to it in TLS 1.3.
	Groups []Probe `json:"groups"`
	// CipherSuites are the suites of the accepted versions. crypto/tls does not let TLS 1.3 suites be
	// configured (RFC 8446 suites are all AEADs), so for TLS 1.3 they are the library's own list.
	CipherSuites []Suite `json:"cipher_suites"`
	// ConfiguredCipherSuites is the tls.Config's CipherSuites field: empty means the library's defaults.
	ConfiguredCipherSuites []string `json:"configured_cipher_suites"`
	// ConfiguredGroups is the tls.Config's CurvePreferences field: empty means the library's defaults.
	ConfiguredGroups []string `json:"configured_groups"`
	// ClientAuth is how the listener asks for client certificates (verified per route: EST and stations).
	ClientAuth string `json:"client_auth"`
	// Library is the TLS implementation: Go's crypto/tls, of the toolchain that built Keyward.
	Library string `json:"library"`
}

// Probe is one offer and the listener's answer.
type Probe struct {
	Name     string `json:"name"`
	ID       uint16 `json:"id"`
	Accepted bool   `json:"accepted"`
}

// Suite is one cipher suite by its IANA name and code point.
type Suite struct {
	Name    string `json:"name"`
	ID      uint16 `json:"id"`
	Version string `json:"version"`
}

// probeVersions are the versions a client may offer, oldest first.
var probeVersions = []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13}

// probeGroups are the key exchange groups crypto/tls implements (RFC 8446 4.2.7 NamedGroup, and the hybrid
// post-quantum ones of draft-ietf-tls-ecdhe-mlkem).
var probeGroups = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}

// errProbed ends a probe handshake once the server has chosen its parameters: no certificate is needed.
var errProbed = errors.New("probed")

// ProbeTLS finds what the listener configuration server accepts, by one handshake per offer over the loopback interface. The
// server's side runs with server's own settings; its certificate callback records that the handshake got past
// version and group negotiation (crypto/tls picks the certificate after both) and stops it there, so no key
// or certificate is needed and nothing leaves the process.
func ProbeTLS(ctx context.Context, server *tls.Config) (*TLSStatement, error) {
	if server == nil {
		return nil, errors.New("evidence: no TLS configuration to probe")
	}
	st := &TLSStatement{Library: "Go crypto/tls", ClientAuth: server.ClientAuth.String(), ConfiguredCipherSuites: []string{}, ConfiguredGroups: []string{}}
	for _, id := range server.CipherSuites {
		st.ConfiguredCipherSuites = append(st.ConfiguredCipherSuites, tls.CipherSuiteName(id))
	}
	for _, g := range server.CurvePreferences {
		st.ConfiguredGroups = append(st.ConfiguredGroups, g.String())
	}
	for _, v := range probeVersions {
		ok, err := probe(ctx, server, &tls.Config{MinVersion: v, MaxVersion: v})
		if err != nil {
			return nil, err
		}
		st.Versions = append(st.Versions, Probe{Name: tls.VersionName(v), ID: v, Accepted: ok})
	}
	tls13 := slices.ContainsFunc(st.Versions, func(p Probe) bool { return p.ID == tls.VersionTLS13 && p.Accepted })
	for _, g := range probeGroups {
		ok := false
		if tls13 {
			var err error
			if ok, err = probe(ctx, server, &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{g}}); err != nil {
				return nil, err
			}
		}
		st.Groups = append(st.Groups, Probe{Name: g.String(), ID: uint16(g), Accepted: ok})
	}
	for _, v := range st.Versions {
		if !v.Accepted {
			continue
		}
		for _, s := range tls.CipherSuites() {
			if !slices.Contains(s.SupportedVersions, v.ID) {
				continue
			}
			// Below TLS 1.3 the listener offers its configured suites, or the library's defaults.
			if v.ID != tls.VersionTLS13 && len(server.CipherSuites) > 0 && !slices.Contains(server.CipherSuites, s.ID) {
				continue
			}
			st.CipherSuites = append(st.CipherSuites, Suite{Name: s.Name, ID: s.ID, Version: v.Name})
		}
	}
	return st, nil
}

// probe runs one handshake of a client with settings client against server over an in-memory pipe and reports
// whether the server got as far as choosing its certificate.
func probe(ctx context.Context, server, client *tls.Config) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sc := server.Clone()
	reached := false
	sc.Certificates, sc.GetConfigForClient = nil, nil
	sc.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		reached = true
		return nil, errProbed
	}
	cc := client.Clone()
	cc.ServerName = "probe.invalid"
	cc.InsecureSkipVerify = true //nolint:gosec // the handshake stops before any certificate is sent
	// A loopback connection, not net.Pipe: a pipe's writes wait for the reader, and after a HelloRetryRequest
	// both sides write at once (the server its compatibility ChangeCipherSpec, the client its second hello).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, fmt.Errorf("evidence: TLS probe: %w", err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		a, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer a.Close()
		_ = a.SetDeadline(time.Now().Add(5 * time.Second))
		done <- tls.Server(a, sc).HandshakeContext(ctx)
	}()
	var d net.Dialer
	b, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return false, fmt.Errorf("evidence: TLS probe: %w", err)
	}
	cerr := tls.Client(b, cc).HandshakeContext(ctx)
	_ = b.Close()
	serr := <-done
	if ctx.Err() != nil {
		return false, fmt.Errorf("evidence: TLS probe timed out: %w", ctx.Err())
	}
	if cerr == nil || serr == nil {
		return false, errors.New("evidence: a TLS probe handshake completed, which it must not: the certificate callback was bypassed")
	}
	return reached, nil
}
