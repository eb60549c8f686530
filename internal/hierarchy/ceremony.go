package hierarchy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// The offline-root flow, for environments whose root.offline is true (always production):
//
//  1. On the offline ceremony machine: 'keyward ca ceremony root' creates the root key and self-signed root in a
//     ceremony workspace (its own keystore and audit log). The server never sees this key.
//  2. On the server: 'keyward ca csr' generates the issuing CA key in the server's keystore (state
//     pre-activation) and writes a CSR.
//  3. On the ceremony machine: 'keyward ca ceremony sign' signs that CSR as an issuing CA under the root.
//  4. On the server: 'keyward ca import' checks the certificate against the pending key and the root, then
//     records both CAs and activates the key.

// CeremonyRoot creates env's root in a ceremony workspace; b.Store and b.Keys are the workspace's.
func (b *Builder) CeremonyRoot(ctx context.Context, env string, alg keystore.Algorithm, validity time.Duration) (*store.CA, error) {
	if _, err := b.Store.GetCA(ctx, RootID(env)); err == nil {
		return nil, fmt.Errorf("ceremony workspace already holds a root for %q: %w", env, store.ErrExists)
	}
	return b.createRoot(ctx, env, RootSpec{Algorithm: string(alg), Validity: Duration(validity)})
}

// RequestIssuing generates (env, product)'s issuing CA key in the server keystore, records it as
// pre-activation, and returns a CSR for the ceremony to sign.
func (b *Builder) RequestIssuing(ctx context.Context, env, product string) ([]byte, error) {
	spec, err := b.productSpec(env, product)
	if err != nil {
		return nil, err
	}
	id := IssuingID(env, product)
	if _, err := b.Store.GetCA(ctx, id); err == nil {
		return nil, fmt.Errorf("issuing CA %s exists already: %w", id, store.ErrExists)
	}
	alg, _ := keystore.ParseAlgorithm(spec.Algorithm)
	key, err := b.Keys.Generate(ctx, keystore.PurposeCASigning, alg, id)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", id, err)
	}
	signer, err := b.Keys.Signer(ctx, key.URI, keystore.PurposeCASigning)
	if err != nil {
		return nil, b.abandon(ctx, key, err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: IssuingSubject(env, product)}, signer)
	if err != nil {
		return nil, b.abandon(ctx, key, fmt.Errorf("CSR for %s: %w", id, err))
	}
	spki, err := goodkey.SPKIHash(key.Public)
	if err != nil {
		return nil, b.abandon(ctx, key, err)
	}
	now := b.now()
	err = b.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(ctx, &store.Key{URI: key.URI, Purpose: string(key.Purpose), Algorithm: string(key.Algorithm),
			Location: string(b.Keys.Location()), State: store.KeyPreActivation, Owner: id, SPKISHA256: spki, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: b.Actor, Action: "key.generate", Subject: key.URI, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"purpose": string(key.Purpose), "algorithm": string(key.Algorithm), "owner": id, "state": store.KeyPreActivation}})
	})
	if err != nil {
		return nil, b.abandon(ctx, key, fmt.Errorf("record %s key: %w", id, err))
	}
	return csr, nil
}

// CeremonySign signs an issuing-CA CSR with the workspace's root of env. The CSR's signature (proof of
// possession) and key quality are checked first.
func (b *Builder) CeremonySign(ctx context.Context, env string, csrDER []byte, validity time.Duration) ([]byte, error) {
	root, err := b.Store.GetCA(ctx, RootID(env))
	if err != nil {
		return nil, fmt.Errorf("ceremony workspace has no root for %q (run 'keyward ca ceremony root' first): %w", env, err)
	}
	rootCert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, err
	}
	csr, err := profile.ParseCSR(csrDER)
	if err != nil {
		return nil, err
	}
	if err := goodkey.Check(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("CSR key: %w", err)
	}
	signer, err := b.Keys.Signer(ctx, root.KeyURI, keystore.PurposeRootSigning)
	if err != nil {
		return nil, err
	}
	tmpl, err := IssuingTemplate(csr.Subject, csr.PublicKey, b.now(), validity, rootCert)
	if err != nil {
		return nil, err
	}
	der, _, err := issuer.SignCA(ctx, tmpl, rootCert, signer, csr.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("sign issuing CA: %w", err)
	}
	now := b.now()
	err = b.Store.Tx(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: b.Actor, Action: "ceremony.sign", Subject: csr.Subject.String(), Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"root": root.ID, "serial": fmt.Sprintf("%x", tmpl.SerialNumber), "not_after": tmpl.NotAfter.Format(time.RFC3339)}})
	})
	if err != nil {
		return nil, err
	}
	return der, nil
}

