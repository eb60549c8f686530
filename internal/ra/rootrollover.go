package ra

// Root rollover. In a ceremony workspace, CeremonyRootRollover makes the next root of an environment: its key
// and self-signed certificate, the two link certificates of RFC 4210 section 4.4 (NewWithOld: the new key
// certified by the old root, so that a relying party that holds only the old root reaches CAs under the new;
// OldWithNew: the old key certified by the new root, the other way round), and a trust-anchor update
// (pkg/trust) listing both roots, signed by both, which devices apply to hold the new root. The old root is
// superseded: it signs no new CA, and keeps signing its CRLs for the CAs it certified until they expire.
//
// On the server the new root arrives with the first CA it certified: ImportCA accepts a root other than the
// recorded one only with the NewWithOld link certificate that the recorded root signed, records the new root as
// the environment's next root generation, and keeps the link certificates to serve beside the chains.

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/trust"
)

// CAKindLink is the kind of the CA rows that hold a root rollover's link certificates: never a signer, only
// served beside the chains.
const CAKindLink = "link"

// RootRollover is what a root rollover ceremony produces.
type RootRollover struct {
	Old, New   *store.CA
	NewWithOld []byte // DER: the new root's key certified by the old root
	OldWithNew []byte // DER: the old root's key certified by the new root
	// Update is the signed trust-anchor update (COSE_Sign), and Anchors the anchor set it installs.
	Update  []byte
	Anchors *trust.Anchors
}

// RootRolloverSpec describes the next root.
type RootRolloverSpec struct {
	Environment string
	Keys        keystore.Keystore // nil: the workspace's software keystore
	Algorithm   keystore.Algorithm
	Validity    time.Duration
	// UpdateValidity is how long devices may apply the trust-anchor update (default 2 years).
	UpdateValidity time.Duration
}

