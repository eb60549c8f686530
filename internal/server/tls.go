package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/store"
)

// The service's own TLS identity is kept apart from the device hierarchy: a "service" CA of the data directory
// issues the server certificate, and its certificate (DATA/tls/ca.pem) is what API clients trust. No device
// environment's root ever signs a server certificate, so device trust anchors never validate the API and the API
// trust anchor never validates a device.

// ServiceCAID is the CA id of the data directory's TLS service CA.
const ServiceCAID = "service/tls"

const (
	serverCertValidity = 90 * 24 * time.Hour
	serverRenewBefore  = 30 * 24 * time.Hour
)

// ServerTLS returns the server certificate for the given host names and addresses, creating the service CA on
// first use and re-issuing the server certificate when it is due for renewal or its names changed. It writes
// DATA/tls/ca.pem (the trust anchor for API clients) and DATA/tls/server.pem.
func ServerTLS(ctx context.Context, n *node.Node, hosts []string) (*tls.Certificate, []byte, error) {
	dir := filepath.Join(n.Dir, node.TLSDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	caRow, err := ensureServiceCA(ctx, n)
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
		signer, err := n.Keys.Signer(ctx, uri, keystore.PurposeTLSServer)
		if err == nil {
			return &tls.Certificate{Certificate: [][]byte{der, caRow.CertDER}, PrivateKey: signer}, caPEM, nil
		}
		n.Logger.Warn("server TLS key unusable; issuing a new one", "key", uri, "err", err)
	}
	caSigner, err := n.Keys.Signer(ctx, caRow.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		return nil, nil, fmt.Errorf("service CA key: %w", err)
	}
	key, err := n.Soft.Generate(ctx, keystore.PurposeTLSServer, keystore.ECDSAP256, "server TLS")
	if err != nil {
		return nil, nil, err
	}
	now := n.Now().UTC()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "keyward server"},
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    now.Add(serverCertValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.SerialNumber, err = issuer.RandomSerial(); err != nil {
		return nil, nil, err
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public, caSigner)
	if err != nil {
		n.Soft.Destroy(ctx, key.URI)
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	spki, _ := goodkey.SPKIHash(key.Public)
	err = n.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(ctx, &store.Key{URI: key.URI, Purpose: string(key.Purpose), Algorithm: string(key.Algorithm), Location: string(keystore.LocationSoftware),
			State: store.KeyActive, Owner: "server-tls", SPKISHA256: spki, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: "server", Action: "tls.issue", Subject: fmt.Sprintf("%x", tmpl.SerialNumber), Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"key": key.URI, "names": strings.Join(hosts, ","), "not_after": tmpl.NotAfter.Format(time.RFC3339)}})
	})
	if err != nil {
		n.Soft.Destroy(ctx, key.URI)
		return nil, nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(keyFile, []byte(key.URI+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	signer, err := n.Keys.Signer(ctx, key.URI, keystore.PurposeTLSServer)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, caRow.CertDER}, PrivateKey: signer}, caPEM, nil
}

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

func ensureServiceCA(ctx context.Context, n *node.Node) (*store.CA, error) {
	ca, err := n.Store.GetCA(ctx, ServiceCAID)
	if err == nil {
		return ca, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	b := n.Builder("server", nil)
	return b.CreateServiceCA(ctx, ServiceCAID)
}
