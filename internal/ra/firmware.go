package ra

// Firmware signing (docs/firmware-manifest.md): per environment a firmware root (ECDSA P-256, X.509) and an
// ML-DSA-65 root beside it, firmware-signing keys they certify, and releases that go from draft through m-of-n
// approval by distinct release signers to a signed manifest (pkg/firmware/manifest for the format,
// pkg/firmware/verify for what devices check). Rotation and compromise recovery publish signed, versioned trust
// updates in the way TUF rotates its root. The RA decides and records; the custodian (internal/ca) generates
// every key and makes every signature.
//
// A release of environment E is signed only with E's keys: keys are looked up by environment, and every
// manifest is verified against E's own trust before it is stored, so a production release can never carry a
// dev or staging signature.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"filippo.io/mldsa"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/firmware/manifest"
	"github.com/keyward/keyward/pkg/firmware/verify"
)

// Firmware refusals a caller tells apart with errors.Is; the faces map only their kinds.
var (
	// ErrNoFirmwarePolicy: the product line has no firmware policy in keyward.yaml, or is not declared in the
	// environment.
	ErrNoFirmwarePolicy = Sentinel(KindBadRequest, "no firmware release policy")
	// ErrNotReleaseSigner: the approver is not one of the product line's release signers, or a release signer
	// tried to approve in another's name.
	ErrNotReleaseSigner = Sentinel(KindForbidden, "not a release signer of this product line")
	// ErrAlreadyApproved: this signer approved the release already; m-of-n counts distinct signers.
	ErrAlreadyApproved = Sentinel(KindConflict, "release already approved by this signer")
	// ErrThresholdNotMet: the release lacks the approvals its policy requires.
	ErrThresholdNotMet = Sentinel(KindConflict, "release approval threshold not met")
	// ErrReleaseSigned: the release is signed already and can no longer be approved.
	ErrReleaseSigned = Sentinel(KindConflict, "release already signed")
	// ErrNoFirmwareTrust: the environment has no firmware root yet, or no active firmware-signing key.
	ErrNoFirmwareTrust = Sentinel(KindNotFound, "no firmware root for this environment")
)

const (
	firmwareRootValidity    = 25 * 365 * 24 * time.Hour
	firmwareSigningValidity = 10 * 365 * 24 * time.Hour
	defaultManifestWindow   = 365 * 24 * time.Hour
)

// sentinelf returns an error of sentinel's kind about request field field ("" for none): the formatted text,
// then the sentinel's, so that errors.Is finds the sentinel and the caller reads which input broke which rule.
func sentinelf(sentinel *Error, field, format string, args ...any) error {
	return &Error{Kind: sentinel.Kind, Field: field, Err: fmt.Errorf(format+": %w", append(args, sentinel)...)}
}

func firmwareTrustSubject(env string, version int64) string {
	return fmt.Sprintf("%s/firmware/v%d", env, version)
}

// firmwarePolicy returns the firmware policy of (env, product).
func (r *RA) firmwarePolicy(env, product string) (*hierarchy.FirmwarePolicy, error) {
	e := r.Hierarchy().Environments[env]
	if e == nil {
		return nil, sentinelf(ErrNoFirmwarePolicy, "environment", "environment %q is not declared in keyward.yaml (declared: %v)", env, r.Hierarchy().EnvironmentNames())
	}
	pl := e.ProductLines[product]
	if pl == nil {
		return nil, sentinelf(ErrNoFirmwarePolicy, "product_line", "product line %q is not declared in environment %s (declared: %v)", product, env, r.Hierarchy().ProductLineNames(env))
	}
	if pl.Firmware == nil {
		return nil, sentinelf(ErrNoFirmwarePolicy, "product_line", "product line %s/%s has no firmware policy: add 'firmware: {threshold: 2, signers: [...]}' to it in keyward.yaml", env, product)
	}
	return pl.Firmware, nil
}

// firmwareKey is a key generated for a firmware change: recorded in the key glossary with that change, or
// abandoned if the change fails.
type firmwareKey struct {
	key   keystore.Key
	loc   keystore.Location
	owner string
}

func keyURIs(keys []firmwareKey) []string {
	uris := make([]string, len(keys))
	for i, k := range keys {
		uris[i] = k.key.URI
	}
	return uris
}

// generateFirmwareKey generates a key of purpose p in ks (nil: the software keystore, the only one with
// ML-DSA), labelled, and owned in the glossary, by label.
func (r *RA) generateFirmwareKey(ctx context.Context, ks keystore.Keystore, p keystore.Purpose, alg keystore.Algorithm, label string) (firmwareKey, error) {
	k, loc, err := r.cfg.CA.GenerateKey(ctx, ks, p, alg, label)
	if err != nil {
		return firmwareKey{}, wrap(KindUnavailable, err)
	}
	return firmwareKey{key: k, loc: loc, owner: label}, nil
}

