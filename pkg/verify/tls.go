package verify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// VerifyConnection checks a TLS peer: its certificates with Verify, then, when the verifier checks a server
// (Usage serverAuth) and the connection names one (tls.Config.ServerName), that the certificate names it: a
// DNS name for a service, or the common name of a device or gateway (an implant is named by its serial). Set it
// as tls.Config.VerifyConnection, with InsecureSkipVerify on a client (crypto/tls's own check knows no roles,
// policies or revocation, and would refuse an implant, which has no DNS name) and ClientAuth
// tls.RequireAnyClientCert on a server; ClientConfig and ServerConfig do both.
func (v *Verifier) VerifyConnection(cs tls.ConnectionState) error {
	res, err := v.Verify(context.Background(), cs.PeerCertificates)
	if err != nil {
		return err
	}
	if v.o.Usage == x509.ExtKeyUsageServerAuth && cs.ServerName != "" {
		leaf := res.Chain[0]
		if len(leaf.DNSNames) > 0 || len(leaf.IPAddresses) > 0 {
			if err := leaf.VerifyHostname(cs.ServerName); err != nil {
				return refuse(ErrName, leaf, err, "the client asked for %q", cs.ServerName)
			}
		} else if leaf.Subject.CommonName != cs.ServerName {
			return refuse(ErrName, leaf, nil, "the client asked for %q", cs.ServerName)
		}
	}
	return nil
}

// VerifyPeerCertificate has the signature of tls.Config.VerifyPeerCertificate: it parses the raw certificates
// and checks them with Verify (without the server name check VerifyConnection adds).
func (v *Verifier) VerifyPeerCertificate(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return refuse(ErrMalformed, nil, err, "peer certificate %d", i)
		}
		certs[i] = c
	}
	_, err := v.Verify(context.Background(), certs)
	return err
}

// ClientConfig returns a TLS 1.3 client configuration that presents cert (if it has one) and accepts the
// server only if v does; serverName, if not empty, is the server to expect (a DNS name, or a device's serial).
// v must check servers (Usage x509.ExtKeyUsageServerAuth).
func (v *Verifier) ClientConfig(cert *tls.Certificate, serverName string) (*tls.Config, error) {
	if v.o.Usage != x509.ExtKeyUsageServerAuth {
		return nil, fmt.Errorf("verify: a client's verifier checks servers: set Usage to x509.ExtKeyUsageServerAuth")
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		// Verification is VerifyConnection's: it does what crypto/tls's does (chain, validity, usage, name)
		// and the role, policy and revocation checks crypto/tls cannot.
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection verifies
		VerifyConnection:   v.VerifyConnection,
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

// ServerConfig returns a TLS 1.3 server configuration that presents cert and requires a client certificate v
// accepts. v must check clients (Usage x509.ExtKeyUsageClientAuth).
func (v *Verifier) ServerConfig(cert tls.Certificate) (*tls.Config, error) {
	if v.o.Usage != x509.ExtKeyUsageClientAuth {
		return nil, fmt.Errorf("verify: a server's verifier checks clients: set Usage to x509.ExtKeyUsageClientAuth")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// RequireAnyClientCert: crypto/tls asks for a certificate and leaves its checking to VerifyConnection.
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: v.VerifyConnection,
	}, nil
}