// CeremonyRootRollover makes env's next root in this ceremony workspace, with its link certificates and the
// trust-anchor update signed by the old and the new root, records the command's transcript t, and supersedes
// the old root.
func (r *RA) CeremonyRootRollover(ctx context.Context, p Principal, spec RootRolloverSpec, t *Transcript) (*RootRollover, TranscriptHead, error) {
	role := hierarchy.RootID(spec.Environment)
	fail := func(err error) (*RootRollover, TranscriptHead, error) {
		r.refuse(ctx, p, audit.ActionCeremonyRollover, role, map[string]string{"command": t.Command}, err)
		return nil, TranscriptHead{}, err
	}
	ws, err := r.witnesses(ctx, spec.Environment, t)
	if err != nil {
		return fail(err)
	}
	t.Witnesses = ws
	if spec.Validity <= 0 {
		return fail(FieldErrorf(KindBadRequest, "validity", "--validity %s: give the new root's lifetime", spec.Validity))
	}
	if spec.UpdateValidity == 0 {
		spec.UpdateValidity = 2 * 365 * 24 * time.Hour
	}
	if spec.UpdateValidity < 0 || spec.UpdateValidity > 10*365*24*time.Hour {
		return fail(FieldErrorf(KindBadRequest, "update_valid_for", "--update-valid-for %s: give a positive span of at most 10y", spec.UpdateValidity))
	}
	old, err := r.currentRoot(ctx, spec.Environment)
	if err != nil {
		return fail(err)
	}
	oldIss, err := r.issuer(ctx, old.ID)
	if err != nil {
		return fail(err)
	}
	oldCert := oldIss.Certificate()
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, TranscriptHead{}, wrap(KindUnavailable, err)
	}
	_, top := generations(cas, role)
	gen := top + 1
	alg := spec.Algorithm
	if alg == "" {
		if alg, err = keystore.AlgorithmOf(oldCert.PublicKey); err != nil {
			return fail(wrap(KindBadRequest, err))
		}
	}
	subject := r.subject(fmt.Sprintf("%s G%d", rootName(spec.Environment), gen))
	pc, err := r.newRoot(ctx, &store.CA{ID: GenerationID(role, gen), Environment: spec.Environment, Kind: store.CAKindRoot, Generation: gen},
		spec.Keys, keystore.PurposeRootSigning, alg, subject, spec.Validity, false)
	if err != nil {
		return nil, TranscriptHead{}, err
	}
	abandon := func(err error) (*RootRollover, TranscriptHead, error) {
		return nil, TranscriptHead{}, r.abandon(ctx, err, pc.key.URI)
	}
	now := r.now()
	// NewWithOld: the new key under the old root, as long as both live.
	nwo, err := r.linkCertificate(ctx, pc.cert, oldCert, old.KeyURI, now, minTime(pc.cert.NotAfter, oldCert.NotAfter))
	if err != nil {
		return abandon(fmt.Errorf("NewWithOld link certificate: %w", err))
	}
	// OldWithNew: the old key under the new root, for as long as the old root lives.
	own, err := r.linkCertificate(ctx, oldCert, pc.cert, pc.key.URI, now, minTime(pc.cert.NotAfter, oldCert.NotAfter))
	if err != nil {
		return abandon(fmt.Errorf("OldWithNew link certificate: %w", err))
	}
	anchors, err := trust.NewAnchors(spec.Environment, uint64(gen-1), oldCert, pc.cert)
	if err != nil {
		return abandon(wrap(KindInternal, err))
	}
	u := &trust.Update{Environment: spec.Environment, Version: uint64(gen - 1), Anchors: [][]byte{old.CertDER, pc.row.CertDER},
		NotBefore: now.Add(-time.Minute).Unix(), NotAfter: now.Add(spec.UpdateValidity).Unix(), IssuedAt: now.Unix()}
	signed, err := r.cfg.CA.SignAnchorUpdate(ctx, u, old.KeyURI, pc.key.URI)
	if err != nil {
		return abandon(signError(old.ID, fmt.Errorf("trust-anchor update: %w", err)))
	}
	// Check it as a device holding the old root will.
	held, err := trust.NewAnchors(spec.Environment, uint64(gen-2), oldCert)
	if err != nil {
		return abandon(wrap(KindInternal, err))
	}
	if _, err := held.Apply(signed, now); err != nil {
		return abandon(wrap(KindInternal, fmt.Errorf("the update just signed does not apply to a device holding %s: %w", old.ID, err)))
	}
	if t.Outputs == nil {
		t.Outputs = map[string][]byte{}
	}
	t.Outputs["root"], t.Outputs["new-with-old"], t.Outputs["old-with-new"], t.Outputs["update"] = pc.row.CertDER, nwo, own, signed
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := r.recordCA(ctx, tx, p, pc); err != nil {
			return err
		}
		if err := r.supersede(ctx, tx, p, old.ID, pc.row.ID, now); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionCeremonyRollover, pc.row.ID, now, t.details(map[string]string{"old_root": old.ID, "new_root": pc.row.ID,
			"trust_version": fmt.Sprint(u.Version), "update_not_after": time.Unix(u.NotAfter, 0).UTC().Format(time.RFC3339)}))
	})
	if err != nil {
		return abandon(fmt.Errorf("record %s: %w", pc.row.ID, err))
	}
	r.caChanged(ctx, old.ID)
	h, err := r.head(ctx)
	return &RootRollover{Old: old, New: pc.row, NewWithOld: nwo, OldWithNew: own, Update: signed, Anchors: anchors}, h, err
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// linkCertificate has the root whose certificate is signer (key at keyURI) certify subject's name and key: a CA
// certificate without a path length constraint, keyCertSign and cRLSign, through the linted path.
func (r *RA) linkCertificate(ctx context.Context, subject, signer *x509.Certificate, keyURI string, now, notAfter time.Time) ([]byte, error) {
	serial, err := issuer.NewSerial(now)
	if err != nil {
		return nil, err
	}
	ski, err := profile.SubjectKeyID(subject.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: subject.Subject, RawSubject: subject.RawSubject, NotBefore: now.Add(-time.Minute), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, SubjectKeyId: ski, AuthorityKeyId: signer.SubjectKeyId}
	return r.cfg.CA.IssueUnder(ctx, signer, keyURI, keystore.PurposeRootSigning, tmpl, subject.PublicKey)
}

