package ra

// The CA hierarchy (keyward.yaml, internal/hierarchy): per environment a root, per (environment, product line) an
// issuing CA; a station CA per environment and the data directory's TLS service CA; and, for environments whose
// root is offline, the ceremony flow. Creating a CA is a decision like any other: the RA checks the request,
// the custodian (internal/ca) generates the key and signs the certificate through the linted path, and one
// transaction records the key, the CA and their audit events.

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/certpolicy"
)

// pendingCA is a CA whose key is generated and whose certificate is signed, not recorded yet: recordCA stores
// it in the caller's transaction; abandon destroys its key if that transaction fails.
type pendingCA struct {
	row      *store.CA
	key      keystore.Key
	loc      keystore.Location
	spki     []byte
	warnings []issuer.Finding
	cert     *x509.Certificate
	// imported: the key was recorded pending activation by RequestCA, and a ceremony signed the certificate;
	// recording activates the key, and abandoning leaves it for another try.
	imported   bool
	transcript string
}

func (r *RA) abandon(ctx context.Context, cause error, uris ...string) error {
	return r.cfg.CA.Abandon(ctx, cause, uris...)
}

// pending completes a pendingCA from its signed certificate.
func (r *RA) pending(ctx context.Context, row *store.CA, key keystore.Key, loc keystore.Location, der []byte, warnings []issuer.Finding) (*pendingCA, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, r.abandon(ctx, fmt.Errorf("parse %s certificate: %w", row.ID, err), key.URI)
	}
	spki, err := goodkey.SPKIHash(key.Public)
	if err != nil {
		return nil, r.abandon(ctx, err, key.URI)
	}
	row.CertDER, row.Subject = der, cert.Subject.String()
	row.NotBefore, row.NotAfter = cert.NotBefore, cert.NotAfter
	row.Status, row.CreatedAt = store.CAStatusActive, r.now()
	return &pendingCA{row: row, key: key, loc: loc, spki: spki, warnings: warnings, cert: cert}, nil
}

// recordKey stores a generated key in the glossary with its key.generate event.
func (r *RA) recordKey(ctx context.Context, tx store.Tx, p Principal, key keystore.Key, loc keystore.Location, owner, state string, spki []byte, at time.Time) error {
	if err := tx.InsertKey(ctx, &store.Key{URI: key.URI, Purpose: string(key.Purpose), Algorithm: string(key.Algorithm), Location: string(loc),
		State: state, Owner: owner, SPKISHA256: spki, CreatedAt: at, StateChangedAt: at}); err != nil {
		return err
	}
	d := map[string]string{"purpose": string(key.Purpose), "algorithm": string(key.Algorithm), "location": string(loc), "owner": owner}
	if state != store.KeyActive {
		d["state"] = state
	}
	return r.success(ctx, tx, p, audit.ActionKeyGenerate, key.URI, at, d)
}

// recordCA stores a pending CA's key and row with their audit events in tx.
func (r *RA) recordCA(ctx context.Context, tx store.Tx, p Principal, pc *pendingCA) error {
	now := pc.row.CreatedAt
	if pc.row.Generation == 0 {
		pc.row.Generation = 1
	}
	action := audit.ActionCACreate
	if pc.imported {
		action = audit.ActionCAImport
		if err := tx.SetKeyState(ctx, pc.key.URI, store.KeyActive, now); err != nil {
			return err
		}
	} else if err := r.recordKey(ctx, tx, p, pc.key, pc.loc, pc.row.ID, store.KeyActive, pc.spki, now); err != nil {
		return err
	}
	if err := tx.InsertCA(ctx, pc.row); err != nil {
		return err
	}
	d := map[string]string{"kind": pc.row.Kind, "environment": pc.row.Environment, "product_line": pc.row.ProductLine, "key": pc.key.URI,
		"serial": fmt.Sprintf("%x", pc.cert.SerialNumber), "not_after": pc.row.NotAfter.Format(time.RFC3339), "generation": fmt.Sprint(pc.row.Generation)}
	if len(pc.warnings) > 0 {
		d["lint_warnings"] = fmt.Sprint(pc.warnings)
	}
	if pc.transcript != "" {
		d["ceremony_transcript"] = pc.transcript
	}
	return r.success(ctx, tx, p, action, pc.row.ID, now, d)
}

