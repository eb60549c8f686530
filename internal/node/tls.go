package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// serverRenewBefore is how long before its NotAfter the server's TLS certificate is re-issued at start.
const serverRenewBefore = 30 * 24 * time.Hour

// ServerTLS returns the server's TLS certificate for the given host names and addresses. The RA issues it
// under the data directory's service CA (created on first use) when there is none, it is due for renewal or its
// names changed; this writes DATA/tls/ca.pem (the trust anchor for API clients), DATA/tls/server.pem and the
// key's URI beside it. The private key never leaves its keystore: the certificate's signer is the custodian's.
func (n *Node) ServerTLS(ctx context.Context, hosts []string) (*tls.Certificate, []byte, error) {
	dir := filepath.Join(n.Dir, TLSDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	caRow, err := n.RA.ServiceCA(ctx)
	if err != nil {
		return nil, nil, err
	}
	caCert, err := x509.ParseCertificate(caRow.CertDER)
	if err != nil {
		return nil, nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caRow.CertDER})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o644); err != nil {
		return nil, nil, err
	}
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key-uri")
	if der, uri, ok := currentServerCert(certFile, keyFile, caCert, hosts, n.Now()); ok {
		signer, err := n.CA.TLSSigner(ctx, uri)
		if err == nil {
			return &tls.Certificate{Certificate: [][]byte{der, caRow.CertDER}, PrivateKey: signer}, caPEM, nil
		}
		n.Logger.Warn("server TLS key unusable; issuing a new one", "key", uri, "err", err)
	}
	sc, err := n.RA.IssueServerTLS(ctx, hosts)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sc.CertDER}), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(keyFile, []byte(sc.KeyURI+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	signer, err := n.CA.TLSSigner(ctx, sc.KeyURI)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{sc.CertDER, caRow.CertDER}, PrivateKey: signer}, caPEM, nil
}

// currentServerCert returns the certificate and key URI in the data directory's TLS files if the certificate is
// the service CA's, not due for renewal and for exactly hosts.
func currentServerCert(certFile, keyFile string, ca *x509.Certificate, hosts []string, now time.Time) ([]byte, string, bool) {
	p, err := os.ReadFile(certFile)
	if err != nil {
		return nil, "", false
	}
	uri, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, "", false
	}
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, "", false
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil || c.CheckSignatureFrom(ca) != nil || now.Add(serverRenewBefore).After(c.NotAfter) {
		return nil, "", false
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	want := slices.Clone(hosts)
	for i, h := range want {
		if ip := net.ParseIP(h); ip != nil {
			want[i] = ip.String()
		}
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		return nil, "", false
	}
	return b.Bytes, string(bytes.TrimSpace(uri)), true
}