// firmwareRoots is one trust version's roots.
type firmwareRoots struct {
	cert     *x509.Certificate
	keyURI   string
	pqKeyURI string
	pqPublic []byte // FIPS 204 encoding
}

// newFirmwareRoots generates and self-signs version's firmware root in ks and generates the ML-DSA-65 root. On
// failure it returns the keys generated so far, for the caller to abandon with its own.
func (r *RA) newFirmwareRoots(ctx context.Context, env string, ks keystore.Keystore, version int64) (*firmwareRoots, []firmwareKey, error) {
	label := fmt.Sprintf("%s/firmware-root/v%d", env, version)
	// P-256, not P-384: every device verifies the root's signature on the signing certificate at every update,
	// and P-256 is what implant-class secure elements accelerate; in Go it verifies about 10 times faster
	// (keyward bench firmware: manifest verification fell from about 1.6 ms to a few hundred µs).
	rk, err := r.generateFirmwareKey(ctx, ks, keystore.PurposeRootSigning, keystore.ECDSAP256, label)
	if err != nil {
		return nil, nil, err
	}
	gen := []firmwareKey{rk}
	tmpl, err := hierarchy.RootTemplate(r.subject(fmt.Sprintf("Keyward %s Firmware Root v%d", env, version)), rk.key.Public, r.now(), firmwareRootValidity)
	if err != nil {
		return nil, gen, err
	}
	tmpl.KeyUsage = x509.KeyUsageCertSign // it certifies firmware-signing keys and nothing else: no CRLs
	der, _, err := r.cfg.CA.SelfSign(ctx, rk.key.URI, keystore.PurposeRootSigning, tmpl)
	if err != nil {
		return nil, gen, fmt.Errorf("sign firmware root %s: %w", label, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, gen, err
	}
	pk, err := r.generateFirmwareKey(ctx, nil, keystore.PurposeRootSigning, keystore.MLDSA65, label+"/ml-dsa-65")
	if err != nil {
		return nil, gen, err
	}
	gen = append(gen, pk)
	pqPub, ok := pk.key.Public.(*mldsa.PublicKey)
	if !ok {
		return nil, gen, fmt.Errorf("ML-DSA-65 firmware root %s: public key is %T", label, pk.key.Public)
	}
	return &firmwareRoots{cert: cert, keyURI: rk.key.URI, pqKeyURI: pk.key.URI, pqPublic: pqPub.Bytes()}, gen, nil
}

// newFirmwareSigningKeys generates an ECDSA P-256 firmware-signing key in ks and an ML-DSA-65 one in the
// software keystore, and has roots certify them. On failure it returns the keys generated so far.
func (r *RA) newFirmwareSigningKeys(ctx context.Context, env string, ks keystore.Keystore, roots *firmwareRoots, version int64) ([]*store.FirmwareSigningKey, []firmwareKey, error) {
	now := r.now()
	label := fmt.Sprintf("%s/firmware-signing/v%d", env, version)
	ek, err := r.generateFirmwareKey(ctx, ks, keystore.PurposeFirmwareSigning, keystore.ECDSAP256, label)
	if err != nil {
		return nil, nil, err
	}
	gen := []firmwareKey{ek}
	serial, err := issuer.NewSerial(now)
	if err != nil {
		return nil, gen, err
	}
	notAfter := now.Add(firmwareSigningValidity)
	if notAfter.After(roots.cert.NotAfter) {
		notAfter = roots.cert.NotAfter
	}
	// A compact end-entity certificate: it travels in every manifest (x5chain). Code signing is the only use
	// (RFC 5280 4.2.1.12), and verifiers require that EKU.
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: fmt.Sprintf("%s fw v%d", env, version)},
		NotBefore: now.Add(-time.Minute), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
	}
	der, err := r.cfg.CA.IssueUnder(ctx, roots.cert, roots.keyURI, keystore.PurposeRootSigning, tmpl, ek.key.Public)
	if err != nil {
		return nil, gen, fmt.Errorf("certify firmware-signing key %s: %w", label, err)
	}
	pk, err := r.generateFirmwareKey(ctx, nil, keystore.PurposeFirmwareSigning, keystore.MLDSA65, label+"/ml-dsa-65")
	if err != nil {
		return nil, gen, err
	}
	gen = append(gen, pk)
	pqPub, ok := pk.key.Public.(*mldsa.PublicKey)
	if !ok {
		return nil, gen, fmt.Errorf("ML-DSA-65 firmware-signing key %s: public key is %T", label, pk.key.Public)
	}
	kc, err := r.cfg.CA.SignPQKeyCert(ctx, roots.pqKeyURI, &manifest.PQKeyCert{Environment: env, PublicKey: pqPub.Bytes(),
		NotBefore: now.Add(-time.Minute).Unix(), NotAfter: notAfter.Unix()})
	if err != nil {
		return nil, gen, fmt.Errorf("certify ML-DSA-65 firmware-signing key %s: %w", label, err)
	}
	ekid, err := manifest.KeyID(ek.key.Public)
	if err != nil {
		return nil, gen, err
	}
	pkid, err := manifest.KeyID(pqPub)
	if err != nil {
		return nil, gen, err
	}
	keys := []*store.FirmwareSigningKey{
		{KID: ekid, Environment: env, Algorithm: string(keystore.ECDSAP256), KeyURI: ek.key.URI, Cert: der, RootVersion: version, Status: store.FirmwareKeyActive, CreatedAt: now},
		{KID: pkid, Environment: env, Algorithm: string(keystore.MLDSA65), KeyURI: pk.key.URI, Cert: kc, RootVersion: version, Status: store.FirmwareKeyActive, CreatedAt: now},
	}
	return keys, gen, nil
}