// abandonCA gives up a CA that was not recorded: it destroys the keys generated for it, but not an imported
// CA's key, which stays pending for another try.
func (r *RA) abandonCA(ctx context.Context, cause error, pc *pendingCA, others ...string) error {
	if !pc.imported {
		others = append(others, pc.key.URI)
	}
	return r.abandon(ctx, cause, others...)
}

// subordinate describes a CA to sign under an existing one.
type subordinate struct {
	id, env, product, kind string
	parent                 *ca.Issuer
	subject                pkix.Name
	validity               time.Duration
	// clampToParent shortens the validity to end an hour before the parent's, rather than refusing.
	clampToParent bool
	keys          keystore.Keystore // nil: the software keystore
	alg           keystore.Algorithm
	// edit, if set, changes the template before it is signed (a site CA's name constraints).
	edit func(*x509.Certificate)
}

// newSubordinate generates the key of s and has its parent sign its certificate, through the linted path: path
// length 0 (it signs end entities only, RFC 5280 4.2.1.9), keyCertSign and cRLSign.
func (r *RA) newSubordinate(ctx context.Context, s subordinate) (*pendingCA, error) {
	if s.alg == "" {
		s.alg = keystore.ECDSAP256
	}
	key, loc, err := r.cfg.CA.GenerateKey(ctx, s.keys, keystore.PurposeCASigning, s.alg, s.id)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	now := r.now()
	validity := s.validity
	if left := s.parent.Certificate().NotAfter.Sub(now) - time.Hour; s.clampToParent && left < validity {
		validity = left
	}
	tmpl, err := hierarchy.IssuingTemplate(s.subject, key.Public, now, validity, s.parent.Certificate())
	if err != nil {
		return nil, r.abandon(ctx, errorf(KindBadRequest, "%w", err), key.URI)
	}
	tmpl.Policies = r.caPolicies(s.kind)
	if s.kind == store.CAKindStation {
		// RFC 5280 4.2.1.12 in a CA certificate, as path validators apply it: its stations can only be TLS
		// clients (the ceremony's station CA is made the same way, kindTemplate).
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if s.edit != nil {
		s.edit(tmpl)
	}
	der, warnings, err := s.parent.IssueCA(ctx, tmpl, key.Public)
	if err != nil {
		return nil, r.abandon(ctx, signError(s.parent.CA().ID, fmt.Errorf("sign %s: %w", s.id, err)), key.URI)
	}
	return r.pending(ctx, &store.CA{ID: s.id, Environment: s.env, ProductLine: s.product, Kind: s.kind, ParentID: s.parent.CA().ID, KeyURI: key.URI}, key, loc, der, warnings)
}

// caPolicies returns the certificate policies (RFC 5280 4.2.1.4) a CA of kind carries under keyward.yaml's
// policy arc: those of the roles it may issue under (pkg/certpolicy), so that a relying party checking a role
// by policy also sees the CA was allowed to vouch for it. A station CA carries only the station policy: no
// station certificate can pass for a device, gateway or service. Roots carry none (trust anchors are outside
// RFC 5280 policy processing), nor do OCSP responders (end entities that issue nothing).
func (r *RA) caPolicies(kind string) []x509.OID {
	switch kind {
	case store.CAKindStation:
		return r.Hierarchy().Arc().Policies(certpolicy.IssuerRoles(true)...)
	case store.CAKindIssuing, store.CAKindSite:
		return r.Hierarchy().Arc().Policies(certpolicy.IssuerRoles(false)...)
	}
	return nil
}

// createSubordinate creates and records s in one transaction.
func (r *RA) createSubordinate(ctx context.Context, p Principal, s subordinate) (*store.CA, error) {
	pc, err := r.newSubordinate(ctx, s)
	if err != nil {
		return nil, err
	}
	if err := r.tx(ctx, func(tx store.Tx) error { return r.recordCA(ctx, tx, p, pc) }); err != nil {
		return nil, r.abandon(ctx, fmt.Errorf("record %s: %w", s.id, err), pc.key.URI)
	}
	return pc.row, nil
}

// newRoot generates a self-signed CA's key in ks and signs its certificate (RootTemplate; path length 0 for
// the service CA).
func (r *RA) newRoot(ctx context.Context, row *store.CA, ks keystore.Keystore, purpose keystore.Purpose, alg keystore.Algorithm, subject pkix.Name, validity time.Duration, pathLenZero bool) (*pendingCA, error) {
	key, loc, err := r.cfg.CA.GenerateKey(ctx, ks, purpose, alg, row.ID)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	tmpl, err := hierarchy.RootTemplate(subject, key.Public, r.now(), validity)
	if err != nil {
		return nil, r.abandon(ctx, err, key.URI)
	}
	if pathLenZero {
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	}
	der, warnings, err := r.cfg.CA.SelfSign(ctx, key.URI, purpose, tmpl)
	if err != nil {
		return nil, r.abandon(ctx, fmt.Errorf("sign %s: %w", row.ID, err), key.URI)
	}
	row.KeyURI = key.URI
	return r.pending(ctx, row, key, loc, der, warnings)
}

// BuildResult lists the CAs a build created.
type BuildResult struct {
	Created []*store.CA
}

// BuildHierarchy creates every CA that keyward.yaml declares for env and that does not exist yet, with new keys
// generated in ks (nil: the software keystore). Existing CAs are left alone, so it is safe to repeat after
// editing keyward.yaml. An environment with an offline root gets its CAs only through the ceremony.
func (r *RA) BuildHierarchy(ctx context.Context, p Principal, env string, ks keystore.Keystore) (*BuildResult, error) {
	if err := r.authorize(ctx, p, audit.ActionCACreate, env, "create CAs", RoleAdmin); err != nil {
		return nil, err
	}
	spec := r.Hierarchy().Environments[env]
	if spec == nil {
		return nil, FieldErrorf(KindBadRequest, "environment", "environment %q is not declared in keyward.yaml (declared: %v)", env, r.Hierarchy().EnvironmentNames())
	}
	res := &BuildResult{}
	if spec.Root.Offline {
		return res, errorf(KindBadRequest, "environment %q: %w; create its CAs with 'keyward ca ceremony root', 'keyward ca csr', 'keyward ca ceremony sign' and 'keyward ca import'", env, hierarchy.ErrOffline)
	}
	if _, err := r.cfg.Store.GetCA(ctx, hierarchy.RootID(env)); errors.Is(err, store.ErrNotFound) {
		alg, _ := keystore.ParseAlgorithm(spec.Root.Algorithm)
		pc, err := r.newRoot(ctx, &store.CA{ID: hierarchy.RootID(env), Environment: env, Kind: store.CAKindRoot}, ks, keystore.PurposeRootSigning, alg,
			r.subject(rootName(env)), time.Duration(spec.Root.Validity), false)
		if err != nil {
			return res, err
		}
		if err := r.tx(ctx, func(tx store.Tx) error { return r.recordCA(ctx, tx, p, pc) }); err != nil {
			return res, r.abandon(ctx, fmt.Errorf("record %s: %w", pc.row.ID, err), pc.key.URI)
		}
		res.Created = append(res.Created, pc.row)
	} else if err != nil {
		return res, wrap(KindUnavailable, err)
	}
	var root *ca.Issuer
	for _, pl := range r.Hierarchy().ProductLineNames(env) {
		id := hierarchy.IssuingID(env, pl)
		if _, err := r.cfg.Store.GetCA(ctx, id); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return res, wrap(KindUnavailable, err)
		}
		if root == nil {
			var err error
			if root, err = r.issuer(ctx, hierarchy.RootID(env)); err != nil {
				return res, err
			}
		}
		plSpec := r.Hierarchy().Environments[env].ProductLines[pl]
		alg, _ := keystore.ParseAlgorithm(plSpec.Algorithm)
		row, err := r.createSubordinate(ctx, p, subordinate{id: id, env: env, product: pl, kind: store.CAKindIssuing, parent: root,
			subject: hierarchy.IssuingSubject(env, pl), validity: time.Duration(plSpec.Validity), keys: ks, alg: alg})
		if err != nil {
			return res, err
		}
		res.Created = append(res.Created, row)
	}
	return res, nil
}