// importRoot checks that the root given with an import is the one the environment's recorded root certified
// in a rollover: one of links must be that NewWithOld certificate. It returns the row of the new root (not
// recorded yet) and the link certificates to keep.
func (r *RA) importRoot(ctx context.Context, env string, cur *store.CA, rootCert *x509.Certificate, rootDER []byte, links [][]byte) (*store.CA, [][]byte, error) {
	if len(links) == 0 {
		return nil, nil, errorf(KindConflict, "environment %q has another root recorded (%s, %s): a new root is accepted only with the NewWithOld link certificate of its rollover ceremony (--link)",
			env, cur.ID, cur.Subject)
	}
	curCert, err := x509.ParseCertificate(cur.CertDER)
	if err != nil {
		return nil, nil, wrap(KindInternal, err)
	}
	var keep [][]byte
	linked := false
	for _, der := range links {
		l, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, errorf(KindBadRequest, "parse link certificate: %w", err)
		}
		switch {
		case bytes.Equal(l.RawSubjectPublicKeyInfo, rootCert.RawSubjectPublicKeyInfo) && bytes.Equal(l.RawSubject, rootCert.RawSubject):
			if err := l.CheckSignatureFrom(curCert); err != nil {
				return nil, nil, errorf(KindBadRequest, "the NewWithOld link certificate is not signed by the recorded root %s: %w", cur.ID, err)
			}
			linked = true
		case bytes.Equal(l.RawSubjectPublicKeyInfo, curCert.RawSubjectPublicKeyInfo) && bytes.Equal(l.RawSubject, curCert.RawSubject):
			if err := l.CheckSignatureFrom(rootCert); err != nil {
				return nil, nil, errorf(KindBadRequest, "the OldWithNew link certificate is not signed by the new root: %w", err)
			}
		default:
			return nil, nil, errorf(KindBadRequest, "certificate %q is not a link certificate between %s and the new root", l.Subject.CommonName, cur.ID)
		}
		keep = append(keep, der)
	}
	if !linked {
		return nil, nil, errorf(KindBadRequest, "no link certificate by which the recorded root %s certifies the new root's key: give the NewWithOld certificate of the rollover ceremony", cur.ID)
	}
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, nil, wrap(KindUnavailable, err)
	}
	_, top := generations(cas, hierarchy.RootID(env))
	gen := top + 1
	return &store.CA{ID: GenerationID(hierarchy.RootID(env), gen), Environment: env, Kind: store.CAKindRoot, CertDER: rootDER, Subject: rootCert.Subject.String(),
		NotBefore: rootCert.NotBefore, NotAfter: rootCert.NotAfter, Status: store.CAStatusActive, Generation: gen}, keep, nil
}

// recordRoot records, in tx, a root that arrived with an import: the row, the link certificates beside it, and
// the superseding of the root it replaces.
func (r *RA) recordRoot(ctx context.Context, tx store.Tx, p Principal, root, replaces *store.CA, links [][]byte, at time.Time) error {
	root.CreatedAt = at
	if err := tx.InsertCA(ctx, root); err != nil {
		return err
	}
	rc, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return err
	}
	d := map[string]string{"kind": store.CAKindRoot, "key": "offline", "serial": SerialString(rc), "generation": fmt.Sprint(root.Generation)}
	if replaces != nil {
		d["replaces"] = replaces.ID
	}
	if err := r.success(ctx, tx, p, audit.ActionCAImport, root.ID, at, d); err != nil {
		return err
	}
	for i, der := range links {
		lc, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		parent := root.ID
		if replaces != nil && lc.CheckSignatureFrom(mustParse(replaces.CertDER)) == nil {
			parent = replaces.ID
		}
		row := &store.CA{ID: fmt.Sprintf("%s/link-%d", root.ID, i+1), Environment: root.Environment, Kind: CAKindLink, ParentID: parent, CertDER: der,
			Subject: lc.Subject.String(), NotBefore: lc.NotBefore, NotAfter: lc.NotAfter, Status: store.CAStatusActive, CreatedAt: at, Generation: root.Generation}
		if err := tx.InsertCA(ctx, row); err != nil {
			return err
		}
	}
	if replaces == nil {
		return nil
	}
	return r.supersede(ctx, tx, p, replaces.ID, root.ID, at)
}

func mustParse(der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return &x509.Certificate{}
	}
	return c
}

// links returns the link certificates of env's root rollovers that have not expired.
func (r *RA) links(ctx context.Context, env string) ([][]byte, error) {
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	now := r.now()
	var out [][]byte
	for _, c := range cas {
		if c.Kind == CAKindLink && c.Environment == env && c.NotAfter.After(now) {
			out = append(out, c.CertDER)
		}
	}
	return out, nil
}