// recordFirmwareKeys adds generated keys to the key glossary with their key.generate events.
func (r *RA) recordFirmwareKeys(ctx context.Context, tx store.Tx, p Principal, keys []firmwareKey, at time.Time) error {
	for _, k := range keys {
		// The manifest key id is the SHA-256 of the SubjectPublicKeyInfo for ECDSA, as for every glossary row;
		// an ML-DSA key, which crypto/x509 cannot encode, is hashed over its FIPS 204 encoding instead.
		spki, err := manifest.KeyID(k.key.Public)
		if err != nil {
			return err
		}
		if err := r.recordKey(ctx, tx, p, k.key, k.loc, k.owner, store.KeyActive, spki, at); err != nil {
			return err
		}
	}
	return nil
}

// recordFirmwareVersion stores a trust version with its new keys in tx.
func (r *RA) recordFirmwareVersion(ctx context.Context, tx store.Tx, p Principal, fr *store.FirmwareRoot, gen []firmwareKey, keys []*store.FirmwareSigningKey, at time.Time) error {
	if err := r.recordFirmwareKeys(ctx, tx, p, gen, at); err != nil {
		return err
	}
	if err := tx.InsertFirmwareRoot(ctx, fr); err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.InsertFirmwareSigningKey(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// InitFirmware creates env's firmware trust version 1 for p: the firmware root in ks (ECDSA P-256), the
// ML-DSA-65 root and ML-DSA signing key in the software keystore, and an ECDSA P-256 firmware-signing key in
// ks. An environment that has a firmware root already is a KindConflict error wrapping store.ErrExists.
func (r *RA) InitFirmware(ctx context.Context, p Principal, env string, ks keystore.Keystore) (*store.FirmwareRoot, error) {
	if err := r.authorize(ctx, p, audit.ActionFirmwareTrustCreate, firmwareTrustSubject(env, 1), "create firmware trust", RoleAdmin); err != nil {
		return nil, err
	}
	return r.initFirmware(ctx, p, env, ks)
}

func (r *RA) initFirmware(ctx context.Context, p Principal, env string, ks keystore.Keystore) (*store.FirmwareRoot, error) {
	if r.Hierarchy().Environments[env] == nil {
		return nil, FieldErrorf(KindBadRequest, "environment", "environment %q is not declared in keyward.yaml (declared: %v)", env, r.Hierarchy().EnvironmentNames())
	}
	if cur, err := r.latestFirmware(ctx, env); err == nil {
		return nil, errorf(KindConflict, "firmware root of %s (trust version %d): %w; replace it by rotating to a new root instead", env, cur.Version, store.ErrExists)
	} else if !errors.Is(err, ErrNoFirmwareTrust) {
		return nil, err
	}
	roots, gen, err := r.newFirmwareRoots(ctx, env, ks, 1)
	if err != nil {
		return nil, r.abandon(ctx, err, keyURIs(gen)...)
	}
	keys, gen2, err := r.newFirmwareSigningKeys(ctx, env, ks, roots, 1)
	gen = append(gen, gen2...)
	if err != nil {
		return nil, r.abandon(ctx, err, keyURIs(gen)...)
	}
	now := r.now()
	fr := &store.FirmwareRoot{Environment: env, Version: 1, KeyURI: roots.keyURI, CertDER: roots.cert.Raw, PQKeyURI: roots.pqKeyURI,
		PQPublic: roots.pqPublic, CreatedAt: now}
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := r.recordFirmwareVersion(ctx, tx, p, fr, gen, keys, now); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionFirmwareTrustCreate, firmwareTrustSubject(env, 1), now,
			map[string]string{"root_key": roots.keyURI, "pq_root_key": roots.pqKeyURI, "signing_key": hex.EncodeToString(keys[0].KID), "pq_signing_key": hex.EncodeToString(keys[1].KID)})
	})
	if err != nil {
		return nil, r.abandon(ctx, fmt.Errorf("record firmware root of %s: %w", env, err), keyURIs(gen)...)
	}
	return fr, nil
}

