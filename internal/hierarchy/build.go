package hierarchy

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
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

// Builder creates CAs. It is used by 'keyward init', 'keyward ca create' and the first start of 'keyward serve';
// never by request handling.
type Builder struct {
	Store  store.Store
	Keys   keystore.Keystore // where new CA keys are generated
	Config *Config
	Actor  string
	Now    func() time.Time
}

func (b *Builder) now() time.Time {
	if b.Now != nil {
		return b.Now().UTC()
	}
	return time.Now().UTC()
}

// Result lists the CAs a build created.
type Result struct {
	Created []*store.CA
}

// ErrOffline is returned when an operation would need the private key of an offline root.
var ErrOffline = errors.New("root is offline")

// Build creates every CA that the configuration declares for env and that does not exist yet. Existing CAs are
// left alone, so Build is safe to repeat after editing keyward.yaml. For an environment with an offline root,
// only the ceremony commands create CAs.
func (b *Builder) Build(ctx context.Context, env string) (*Result, error) {
	spec := b.Config.Environments[env]
	if spec == nil {
		return nil, fmt.Errorf("environment %q is not declared in keyward.yaml (declared: %v)", env, b.Config.EnvironmentNames())
	}
	res := &Result{}
	if spec.Root.Offline {
		return res, fmt.Errorf("environment %q: %w; create its CAs with 'keyward ca ceremony root', 'keyward ca csr', 'keyward ca ceremony sign' and 'keyward ca import'", env, ErrOffline)
	}
	root, err := b.Store.GetCA(ctx, RootID(env))
	if errors.Is(err, store.ErrNotFound) {
		root, err = b.createRoot(ctx, env, spec.Root)
		if err != nil {
			return res, err
		}
		res.Created = append(res.Created, root)
	} else if err != nil {
		return res, err
	}
	rootCert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return res, fmt.Errorf("parse root %s: %w", root.ID, err)
	}
	var rootSigner crypto.Signer
	for _, pl := range b.Config.ProductLineNames(env) {
		if _, err := b.Store.GetCA(ctx, IssuingID(env, pl)); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return res, err
		}
		if rootSigner == nil {
			if rootSigner, err = b.Keys.Signer(ctx, root.KeyURI, keystore.PurposeRootSigning); err != nil {
				return res, fmt.Errorf("root %s signer: %w", root.ID, err)
			}
		}
		ca, err := b.createIssuing(ctx, env, pl, spec.ProductLines[pl], rootCert, rootSigner)
		if err != nil {
			return res, err
		}
		res.Created = append(res.Created, ca)
	}
	return res, nil
}

func (b *Builder) subject(cn string) pkix.Name {
	return pkix.Name{Organization: []string{b.Config.Organization}, CommonName: cn}
}

// RootName is the subject common name of env's root.
func (b *Builder) RootName(env string) string { return fmt.Sprintf("Keyward %s Root CA", env) }

// IssuingSubject is the subject of (env, product)'s issuing CA. It is deliberately short, common name only:
// the issuer name is repeated in every device certificate, and the compact implant profile has about a dozen
// bytes to spare under its 400-byte limit. The organisation is named in the root.
func IssuingSubject(env, product string) pkix.Name {
	return pkix.Name{CommonName: fmt.Sprintf("%s %s CA", product, env)}
}

// RootTemplate returns the template of a root certificate. Rules: RFC 5280 4.2.1.9 (basicConstraints critical,
// cA true), 4.2.1.3 (keyCertSign and cRLSign, critical), 4.2.1.2 (subject key identifier present in CA certs).
func RootTemplate(subject pkix.Name, pub crypto.PublicKey, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := issuer.RandomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := profile.SubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
	}, nil
}

// IssuingTemplate returns the template of an issuing CA certificate: path length 0 (it signs end entities only,
// RFC 5280 4.2.1.9), keyCertSign and cRLSign.
func IssuingTemplate(subject pkix.Name, pub crypto.PublicKey, now time.Time, validity time.Duration, parent *x509.Certificate) (*x509.Certificate, error) {
	t, err := RootTemplate(subject, pub, now, validity)
	if err != nil {
		return nil, err
	}
	t.MaxPathLen, t.MaxPathLenZero = 0, true
	t.AuthorityKeyId = parent.SubjectKeyId
	if t.NotAfter.After(parent.NotAfter) {
		return nil, fmt.Errorf("issuing CA %q would outlive its parent %q (%s > %s): shorten its validity", subject.CommonName, parent.Subject.CommonName, t.NotAfter.Format(time.DateOnly), parent.NotAfter.Format(time.DateOnly))
	}
	return t, nil
}

