package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/revocation/filter"
)

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// A delegate is a key a CA certifies to sign on its behalf what is not a certificate or a CRL:
//
//   - ocsp-signing: the OCSP responder (RFC 6960 4.2.2.2): id-kp-OCSPSigning and id-pkix-ocsp-nocheck;
//   - crl-signing: the revocation-filter signer, and
//   - audit-signing: a factory site's export signer: both sign files, which no RFC binds, so their certificates
//     carry id-kp-documentSigning (RFC 9336), which no certificate profile can grant, so no device certificate
//     can pass for one.
//
// Every delegate certificate carries digitalSignature only (RFC 5280 4.2.1.3) and the key identifiers (4.2.1.1,
// 4.2.1.2), and is linted and signed like every certificate.

// NewDelegate is a delegate key just generated and certified, not recorded yet: the caller records the key and
// the certificate with the change they are for, or abandons the key.
type NewDelegate struct {
	Key      keystore.Key
	Location keystore.Location
	CertDER  []byte
	NotAfter time.Time
}

// NewDelegate generates a delegate key of purpose (ocsp-signing, crl-signing or audit-signing) in ks (nil: the
// software keystore), with the CA key's algorithm for an export signer and P-256 otherwise, and certifies it
// until notAfter (at most the CA certificate's own NotAfter).
func (i *Issuer) NewDelegate(ctx context.Context, ks keystore.Keystore, purpose keystore.Purpose, notAfter time.Time) (*NewDelegate, error) {
	if err := i.Usable(); err != nil {
		return nil, err
	}
	if i.statusOnly && purpose != keystore.PurposeOCSPSigning && purpose != keystore.PurposeCRLSigning {
		return nil, fmt.Errorf("CA %s: %w: it is %s", i.ca.ID, ErrStatusOnly, i.ca.Status)
	}
	now := i.c.now()
	cn := i.cert.Subject.CommonName
	tmpl := &x509.Certificate{
		NotBefore:      now.Add(-time.Minute),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		AuthorityKeyId: i.cert.SubjectKeyId,
	}
	alg := keystore.ECDSAP256
	switch purpose {
	case keystore.PurposeOCSPSigning:
		tmpl.Subject = pkix.Name{CommonName: cn + " OCSP responder"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}} // value NULL
	case keystore.PurposeCRLSigning:
		tmpl.Subject = pkix.Name{CommonName: cn + " revocation filter signer"}
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{filter.OIDDocumentSigning}
	case keystore.PurposeAuditSigning:
		tmpl.Subject = pkix.Name{CommonName: cn + " export signer"}
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{filter.OIDDocumentSigning}
		a, err := keystore.AlgorithmOf(i.cert.PublicKey)
		if err != nil {
			return nil, err
		}
		alg = a
	default:
		return nil, fmt.Errorf("no delegate of purpose %s", purpose)
	}
	if notAfter.After(i.cert.NotAfter) {
		notAfter = i.cert.NotAfter
	}
	tmpl.NotAfter = notAfter
	label := i.ca.ID + " " + string(purpose)
	if purpose == keystore.PurposeAuditSigning {
		label = i.ca.ID + " export signer"
	}
	key, loc, err := i.c.GenerateKey(ctx, ks, purpose, alg, label)
	if err != nil {
		return nil, err
	}
	fail := func(cause error) (*NewDelegate, error) { return nil, i.c.Abandon(ctx, cause, key.URI) }
	if tmpl.SerialNumber, err = issuer.NewSerial(time.Now()); err != nil {
		return fail(err)
	}
	if tmpl.SubjectKeyId, err = profile.SubjectKeyID(key.Public); err != nil {
		return fail(err)
	}
	p, err := i.iss.Prepare(tmpl, key.Public)
	if err != nil {
		return fail(fmt.Errorf("%s certificate of %s refused before signing: %w", purpose, i.ca.ID, err))
	}
	der, err := i.Issue(ctx, p)
	if err != nil {
		return fail(err)
	}
	return &NewDelegate{Key: key, Location: loc, CertDER: der, NotAfter: notAfter.UTC().Truncate(time.Second)}, nil
}

// Delegate is an opened delegated signer: its certificate, the chain above it without the root, and its key.
type Delegate struct {
	Cert   *x509.Certificate
	Chain  [][]byte // the delegate's certificate, then its issuer unless that is a root
	Issuer *x509.Certificate
	guard  *guard
}

// Signer returns the delegate's signer, for the revocation-filter builder, which signs the file it builds. It
// refuses once the delegate's key is destroyed.
func (d *Delegate) Signer() crypto.Signer { return d.guard }

// Delegate opens the delegated signer row records, certified by CA row.IssuerID.
func (c *Custodian) Delegate(ctx context.Context, row *store.RevocationSigner) (*Delegate, error) {
	cert, err := x509.ParseCertificate(row.CertDER)
	if err != nil {
		return nil, fmt.Errorf("%s signer %s: %w", row.Purpose, row.KeyURI, err)
	}
	g, err := c.signer(ctx, row.KeyURI, keystore.Purpose(row.Purpose), false)
	if err != nil {
		return nil, fmt.Errorf("%s signer %s: %w", row.Purpose, row.KeyURI, err)
	}
	ca, err := c.cfg.Store.GetCA(ctx, row.IssuerID)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(ca.CertDER)
	if err != nil {
		return nil, err
	}
	d := &Delegate{Cert: cert, Chain: [][]byte{row.CertDER}, guard: g, Issuer: caCert}
	if ca.Kind != store.CAKindRoot {
		d.Chain = append(d.Chain, ca.CertDER)
	}
	return d, nil
}