// EnsureFirmware returns env's current trust version, creating version 1 with software keys for p if env has
// none and its CA root is online (dev, staging). A production firmware root is created only explicitly, by
// InitFirmware with its keys in an HSM.
func (r *RA) EnsureFirmware(ctx context.Context, p Principal, env string) (*store.FirmwareRoot, error) {
	if err := r.authorize(ctx, p, audit.ActionFirmwareTrustCreate, firmwareTrustSubject(env, 1), "create firmware trust", RoleAdmin, RoleReleaseSigner); err != nil {
		return nil, err
	}
	return r.ensureFirmware(ctx, p, env)
}

func (r *RA) ensureFirmware(ctx context.Context, p Principal, env string) (*store.FirmwareRoot, error) {
	fr, err := r.latestFirmware(ctx, env)
	if !errors.Is(err, ErrNoFirmwareTrust) {
		return fr, err
	}
	if e := r.Hierarchy().Environments[env]; e == nil || e.Root.Offline || env == "production" {
		return nil, err
	}
	return r.initFirmware(ctx, p, env, nil)
}

func noFirmwareTrust(env string) error {
	return sentinelf(ErrNoFirmwareTrust, "environment", "environment %s has no firmware trust yet; an administrator creates it with 'keyward firmware init'", env)
}

func (r *RA) latestFirmware(ctx context.Context, env string) (*store.FirmwareRoot, error) {
	rs, err := r.cfg.Store.FirmwareRoots(ctx, env)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if len(rs) == 0 {
		return nil, noFirmwareTrust(env)
	}
	return rs[len(rs)-1], nil
}

// FirmwareTrustOf builds the verifier's view of a stored trust version.
func FirmwareTrustOf(fr *store.FirmwareRoot) (*verify.Trust, error) {
	cert, err := x509.ParseCertificate(fr.CertDER)
	if err != nil {
		return nil, fmt.Errorf("firmware root %s v%d: %w", fr.Environment, fr.Version, err)
	}
	pq, err := mldsa.NewPublicKey(mldsa.MLDSA65(), fr.PQPublic)
	if err != nil {
		return nil, fmt.Errorf("ML-DSA firmware root %s v%d: %w", fr.Environment, fr.Version, err)
	}
	return verify.NewTrust(fr.Environment, uint64(fr.Version), cert, pq, fr.Revoked)
}

// FirmwareTrust returns env's current trust (what a new device pins) and every trust update (versions 2 and up,
// in order) that moves an older device to it. Trust is public: anyone may read it.
func (r *RA) FirmwareTrust(ctx context.Context, env string) (*verify.Trust, [][]byte, error) {
	rs, err := r.cfg.Store.FirmwareRoots(ctx, env)
	if err != nil {
		return nil, nil, wrap(KindUnavailable, err)
	}
	if len(rs) == 0 {
		return nil, nil, noFirmwareTrust(env)
	}
	t, err := FirmwareTrustOf(rs[len(rs)-1])
	if err != nil {
		return nil, nil, err
	}
	var updates [][]byte
	for _, fr := range rs[1:] {
		updates = append(updates, fr.Update)
	}
	return t, updates, nil
}

// FirmwareReleaseRequest describes a new release.
type FirmwareReleaseRequest struct {
	Environment   string
	ProductLine   string
	Version       string // semantic version
	MinBootloader string // semantic version, or ""
	Image         io.Reader
}

