package ra

// The service's own TLS identity is kept apart from the device hierarchy: a "service" CA of the data directory
// issues the server certificate, and its certificate is what API clients trust. No device environment's root
// ever signs a server certificate, so device trust anchors never validate the API and the API trust anchor never
// validates a device.

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// ServiceCAID is the CA id of the data directory's TLS service CA.
const ServiceCAID = "service/tls"

// ServerCertValidity is the validity of the server's TLS certificate.
const ServerCertValidity = 90 * 24 * time.Hour

// MinServerCertValidity is the shortest validity a server certificate may be given: renewal at two thirds of
// it must leave time to renew.
const MinServerCertValidity = 10 * time.Second

// ServiceCA returns the data directory's TLS service CA, creating it on first use.
func (r *RA) ServiceCA(ctx context.Context) (*store.CA, error) {
	ca, err := r.cfg.Store.GetCA(ctx, ServiceCAID)
	if err == nil {
		return ca, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, wrap(KindUnavailable, err)
	}
	ca, err = r.CreateServiceCA(ctx, System("server"), ServiceCAID)
	if KindOf(err) == KindConflict {
		// Another process created it meanwhile: use theirs.
		return r.cfg.Store.GetCA(ctx, ServiceCAID)
	}
	return ca, err
}

// ServerCertificate is a TLS server certificate the RA issued: the certificate, its key's URI (purpose
// tls-server, in the software keystore) and the service CA certificate above it.
type ServerCertificate struct {
	CertDER   []byte
	KeyURI    string
	CACertDER []byte
}

// IssueServerTLS issues the server's TLS certificate for hosts (DNS names and IP addresses) under the service
// CA: a new key, the certificate linted and signed like every certificate, and the key's glossary row with the
// audit event. The certificate is valid for validity (ServerCertValidity when 0).
func (r *RA) IssueServerTLS(ctx context.Context, hosts []string, validity time.Duration) (*ServerCertificate, error) {
	if validity <= 0 {
		validity = ServerCertValidity
	}
	if validity < MinServerCertValidity {
		return nil, errorf(KindBadRequest, "server certificate validity %s is below the minimum of %s", validity, MinServerCertValidity)
	}
	caRow, err := r.ServiceCA(ctx)
	if err != nil {
		return nil, err
	}
	iss, err := r.issuer(ctx, caRow.ID)
	if err != nil {
		return nil, err
	}
	key, loc, err := r.cfg.CA.GenerateKey(ctx, nil, keystore.PurposeTLSServer, keystore.ECDSAP256, "server TLS")
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	now := r.now()
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "keyward server"},
		// Backdated for clients whose clocks lag, by a minute or a tenth of a short validity.
		NotBefore: now.Add(-min(time.Minute, validity/10)),
		NotAfter:  now.Add(validity),
		// RFC 5280 4.2.1.3 and 4.2.1.12: a TLS server key, nothing else.
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		AuthorityKeyId: iss.Certificate().SubjectKeyId,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	fail := func(cause error) (*ServerCertificate, error) { return nil, r.abandon(ctx, cause, key.URI) }
	if tmpl.SerialNumber, err = issuer.NewSerial(now); err != nil {
		return fail(err)
	}
	p, err := iss.Prepare(tmpl, key.Public)
	if err != nil {
		return fail(fmt.Errorf("server certificate for %s refused before signing: %w", strings.Join(hosts, ", "), err))
	}
	der, err := iss.Issue(ctx, p)
	if err != nil {
		return fail(signError(caRow.ID, err))
	}
	spki, err := goodkey.SPKIHash(key.Public)
	if err != nil {
		return fail(err)
	}
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(ctx, &store.Key{URI: key.URI, Purpose: string(key.Purpose), Algorithm: string(key.Algorithm), Location: string(loc),
			State: store.KeyActive, Owner: "server-tls", SPKISHA256: spki, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		return r.success(ctx, tx, System("server"), audit.ActionTLSIssue, fmt.Sprintf("%x", tmpl.SerialNumber), now,
			map[string]string{"key": key.URI, "names": strings.Join(hosts, ","), "not_after": tmpl.NotAfter.Format(time.RFC3339)})
	})
	if err != nil {
		return fail(err)
	}
	return &ServerCertificate{CertDER: der, KeyURI: key.URI, CACertDER: caRow.CertDER}, nil
}