func (b *Builder) createRoot(ctx context.Context, env string, spec RootSpec) (*store.CA, error) {
	alg, _ := keystore.ParseAlgorithm(spec.Algorithm)
	key, err := b.Keys.Generate(ctx, keystore.PurposeRootSigning, alg, RootID(env))
	if err != nil {
		return nil, fmt.Errorf("generate %s root key: %w", env, err)
	}
	signer, err := b.Keys.Signer(ctx, key.URI, keystore.PurposeRootSigning)
	if err != nil {
		return nil, b.abandon(ctx, key, fmt.Errorf("root %s signer: %w", env, err))
	}
	tmpl, err := RootTemplate(b.subject(b.RootName(env)), key.Public, b.now(), time.Duration(spec.Validity))
	if err != nil {
		return nil, b.abandon(ctx, key, err)
	}
	der, _, err := issuer.SelfSign(ctx, tmpl, signer)
	if err != nil {
		return nil, b.abandon(ctx, key, fmt.Errorf("sign %s root: %w", env, err))
	}
	ca := &store.CA{ID: RootID(env), Environment: env, Kind: store.CAKindRoot, KeyURI: key.URI}
	return ca, b.record(ctx, ca, der, key, b.Keys.Location())
}

func (b *Builder) createIssuing(ctx context.Context, env, product string, spec *ProductLineSpec, parent *x509.Certificate, parentSigner crypto.Signer) (*store.CA, error) {
	alg, _ := keystore.ParseAlgorithm(spec.Algorithm)
	id := IssuingID(env, product)
	key, err := b.Keys.Generate(ctx, keystore.PurposeCASigning, alg, id)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", id, err)
	}
	tmpl, err := IssuingTemplate(IssuingSubject(env, product), key.Public, b.now(), time.Duration(spec.Validity), parent)
	if err != nil {
		return nil, b.abandon(ctx, key, err)
	}
	der, _, err := issuer.SignCA(ctx, tmpl, parent, parentSigner, key.Public)
	if err != nil {
		return nil, b.abandon(ctx, key, fmt.Errorf("sign %s: %w", id, err))
	}
	ca := &store.CA{ID: id, Environment: env, ProductLine: product, Kind: store.CAKindIssuing, ParentID: RootID(env), KeyURI: key.URI}
	return ca, b.record(ctx, ca, der, key, b.Keys.Location())
}

// record stores the CA, its key and their audit events in one transaction.
func (b *Builder) record(ctx context.Context, ca *store.CA, der []byte, key keystore.Key, loc keystore.Location) error {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return b.abandon(ctx, key, fmt.Errorf("parse %s certificate: %w", ca.ID, err))
	}
	now := b.now()
	ca.CertDER, ca.Subject = der, cert.Subject.String()
	ca.NotBefore, ca.NotAfter = cert.NotBefore, cert.NotAfter
	ca.Status, ca.CreatedAt = store.CAStatusActive, now
	spki, err := goodkey.SPKIHash(key.Public)
	if err != nil {
		return b.abandon(ctx, key, err)
	}
	err = b.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(ctx, &store.Key{
			URI: key.URI, Purpose: string(key.Purpose), Algorithm: string(key.Algorithm), Location: string(loc),
			State: store.KeyActive, Owner: ca.ID, SPKISHA256: spki, CreatedAt: now, StateChangedAt: now,
		}); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: b.Actor, Action: "key.generate", Subject: key.URI, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"purpose": string(key.Purpose), "algorithm": string(key.Algorithm), "location": string(loc), "owner": ca.ID}}); err != nil {
			return err
		}
		if err := tx.InsertCA(ctx, ca); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: b.Actor, Action: "ca.create", Subject: ca.ID, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"kind": ca.Kind, "environment": ca.Environment, "product_line": ca.ProductLine, "key": key.URI,
				"serial": fmt.Sprintf("%x", cert.SerialNumber), "not_after": ca.NotAfter.Format(time.RFC3339)}})
	})
	if err != nil {
		return b.abandon(ctx, key, fmt.Errorf("record %s: %w", ca.ID, err))
	}
	return nil
}

// abandon destroys a key generated for a CA that could not be recorded, so no unrecorded key lingers.
func (b *Builder) abandon(ctx context.Context, key keystore.Key, cause error) error {
	if err := b.Keys.Destroy(ctx, key.URI); err != nil {
		return fmt.Errorf("%w (and destroying the unused key %s failed: %v)", cause, key.URI, err)
	}
	return cause
}

// CreateServiceCA creates the data directory's TLS service CA: a self-signed CA, path length 0, whose key has
// purpose ca-signing and which signs only the server's own TLS certificates. It belongs to no device environment.
func (b *Builder) CreateServiceCA(ctx context.Context, id string) (*store.CA, error) {
	key, err := b.Keys.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, id)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", id, err)
	}
	signer, err := b.Keys.Signer(ctx, key.URI, keystore.PurposeCASigning)
	if err != nil {
		return nil, b.abandon(ctx, key, err)
	}
	tmpl, err := RootTemplate(b.subject("Keyward service TLS CA"), key.Public, b.now(), 10*365*24*time.Hour)
	if err != nil {
		return nil, b.abandon(ctx, key, err)
	}
	tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	der, _, err := issuer.SelfSign(ctx, tmpl, signer)
	if err != nil {
		return nil, b.abandon(ctx, key, fmt.Errorf("sign %s: %w", id, err))
	}
	ca := &store.CA{ID: id, Environment: "service", Kind: store.CAKindService, KeyURI: key.URI}
	return ca, b.record(ctx, ca, der, key, b.Keys.Location())
}