// CreateRelease hashes the image (streamed once through SHA-256) and records a draft release, created by p,
// with the next sequence number of its product line.
func (r *RA) CreateRelease(ctx context.Context, p Principal, req FirmwareReleaseRequest) (*store.FirmwareRelease, error) {
	if err := r.authorize(ctx, p, audit.ActionFirmwareReleaseCreate, req.Environment+"/"+req.ProductLine, "create firmware releases", RoleAdmin, RoleReleaseSigner); err != nil {
		return nil, err
	}
	pol, err := r.firmwarePolicy(req.Environment, req.ProductLine)
	if err != nil {
		return nil, err
	}
	if !manifest.ValidVersion(req.Version) {
		return nil, FieldErrorf(KindBadRequest, "version", "version %q is not a semantic version such as 1.4.2 (semver.org 2.0.0)", req.Version)
	}
	if req.MinBootloader != "" && !manifest.ValidVersion(req.MinBootloader) {
		return nil, FieldErrorf(KindBadRequest, "min_bootloader", "minimum bootloader version %q is not a semantic version", req.MinBootloader)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, req.Image, make([]byte, 256<<10))
	if err != nil {
		return nil, fmt.Errorf("read image: %w", err)
	}
	if n == 0 {
		return nil, FieldErrorf(KindBadRequest, "image", "image is empty")
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	now := r.now()
	rel := &store.FirmwareRelease{ID: "fw-" + hex.EncodeToString(id), Environment: req.Environment, ProductLine: req.ProductLine,
		Version: req.Version, ImageSHA256: h.Sum(nil), ImageSize: n, MinBootloader: req.MinBootloader, Threshold: pol.Threshold,
		Hybrid: pol.Hybrid, Status: store.FirmwareDraft, CreatedBy: p.ID, CreatedAt: now}
	err = r.tx(ctx, func(tx store.Tx) error {
		seq, err := tx.NextFirmwareSequence(ctx, rel.Environment, rel.ProductLine)
		if err != nil {
			return err
		}
		rel.Sequence = seq
		if err := tx.InsertFirmwareRelease(ctx, rel); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionFirmwareReleaseCreate, rel.ID, now,
			map[string]string{"environment": rel.Environment, "product_line": rel.ProductLine, "version": rel.Version,
				"sequence": strconv.FormatInt(rel.Sequence, 10), "image_sha256": hex.EncodeToString(rel.ImageSHA256), "image_size": strconv.FormatInt(n, 10),
				"threshold": fmt.Sprintf("%d of %d", pol.Threshold, len(pol.Signers)), "hybrid": strconv.FormatBool(pol.Hybrid)})
	})
	if errors.Is(err, store.ErrExists) {
		return nil, errorf(KindConflict, "%s/%s already has a release with version %s (or sequence %d was taken concurrently; retry): %w", rel.Environment, rel.ProductLine, rel.Version, rel.Sequence, err)
	}
	if err != nil {
		return nil, err
	}
	return rel, nil
}

