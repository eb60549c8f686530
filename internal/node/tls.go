package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/ra"
)

// RenewAt is when a server certificate is re-issued: at two thirds of its lifetime, which leaves a third (30
// days of the default 90) to retry a renewal that fails.
func RenewAt(c *x509.Certificate) time.Time {
	return c.NotAfter.Add(-c.NotAfter.Sub(c.NotBefore) / 3)
}

// ServerTLS returns the server's TLS certificate for the given host names and addresses. The RA issues it
// under the data directory's service CA (created on first use) when there is none, it is due for renewal or its
// names changed; this writes DATA/tls/ca.pem (the trust anchor for API clients), DATA/tls/server.pem and the
// key's URI beside it. The private key never leaves its keystore: the certificate's signer is the custodian's.
func (n *Node) ServerTLS(ctx context.Context, hosts []string) (*tls.Certificate, []byte, error) {
	return n.ServerTLSValid(ctx, hosts, 0)
}

// ServerTLSValid is ServerTLS with a new certificate valid for validity (the RA's default when 0).
func (n *Node) ServerTLSValid(ctx context.Context, hosts []string, validity time.Duration) (*tls.Certificate, []byte, error) {
	caDER, caPEM, err := n.writeServiceCA(ctx)
	if err != nil {
		return nil, nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(n.Dir, TLSDir)
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key-uri")
	if leaf, uri, ok := currentServerCert(certFile, keyFile, caCert, hosts, n.Now()); ok {
		signer, err := n.CA.TLSSigner(ctx, uri)
		if err == nil {
			return &tls.Certificate{Certificate: [][]byte{leaf.Raw, caDER}, PrivateKey: signer, Leaf: leaf}, caPEM, nil
		}
		n.Logger.Warn("server TLS key unusable; issuing a new one", "key", uri, "err", err)
	}
	c, _, err := n.issueServerTLS(ctx, hosts, validity)
	return c, caPEM, err
}

// writeServiceCA makes sure of the service CA and writes its certificate to DATA/tls/ca.pem.
func (n *Node) writeServiceCA(ctx context.Context) ([]byte, []byte, error) {
	dir := filepath.Join(n.Dir, TLSDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	caRow, err := n.RA.ServiceCA(ctx)
	if err != nil {
		return nil, nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caRow.CertDER})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o644); err != nil {
		return nil, nil, err
	}
	return caRow.CertDER, caPEM, nil
}

// issueServerTLS has the RA issue a new server certificate and key, writes them to DATA/tls, and returns the
// certificate and its key's URI.
func (n *Node) issueServerTLS(ctx context.Context, hosts []string, validity time.Duration) (*tls.Certificate, string, error) {
	dir := filepath.Join(n.Dir, TLSDir)
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key-uri")
	sc, err := n.RA.IssueServerTLS(ctx, hosts, validity)
	if err != nil {
		return nil, "", err
	}
	leaf, err := x509.ParseCertificate(sc.CertDER)
	if err != nil {
		return nil, "", err
	}
	signer, err := n.CA.TLSSigner(ctx, sc.KeyURI)
	if err != nil {
		return nil, "", err
	}
	// The key's URI first: a crash between the two writes leaves a certificate that does not match its key,
	// which the next start replaces, never a certificate whose key is lost.
	if err := writeFileAtomic(keyFile, []byte(sc.KeyURI+"\n"), 0o600); err != nil {
		return nil, "", err
	}
	if err := writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sc.CertDER}), 0o644); err != nil {
		return nil, "", err
	}
	return &tls.Certificate{Certificate: [][]byte{sc.CertDER, sc.CACertDER}, PrivateKey: signer, Leaf: leaf}, sc.KeyURI, nil
}