func (r *RA) subject(cn string) pkix.Name {
	return pkix.Name{Organization: []string{r.Hierarchy().Organization}, CommonName: cn}
}

// rootName is the subject common name of env's root.
func rootName(env string) string { return fmt.Sprintf("Keyward %s Root CA", env) }

// CreateServiceCA creates the data directory's TLS service CA: a self-signed CA, path length 0, whose key has
// purpose ca-signing and which signs only the server's own TLS certificates. It belongs to no device
// environment. Creating it twice is a KindConflict error.
func (r *RA) CreateServiceCA(ctx context.Context, p Principal, id string) (*store.CA, error) {
	pc, err := r.newRoot(ctx, &store.CA{ID: id, Environment: "service", Kind: store.CAKindService}, nil, keystore.PurposeCASigning, keystore.ECDSAP256,
		r.subject("Keyward service TLS CA"), 10*365*24*time.Hour, true)
	if err != nil {
		return nil, err
	}
	if err := r.tx(ctx, func(tx store.Tx) error { return r.recordCA(ctx, tx, p, pc) }); err != nil {
		return nil, r.abandon(ctx, wrap(KindConflict, fmt.Errorf("record %s: %w", id, err)), pc.key.URI)
	}
	return pc.row, nil
}

// CeremonyRoot creates env's root in a ceremony workspace (this RA's store and keystores are the workspace's),
// its key in ks, and records the command's transcript t. It returns the root and the log's new head.
func (r *RA) CeremonyRoot(ctx context.Context, p Principal, env string, ks keystore.Keystore, alg keystore.Algorithm, validity time.Duration, t *Transcript) (*store.CA, TranscriptHead, error) {
	ws, err := r.witnesses(ctx, env, t)
	if err != nil {
		r.refuse(ctx, p, audit.ActionCeremonyRoot, hierarchy.RootID(env), map[string]string{"command": t.Command}, err)
		return nil, TranscriptHead{}, err
	}
	t.Witnesses = ws
	if _, err := r.cfg.Store.GetCA(ctx, hierarchy.RootID(env)); err == nil {
		return nil, TranscriptHead{}, errorf(KindConflict, "ceremony workspace already holds a root for %q (a new root is made by 'keyward ca ceremony root-rollover')", env)
	}
	pc, err := r.newRoot(ctx, &store.CA{ID: hierarchy.RootID(env), Environment: env, Kind: store.CAKindRoot, Generation: 1}, ks, keystore.PurposeRootSigning, alg,
		r.subject(rootName(env)), validity, false)
	if err != nil {
		return nil, TranscriptHead{}, err
	}
	if t.Outputs == nil {
		t.Outputs = map[string][]byte{}
	}
	t.Outputs["root"] = pc.row.CertDER
	now := pc.row.CreatedAt
	if err := r.tx(ctx, func(tx store.Tx) error {
		if err := r.recordCA(ctx, tx, p, pc); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionCeremonyRoot, pc.row.ID, now, t.details(map[string]string{"key": pc.key.URI, "subject": pc.row.Subject}))
	}); err != nil {
		return nil, TranscriptHead{}, r.abandon(ctx, fmt.Errorf("record %s: %w", pc.row.ID, err), pc.key.URI)
	}
	h, err := r.head(ctx)
	return pc.row, h, err
}

func (r *RA) productSpec(env, product string) (*hierarchy.ProductLineSpec, error) {
	e := r.Hierarchy().Environments[env]
	if e == nil {
		return nil, FieldErrorf(KindBadRequest, "environment", "environment %q is not declared in keyward.yaml", env)
	}
	spec := e.ProductLines[product]
	if spec == nil {
		return nil, FieldErrorf(KindBadRequest, "product_line", "product line %q is not declared for environment %q (declared: %v)", product, env, r.Hierarchy().ProductLineNames(env))
	}
	return spec, nil
}

// pemCert encodes a DER certificate as PEM.
func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