// getRelease reads release id.
func (r *RA) getRelease(ctx context.Context, id string) (*store.FirmwareRelease, error) {
	rel, err := r.cfg.Store.GetFirmwareRelease(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(KindNotFound, "no firmware release %q: %w", id, err)
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	return rel, nil
}

// approver returns the release signer p approves as. An approval proves the approver: only a principal
// authenticated by a release signer's own operator token approves, and only in that token's name, over the API
// (the bearer token) and in local CLI mode alike (the token read from --token-file and checked against the
// store, AuthenticateToken). Two-person control then holds between credentials, not between names typed: one
// person holding one token cannot approve twice, and an administrator (which the local CLI acts as) cannot
// approve in anyone's name. as, if given, must be the token's name.
func approver(p Principal, as string) (string, error) {
	name, ok := strings.CutPrefix(p.ID, operatorPrefix)
	if p.Role != RoleReleaseSigner || !ok || name == "" {
		who := "a release signer"
		if as != "" {
			who = fmt.Sprintf("release signer %q", as)
		}
		return "", sentinelf(ErrNotReleaseSigner, "token_file", "%s is not authenticated as a release signer: an approval is proven by %s's own operator token (the API's bearer token; in local CLI mode --token-file)", p.ID, who)
	}
	if as != "" && as != name {
		return "", sentinelf(ErrNotReleaseSigner, "as", "the token presented is release signer %q's; it approves in %q's name only, not as %q", name, name, as)
	}
	return name, nil
}

// ApproveRelease records an approval of release id for p (see approver for whose) and returns the release and
// its approvals. The release becomes approved when its threshold of distinct signers is reached. An approver who
// is not a release signer of the product line, a second approval by the same signer and an approval of a
// signed release are refused, audited.
func (r *RA) ApproveRelease(ctx context.Context, p Principal, id, as string) (*store.FirmwareRelease, []*store.FirmwareApproval, error) {
	signer, err := approver(p, as)
	if err != nil {
		r.refuse(ctx, p, audit.ActionFirmwareApprove, id, map[string]string{"signer": as}, err)
		return nil, nil, err
	}
	rel, err := r.getRelease(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	pol, err := r.firmwarePolicy(rel.Environment, rel.ProductLine)
	if err != nil {
		return nil, nil, err
	}
	if !slices.Contains(pol.Signers, signer) {
		err := sentinelf(ErrNotReleaseSigner, "", "%q is not a release signer of %s/%s (signers: %v)", signer, rel.Environment, rel.ProductLine, pol.Signers)
		r.refuse(ctx, p, audit.ActionFirmwareApprove, id, map[string]string{"signer": signer}, err)
		return nil, nil, err
	}
	var approvals []*store.FirmwareApproval
	err = r.tx(ctx, func(tx store.Tx) error {
		cur, err := tx.GetFirmwareRelease(ctx, id)
		if err != nil {
			return err
		}
		if cur.Status == store.FirmwareSigned {
			return sentinelf(ErrReleaseSigned, "", "release %s was signed at %s", id, cur.SignedAt.Format(time.RFC3339))
		}
		now := r.now()
		if err := tx.InsertFirmwareApproval(ctx, &store.FirmwareApproval{ReleaseID: id, Signer: signer, ApprovedAt: now}); err != nil {
			if errors.Is(err, store.ErrExists) {
				return sentinelf(ErrAlreadyApproved, "", "%q approved release %s already; another of %v must approve", signer, id, pol.Signers)
			}
			return err
		}
		if approvals, err = tx.FirmwareApprovals(ctx, id); err != nil {
			return err
		}
		if len(approvals) >= cur.Threshold && cur.Status == store.FirmwareDraft {
			cur.Status = store.FirmwareApproved
			if err := tx.UpdateFirmwareRelease(ctx, cur); err != nil {
				return err
			}
		}
		rel = cur
		return r.success(ctx, tx, p, audit.ActionFirmwareApprove, id, now,
			map[string]string{"signer": signer, "approvals": fmt.Sprintf("%d of %d required", len(approvals), cur.Threshold), "status": cur.Status})
	})
	if errors.Is(err, ErrAlreadyApproved) || errors.Is(err, ErrReleaseSigned) {
		r.refuse(ctx, p, audit.ActionFirmwareApprove, id, map[string]string{"signer": signer}, err)
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, err
	}
	return rel, approvals, nil
}

// SignRelease signs release id for p once its threshold is met, stores the manifest and returns it; signing a
// signed release returns the stored manifest. The manifest is signed with the release environment's active
// keys only and verified against that environment's trust before it is stored. A dev or staging environment
// without firmware trust gets it here (EnsureFirmware).
func (r *RA) SignRelease(ctx context.Context, p Principal, id string) ([]byte, error) {
	if err := r.authorize(ctx, p, audit.ActionFirmwareSign, id, "sign firmware releases", RoleAdmin, RoleReleaseSigner); err != nil {
		return nil, err
	}
	rel, err := r.getRelease(ctx, id)
	if err != nil {
		return nil, err
	}
	if rel.Status == store.FirmwareSigned {
		return rel.Manifest, nil
	}
	approvals, err := r.cfg.Store.FirmwareApprovals(ctx, id)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if len(approvals) < rel.Threshold {
		err := sentinelf(ErrThresholdNotMet, "", "release %s has %d of the %d approvals its policy requires; %d more release signers of %s/%s must approve it",
			id, len(approvals), rel.Threshold, rel.Threshold-len(approvals), rel.Environment, rel.ProductLine)
		r.refuse(ctx, p, audit.ActionFirmwareSign, id, nil, err)
		return nil, err
	}
	pol, err := r.firmwarePolicy(rel.Environment, rel.ProductLine)
	if err != nil {
		return nil, err
	}
	fr, err := r.ensureFirmware(ctx, p, rel.Environment)
	if err != nil {
		return nil, err
	}
	trust, err := FirmwareTrustOf(fr)
	if err != nil {
		return nil, err
	}
	ek, pk, err := r.activeFirmwareKeys(ctx, rel.Environment, rel.Hybrid)
	if err != nil {
		return nil, err
	}
	now := r.now().Truncate(time.Second)
	window := time.Duration(pol.Validity)
	if window <= 0 {
		window = defaultManifestWindow
	}
	m := &manifest.Manifest{DeviceClass: rel.ProductLine, Sequence: uint64(rel.Sequence), Version: rel.Version, ImageSize: uint64(rel.ImageSize),
		MinBootloader: rel.MinBootloader, NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(window), SignerKID: ek.KID}
	copy(m.ImageSHA256[:], rel.ImageSHA256)
	var pq *ca.FirmwareKey
	if pk != nil {
		m.PQSignerKID = pk.KID
		pq = &ca.FirmwareKey{KeyURI: pk.KeyURI, Cert: pk.Cert}
	}
	payload, err := manifest.Marshal(m)
	if err != nil {
		return nil, err
	}
	signed, err := r.cfg.CA.SignManifest(ctx, payload, ca.FirmwareKey{KeyURI: ek.KeyURI, Cert: ek.Cert}, pq)
	if err != nil {
		return nil, fmt.Errorf("sign release %s: %w", id, err)
	}
	// Check the signature as a device of this environment will, before anything is stored or returned: a key of
	// another environment, a revoked key or a faulty HSM signature stops here.
	if _, err := verify.Manifest(signed, trust, verify.Options{DeviceClass: rel.ProductLine, InstalledSequence: uint64(rel.Sequence) - 1, Now: now, RequireHybrid: rel.Hybrid}); err != nil {
		return nil, fmt.Errorf("release %s: the new manifest fails verification against %s trust version %d: %w", id, rel.Environment, fr.Version, err)
	}
	err = r.tx(ctx, func(tx store.Tx) error {
		cur, err := tx.GetFirmwareRelease(ctx, id)
		if err != nil {
			return err
		}
		if cur.Status == store.FirmwareSigned {
			signed = cur.Manifest // signed concurrently; keep the first
			return nil
		}
		as, err := tx.FirmwareApprovals(ctx, id)
		if err != nil {
			return err
		}
		if len(as) < cur.Threshold {
			return sentinelf(ErrThresholdNotMet, "", "release %s: %d of %d approvals", id, len(as), cur.Threshold)
		}
		signers := make([]string, len(as))
		for i, a := range as {
			signers[i] = a.Signer
		}
		cur.Status, cur.Manifest, cur.SignerKID, cur.SignedAt = store.FirmwareSigned, signed, ek.KID, &now
		if err := tx.UpdateFirmwareRelease(ctx, cur); err != nil {
			return err
		}
		d := map[string]string{"environment": cur.Environment, "product_line": cur.ProductLine, "version": cur.Version,
			"sequence": strconv.FormatInt(cur.Sequence, 10), "signing_key": hex.EncodeToString(ek.KID), "trust_version": strconv.FormatInt(fr.Version, 10),
			"approved_by": strings.Join(signers, ","), "manifest_sha256": fmt.Sprintf("%x", sha256.Sum256(signed)), "manifest_bytes": strconv.Itoa(len(signed))}
		if pk != nil {
			d["pq_signing_key"] = hex.EncodeToString(pk.KID)
		}
		return r.success(ctx, tx, p, audit.ActionFirmwareSign, id, now, d)
	})
	if err != nil {
		return nil, err
	}
	return signed, nil
}

// activeFirmwareKeys returns env's active ECDSA firmware-signing key, and its ML-DSA-65 one if hybrid. Keys are
// selected by environment only: no other environment's key is ever considered.
func (r *RA) activeFirmwareKeys(ctx context.Context, env string, hybrid bool) (ecdsaKey, pqKey *store.FirmwareSigningKey, err error) {
	keys, err := r.cfg.Store.FirmwareSigningKeys(ctx, env)
	if err != nil {
		return nil, nil, wrap(KindUnavailable, err)
	}
	for _, k := range keys {
		if k.Environment != env || k.Status != store.FirmwareKeyActive {
			continue
		}
		switch keystore.Algorithm(k.Algorithm) {
		case keystore.MLDSA65:
			pqKey = k
		default:
			ecdsaKey = k
		}
	}
	if ecdsaKey == nil || (hybrid && pqKey == nil) {
		return nil, nil, sentinelf(ErrNoFirmwareTrust, "environment", "environment %s has no active firmware-signing key; rotate its firmware keys", env)
	}
	if !hybrid {
		pqKey = nil
	}
	return ecdsaKey, pqKey, nil
}

// FirmwareRotation describes a rotation of an environment's firmware signing keys.
type FirmwareRotation struct {
	Environment string
	// NewRoot also replaces the firmware roots (ECDSA and ML-DSA); the update is signed by the old and new ones.
	NewRoot bool
	// Compromised revokes the current signing keys: listed in the new trust version, manifests they signed
	// are refused by updated devices whatever their sequence. Otherwise they are retired and stay valid.
	Compromised bool
	// Keystore generates the new ECDSA keys (nil: the software keystore).
	Keystore keystore.Keystore
}

// RotateFirmware makes new firmware-signing keys (and roots, if asked) for p, publishes trust version N+1 as a
// signed update and returns it. The update is checked as a device at version N would check it before it is
// stored; the replaced signing keys are retired (or revoked) in the same transaction.
func (r *RA) RotateFirmware(ctx context.Context, p Principal, req FirmwareRotation) (*store.FirmwareRoot, error) {
	if err := r.authorize(ctx, p, audit.ActionFirmwareTrustUpdate, req.Environment, "rotate firmware keys", RoleAdmin); err != nil {
		return nil, err
	}
	env := req.Environment
	prev, err := r.latestFirmware(ctx, env)
	if err != nil {
		return nil, err
	}
	prevTrust, err := FirmwareTrustOf(prev)
	if err != nil {
		return nil, err
	}
	// The previous roots sign the update: find out that they can before any key is generated.
	if _, err := r.cfg.CA.PublicKey(ctx, prev.KeyURI, keystore.PurposeRootSigning); err != nil {
		return nil, fmt.Errorf("firmware root %s v%d: %w", env, prev.Version, err)
	}
	if _, err := r.cfg.CA.PublicKey(ctx, prev.PQKeyURI, keystore.PurposeRootSigning); err != nil {
		return nil, fmt.Errorf("ML-DSA firmware root %s v%d: %w", env, prev.Version, err)
	}
	old := &firmwareRoots{cert: prevTrust.Root, keyURI: prev.KeyURI, pqKeyURI: prev.PQKeyURI, pqPublic: prev.PQPublic}
	version := prev.Version + 1
	next, gen := old, []firmwareKey(nil)
	if req.NewRoot {
		if next, gen, err = r.newFirmwareRoots(ctx, env, req.Keystore, version); err != nil {
			return nil, r.abandon(ctx, err, keyURIs(gen)...)
		}
	}
	keys, gen2, err := r.newFirmwareSigningKeys(ctx, env, req.Keystore, next, version)
	gen = append(gen, gen2...)
	if err != nil {
		return nil, r.abandon(ctx, err, keyURIs(gen)...)
	}
	current, err := r.cfg.Store.FirmwareSigningKeys(ctx, env)
	if err != nil {
		return nil, r.abandon(ctx, wrap(KindUnavailable, err), keyURIs(gen)...)
	}
	revoked := append([][]byte(nil), prev.Revoked...)
	var replaced []*store.FirmwareSigningKey
	for _, k := range current {
		if k.Status == store.FirmwareKeyActive {
			replaced = append(replaced, k)
			if req.Compromised {
				revoked = append(revoked, k.KID)
			}
		}
	}
	now := r.now()
	u := &manifest.TrustUpdate{Environment: env, Version: uint64(version), RootCert: next.cert.Raw,
		PQRoot: next.pqPublic, Revoked: revoked, IssuedAt: now.Unix()}
	update, err := r.cfg.CA.SignTrustUpdate(ctx, u, old.keyURI, old.pqKeyURI, next.keyURI, next.pqKeyURI)
	if err != nil {
		return nil, r.abandon(ctx, err, keyURIs(gen)...)
	}
	// A device at version N must accept this update: check it as one would before publishing it.
	if _, err := prevTrust.Apply(update); err != nil {
		return nil, r.abandon(ctx, fmt.Errorf("trust update %s v%d fails verification: %w", env, version, err), keyURIs(gen)...)
	}
	fr := &store.FirmwareRoot{Environment: env, Version: version, KeyURI: next.keyURI, CertDER: next.cert.Raw, PQKeyURI: next.pqKeyURI,
		PQPublic: u.PQRoot, Revoked: revoked, Update: update, CreatedAt: now}
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := r.recordFirmwareVersion(ctx, tx, p, fr, gen, keys, now); err != nil {
			return err
		}
		status, keyState := store.FirmwareKeyRetired, store.KeyDeactivated
		if req.Compromised {
			status, keyState = store.FirmwareKeyRevoked, store.KeyCompromised
		}
		for _, k := range replaced {
			if err := tx.SetFirmwareSigningKeyStatus(ctx, k.KID, status, now); err != nil {
				return err
			}
			if err := tx.SetKeyState(ctx, k.KeyURI, keyState, now); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err := r.success(ctx, tx, p, audit.ActionFirmwareKey+status, k.KeyURI, now,
				map[string]string{"environment": env, "key_id": hex.EncodeToString(k.KID), "trust_version": strconv.FormatInt(version, 10)}); err != nil {
				return err
			}
		}
		return r.success(ctx, tx, p, audit.ActionFirmwareTrustUpdate, firmwareTrustSubject(env, version), now,
			map[string]string{"new_root": strconv.FormatBool(req.NewRoot), "compromised": strconv.FormatBool(req.Compromised),
				"revoked_keys": strconv.Itoa(len(revoked)), "update_sha256": fmt.Sprintf("%x", sha256.Sum256(update)), "signing_key": hex.EncodeToString(keys[0].KID)})
	})
	if err != nil {
		return nil, r.abandon(ctx, fmt.Errorf("record trust %s v%d: %w", env, version, err), keyURIs(gen)...)
	}
	// The replaced keys stop signing in this process at once; every other process reads their new state before
	// its next signature with them.
	for _, k := range replaced {
		r.cfg.CA.Invalidate(ctx, k.KeyURI)
	}
	return fr, nil
}
