package revocation

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/revocation/filter"
)

// Delegated signer lifetimes. The OCSP responder carries id-pkix-ocsp-nocheck, so relying parties never check
// its revocation; RFC 6960 4.2.2.2.1 asks for a short lifetime in that case.
const (
	ocspSignerValidity    = 30 * 24 * time.Hour
	ocspSignerRenewBefore = 10 * 24 * time.Hour
	filterSignerValidity  = 365 * 24 * time.Hour
	filterSignerRenew     = 60 * 24 * time.Hour
)

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// caSigner is a CA with its certificate and private key, fetched under the key's own purpose.
type caSigner struct {
	ca     *store.CA
	cert   *x509.Certificate
	signer crypto.Signer
}

// caKey opens the signer of CA id: a root's key has purpose root-signing, an issuing CA's ca-signing. The
// keystore refuses any other purpose. An offline root (no key URI) cannot sign here.
func (s *Service) caKey(ctx context.Context, id string) (*caSigner, error) {
	ca, err := s.n.Store.GetCA(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", id, err)
	}
	if ca.KeyURI == "" {
		return nil, fmt.Errorf("CA %s is offline: its key is used only in a ceremony", id)
	}
	cert, err := x509.ParseCertificate(ca.CertDER)
	if err != nil {
		return nil, fmt.Errorf("CA %s certificate: %w", id, err)
	}
	purpose := keystore.PurposeCASigning
	if ca.Kind == store.CAKindRoot {
		purpose = keystore.PurposeRootSigning
	}
	signer, err := s.n.Keys.Signer(ctx, ca.KeyURI, purpose)
	if err != nil {
		return nil, fmt.Errorf("CA %s key: %w", id, err)
	}
	return &caSigner{ca: ca, cert: cert, signer: signer}, nil
}

// Delegate is a delegated signer: its certificate (and the chain above it, without the root) and key.
type Delegate struct {
	Cert   *x509.Certificate
	Chain  [][]byte // the delegate's certificate, then its issuer unless that is a root
	Signer crypto.Signer
	Issuer *x509.Certificate
}

// ensureDelegate returns the newest delegated signer of CA caID for purpose, issuing a new one (key generated
// in the software keystore with that purpose, certificate linted and signed by the CA, glossary row and
// audit event in one transaction) when there is none or it is due for renewal.
func (s *Service) ensureDelegate(ctx context.Context, caID string, purpose keystore.Purpose) (*Delegate, error) {
	validity, renew := ocspSignerValidity, ocspSignerRenewBefore
	if purpose == keystore.PurposeCRLSigning {
		validity, renew = filterSignerValidity, filterSignerRenew
	}
	now := s.now()
	if row, err := s.rs.LatestRevocationSigner(ctx, caID, string(purpose)); err == nil && row.NotAfter.Sub(now) > renew {
		return s.openDelegate(ctx, row, purpose)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	ca, err := s.caKey(ctx, caID)
	if err != nil {
		return nil, err
	}
	key, err := s.n.Soft.Generate(ctx, purpose, keystore.ECDSAP256, caID+" "+string(purpose))
	if err != nil {
		return nil, fmt.Errorf("generate %s key for %s: %w", purpose, caID, err)
	}
	abandon := func(cause error) error {
		if err := s.n.Soft.Destroy(ctx, key.URI); err != nil {
			return fmt.Errorf("%w (and destroying the unused key %s failed: %v)", cause, key.URI, err)
		}
		return cause
	}
	serial, err := issuer.RandomSerial()
	if err != nil {
		return nil, abandon(err)
	}
	ski, err := profile.SubjectKeyID(key.Public)
	if err != nil {
		return nil, abandon(err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		// RFC 5280 4.2.1.3: digitalSignature for signing responses and files; 4.2.1.1 and 4.2.1.2 key ids.
		KeyUsage:       x509.KeyUsageDigitalSignature,
		AuthorityKeyId: ca.cert.SubjectKeyId,
		SubjectKeyId:   ski,
	}
	switch purpose {
	case keystore.PurposeOCSPSigning:
		// RFC 6960 4.2.2.2: a delegated responder's certificate is issued by the CA and carries
		// id-kp-OCSPSigning; 4.2.2.2.1: id-pkix-ocsp-nocheck, value NULL.
		tmpl.Subject = pkix.Name{CommonName: ca.cert.Subject.CommonName + " OCSP responder"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}}
	case keystore.PurposeCRLSigning:
		// RFC 9336: id-kp-documentSigning, which no certificate profile can grant.
		tmpl.Subject = pkix.Name{CommonName: ca.cert.Subject.CommonName + " revocation filter signer"}
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{filter.OIDDocumentSigning}
	default:
		return nil, abandon(fmt.Errorf("no delegated signer for purpose %s", purpose))
	}
	iss, err := issuer.New(ca.cert, ca.signer)
	if err != nil {
		return nil, abandon(err)
	}
	prep, err := iss.Prepare(tmpl, key.Public)
	if err != nil {
		return nil, abandon(fmt.Errorf("%s certificate for %s refused before signing: %w", purpose, caID, err))
	}
	der, err := iss.Issue(ctx, prep)
	if err != nil {
		return nil, abandon(err)
	}
	spki, err := goodkey.SPKIHash(key.Public)
	if err != nil {
		return nil, abandon(err)
	}
	row := &store.RevocationSigner{IssuerID: caID, Purpose: string(purpose), KeyURI: key.URI, CertDER: der, NotAfter: notAfter.UTC().Truncate(time.Second), CreatedAt: now}
	err = s.n.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(ctx, &store.Key{URI: key.URI, Purpose: string(purpose), Algorithm: string(key.Algorithm), Location: string(keystore.LocationSoftware),
			State: store.KeyActive, Owner: caID + " " + string(purpose), SPKISHA256: spki, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		if err := tx.InsertRevocationSigner(ctx, row); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: "revocation", Action: "revocation.signer", Subject: key.URI, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"issuer": caID, "purpose": string(purpose), "serial": serial.Text(16), "not_after": notAfter.Format(time.RFC3339)}})
	})
	if err != nil {
		return nil, abandon(fmt.Errorf("record %s signer of %s: %w", purpose, caID, err))
	}
	return s.openDelegate(ctx, row, purpose)
}

func (s *Service) openDelegate(ctx context.Context, row *store.RevocationSigner, purpose keystore.Purpose) (*Delegate, error) {
	cert, err := x509.ParseCertificate(row.CertDER)
	if err != nil {
		return nil, fmt.Errorf("%s signer %s: %w", purpose, row.KeyURI, err)
	}
	signer, err := s.n.Keys.Signer(ctx, row.KeyURI, purpose)
	if err != nil {
		return nil, fmt.Errorf("%s signer %s: %w", purpose, row.KeyURI, err)
	}
	ca, err := s.n.Store.GetCA(ctx, row.IssuerID)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(ca.CertDER)
	if err != nil {
		return nil, err
	}
	d := &Delegate{Cert: cert, Chain: [][]byte{row.CertDER}, Signer: signer, Issuer: caCert}
	if ca.Kind != store.CAKindRoot {
		d.Chain = append(d.Chain, ca.CertDER)
	}
	return d, nil
}