// currentServerCert returns the certificate and key URI in the data directory's TLS files if the certificate is
// the service CA's, not due for renewal and for exactly hosts.
func currentServerCert(certFile, keyFile string, ca *x509.Certificate, hosts []string, now time.Time) (*x509.Certificate, string, bool) {
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
	if err != nil || c.CheckSignatureFrom(ca) != nil || !now.Before(RenewAt(c)) {
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
	return c, string(bytes.TrimSpace(uri)), true
}

// TLSRenewer holds the server's TLS certificate and renews it while the server runs, at two thirds of its
// lifetime: handshakes take the current one through GetCertificate, so a renewal needs no restart and drops
// no connection.
type TLSRenewer struct {
	n        *Node
	hosts    []string
	validity time.Duration
	cur      atomic.Pointer[tls.Certificate]
	keyURI   string // the current certificate's key
	// Grace is how long a renewed certificate's key outlives it, for handshakes that took the old certificate
	// just before the swap; then it is destroyed through the RA (audited), so renewals leave no live keys
	// behind. Default RetireGrace.
	Grace time.Duration
	// Renewed, if set, is called after each renewal with the new certificate.
	Renewed func(*x509.Certificate)
}

// RetireGrace is how long a renewed server certificate's key is kept before it is destroyed.
const RetireGrace = time.Minute

// renewalPrincipal destroys the keys of renewed server certificates: the server acting on its own keys.
var renewalPrincipal = ra.Principal{ID: "server:tls-renewal", Role: ra.RoleAdmin}

// NewTLSRenewer returns a renewer holding the server certificate for hosts (ServerTLSValid).
func (n *Node) NewTLSRenewer(ctx context.Context, hosts []string, validity time.Duration) (*TLSRenewer, error) {
	c, _, err := n.ServerTLSValid(ctx, hosts, validity)
	if err != nil {
		return nil, err
	}
	uri, err := os.ReadFile(filepath.Join(n.Dir, TLSDir, "server.key-uri"))
	if err != nil {
		return nil, err
	}
	r := &TLSRenewer{n: n, hosts: slices.Clone(hosts), validity: validity, keyURI: string(bytes.TrimSpace(uri)), Grace: RetireGrace}
	r.cur.Store(c)
	return r, nil
}

// Certificate returns the current certificate.
func (r *TLSRenewer) Certificate() *tls.Certificate { return r.cur.Load() }

// GetCertificate is the tls.Config hook: the current certificate.
func (r *TLSRenewer) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// Run renews the certificate when it is due until ctx ends. A failed renewal is logged and retried after a
// tenth of the time left (at least a second, at most ten minutes), while the current certificate serves on. The
// replaced certificate's key is destroyed Grace after the swap (or as Run returns, if sooner).
func (r *TLSRenewer) Run(ctx context.Context) {
	var retire string // a replaced key, destroyed at retireAt
	var retireAt time.Time
	defer func() {
		if retire != "" { // no handshake starts any more; the node is still open until Run returns
			r.retire(context.WithoutCancel(ctx), retire)
		}
	}()
	for {
		leaf := r.cur.Load().Leaf
		due := RenewAt(leaf)
		if retire != "" && retireAt.Before(due) {
			due = retireAt
		}
		if wait := due.Sub(r.n.Now()); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if retire != "" && !r.n.Now().Before(retireAt) {
			r.retire(ctx, retire)
			retire = ""
			continue
		}
		c, uri, err := r.n.issueServerTLS(ctx, r.hosts, r.validity)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			retry := min(max(leaf.NotAfter.Sub(r.n.Now())/10, time.Second), 10*time.Minute)
			r.n.Logger.Error("server TLS certificate renewal failed; the current one serves on", "not_after", leaf.NotAfter, "retry_in", retry, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			continue
		}
		r.cur.Store(c)
		r.n.Logger.Info("server TLS certificate renewed", "serial", fmt.Sprintf("%x", c.Leaf.SerialNumber), "not_after", c.Leaf.NotAfter, "renew_at", RenewAt(c.Leaf))
		if retire != "" { // renewed again before the last key's grace ended
			r.retire(ctx, retire)
		}
		if r.keyURI != "" && r.keyURI != uri {
			retire, retireAt = r.keyURI, r.n.Now().Add(r.Grace)
		}
		r.keyURI = uri
		if r.Renewed != nil {
			r.Renewed(c.Leaf)
		}
	}
}

// retire destroys a replaced server certificate's key through the RA (key glossary and audit trail).
func (r *TLSRenewer) retire(ctx context.Context, uri string) {
	if err := r.n.RA.DestroyKey(ctx, renewalPrincipal, uri, "superseded: the server certificate was renewed"); err != nil {
		r.n.Logger.Error("the replaced server TLS key was not destroyed; destroy it with 'keyward key destroy'", "key", uri, "err", err)
		return
	}
	r.n.Logger.Info("replaced server TLS key destroyed", "key", uri)
}