// ImportIssuing installs a ceremony-signed issuing CA certificate for (env, product): it must certify the pending
// key from RequestIssuing and chain to rootDER, a self-signed CA certificate. The root is recorded without a key
// (offline) and the issuing key becomes active, in one transaction.
func (b *Builder) ImportIssuing(ctx context.Context, env, product string, certDER, rootDER []byte) error {
	if _, err := b.productSpec(env, product); err != nil {
		return err
	}
	id := IssuingID(env, product)
	rootCert, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return fmt.Errorf("parse root certificate: %w", err)
	}
	if !rootCert.IsCA || rootCert.CheckSignatureFrom(rootCert) != nil {
		return errors.New("root certificate is not a self-signed CA certificate")
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("parse issuing CA certificate: %w", err)
	}
	if err := cert.CheckSignatureFrom(rootCert); err != nil {
		return fmt.Errorf("issuing CA certificate is not signed by the given root: %w", err)
	}
	if !cert.IsCA || !cert.MaxPathLenZero {
		return errors.New("issuing CA certificate must be a CA with path length 0")
	}
	if existing, err := b.Store.GetCA(ctx, RootID(env)); err == nil && !bytes.Equal(existing.CertDER, rootDER) {
		return fmt.Errorf("environment %q already has a different root recorded; refusing to mix roots", env)
	}
	spki, err := goodkey.SPKIHash(cert.PublicKey)
	if err != nil {
		return err
	}
	keys, err := b.Store.ListKeys(ctx)
	if err != nil {
		return err
	}
	var pending *store.Key
	for _, k := range keys {
		if k.Owner == id && k.State == store.KeyPreActivation && bytes.Equal(k.SPKISHA256, spki) {
			pending = k
		}
	}
	if pending == nil {
		return fmt.Errorf("issuing CA certificate does not certify the pending key of %s (run 'keyward ca csr' on this server and sign that CSR)", id)
	}
	now := b.now()
	return b.Store.Tx(ctx, func(tx store.Tx) error {
		if _, err := b.Store.GetCA(ctx, RootID(env)); errors.Is(err, store.ErrNotFound) {
			root := &store.CA{ID: RootID(env), Environment: env, Kind: store.CAKindRoot, CertDER: rootDER, Subject: rootCert.Subject.String(),
				NotBefore: rootCert.NotBefore, NotAfter: rootCert.NotAfter, Status: store.CAStatusActive, CreatedAt: now}
			if err := tx.InsertCA(ctx, root); err != nil {
				return err
			}
			if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: b.Actor, Action: "ca.import", Subject: root.ID, Outcome: audit.OutcomeSuccess,
				Details: map[string]string{"kind": store.CAKindRoot, "key": "offline", "serial": fmt.Sprintf("%x", rootCert.SerialNumber)}}); err != nil {
				return err
			}
		}
		ca := &store.CA{ID: id, Environment: env, ProductLine: product, Kind: store.CAKindIssuing, ParentID: RootID(env), KeyURI: pending.URI,
			CertDER: certDER, Subject: cert.Subject.String(), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Status: store.CAStatusActive, CreatedAt: now}
		if err := tx.InsertCA(ctx, ca); err != nil {
			return err
		}
		if err := tx.SetKeyState(ctx, pending.URI, store.KeyActive, now); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: b.Actor, Action: "ca.import", Subject: id, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"kind": store.CAKindIssuing, "key": pending.URI, "serial": fmt.Sprintf("%x", cert.SerialNumber)}})
	})
}

func (b *Builder) productSpec(env, product string) (*ProductLineSpec, error) {
	e := b.Config.Environments[env]
	if e == nil {
		return nil, fmt.Errorf("environment %q is not declared in keyward.yaml", env)
	}
	spec := e.ProductLines[product]
	if spec == nil {
		return nil, fmt.Errorf("product line %q is not declared for environment %q (declared: %v)", product, env, b.Config.ProductLineNames(env))
	}
	return spec, nil
}
