// Package firmware is Keyward's firmware signing service: per environment a firmware root (ECDSA, X.509) and an
// ML-DSA-65 root beside it, firmware-signing keys they certify, and releases that go from draft through m-of-n
// approval by distinct release signers to a signed manifest (see pkg/firmware/manifest for the format and
// pkg/firmware/verify for what devices check). Rotation and compromise recovery publish signed, versioned trust
// updates in the way TUF rotates its root.
//
// Keys stay in the keystore and are used only for their purpose (root-signing for the roots, firmware-signing
// for manifests). A release of environment E is signed only with E's keys: keys are looked up by environment,
// and every manifest is verified against E's own trust before it is stored, so a production release can never
// carry a dev or staging signature. Every change is stored with its audit event in one transaction.
package firmware

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"filippo.io/mldsa"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/firmware/manifest"
	"github.com/keyward/keyward/pkg/firmware/verify"
)

// Errors a caller must tell apart (CLI exit codes, HTTP statuses); test with errors.Is.
var (
	// ErrNoPolicy: the product line has no firmware policy in keyward.yaml, or is not declared in the environment.
	ErrNoPolicy = errors.New("no firmware release policy")
	// ErrNotSigner: the approver is not one of the product line's release signers.
	ErrNotSigner = errors.New("not a release signer of this product line")
	// ErrAlreadyApproved: this signer approved the release already; m-of-n counts distinct signers.
	ErrAlreadyApproved = errors.New("release already approved by this signer")
	// ErrThreshold: the release lacks the approvals its policy requires.
	ErrThreshold = errors.New("release approval threshold not met")
	// ErrSigned: the release is signed already and can no longer be approved.
	ErrSigned = errors.New("release already signed")
	// ErrNoTrust: the environment has no firmware root yet ('keyward firmware init --env E').
	ErrNoTrust = errors.New("no firmware root for this environment")
	// ErrBadInput: a version, image or flag breaks a rule.
	ErrBadInput = errors.New("bad firmware release input")
)

// Defaults.
const (
	rootValidity          = 25 * 365 * 24 * time.Hour
	signingValidity       = 10 * 365 * 24 * time.Hour
	defaultManifestWindow = 365 * 24 * time.Hour
)

// Service is the firmware signing service of one node.
type Service struct {
	Store  store.Store
	Keys   keystore.Keystore // finds signers for any key URI (the node's router)
	Soft   keystore.Keystore // holds the ML-DSA-65 keys (only the software keystore has ML-DSA)
	Config *hierarchy.Config
	Now    func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// policy returns the firmware policy of (env, product).
func (s *Service) policy(env, product string) (*hierarchy.FirmwarePolicy, error) {
	e := s.Config.Environments[env]
	if e == nil {
		return nil, fmt.Errorf("environment %q is not declared in keyward.yaml (declared: %v): %w", env, s.Config.EnvironmentNames(), ErrNoPolicy)
	}
	pl := e.ProductLines[product]
	if pl == nil {
		return nil, fmt.Errorf("product line %q is not declared in environment %s (declared: %v): %w", product, env, s.Config.ProductLineNames(env), ErrNoPolicy)
	}
	if pl.Firmware == nil {
		return nil, fmt.Errorf("product line %s/%s has no firmware policy: add 'firmware: {threshold: 2, signers: [...]}' to it in keyward.yaml: %w", env, product, ErrNoPolicy)
	}
	return pl.Firmware, nil
}

// newKey is a key generated for this service, with what the glossary records about it.
type newKey struct {
	key   keystore.Key
	loc   keystore.Location
	owner string
}

func (s *Service) generate(ctx context.Context, ks keystore.Keystore, p keystore.Purpose, alg keystore.Algorithm, label string) (newKey, crypto.Signer, error) {
	k, err := ks.Generate(ctx, p, alg, label)
	if err != nil {
		return newKey{}, nil, fmt.Errorf("generate %s key %q: %w", alg, label, err)
	}
	sg, err := s.Keys.Signer(ctx, k.URI, p)
	if err != nil {
		return newKey{}, nil, fmt.Errorf("signer for %s: %w", k.URI, err)
	}
	return newKey{key: k, loc: ks.Location(), owner: label}, sg, nil
}

// roots is one version's root keys and certificate.
type roots struct {
	cert     *x509.Certificate
	signer   crypto.Signer
	pq       crypto.Signer
	keyURI   string
	pqKeyURI string
}

func (s *Service) newRoots(ctx context.Context, env string, ks keystore.Keystore, version int64) (*roots, []newKey, error) {
	label := fmt.Sprintf("%s/firmware-root/v%d", env, version)
	// P-256, not P-384: every device verifies the root's signature on the signing certificate at every update,
	// and P-256 is what implant-class secure elements accelerate; in Go it verifies about 10 times faster
	// (keyward bench firmware: manifest verification fell from about 1.6 ms to a few hundred µs).
	rk, rs, err := s.generate(ctx, ks, keystore.PurposeRootSigning, keystore.ECDSAP256, label)
	if err != nil {
		return nil, nil, err
	}
	subject := pkix.Name{Organization: []string{s.Config.Organization}, CommonName: fmt.Sprintf("Keyward %s Firmware Root v%d", env, version)}
	tmpl, err := hierarchy.RootTemplate(subject, rk.key.Public, s.now(), rootValidity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageCertSign // it certifies firmware-signing keys and nothing else: no CRLs
	der, _, err := issuer.SelfSign(ctx, tmpl, rs)
	if err != nil {
		return nil, nil, fmt.Errorf("sign firmware root %s: %w", label, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	pk, ps, err := s.generate(ctx, s.Soft, keystore.PurposeRootSigning, keystore.MLDSA65, label+"/ml-dsa-65")
	if err != nil {
		return nil, nil, err
	}
	return &roots{cert: cert, signer: rs, pq: ps, keyURI: rk.key.URI, pqKeyURI: pk.key.URI}, []newKey{rk, pk}, nil
}

// newSigningKeys generates an ECDSA P-256 and an ML-DSA-65 firmware-signing key and certifies them by r.
func (s *Service) newSigningKeys(ctx context.Context, env string, ks keystore.Keystore, r *roots, version int64) ([]*store.FirmwareSigningKey, []newKey, error) {
	now := s.now()
	label := fmt.Sprintf("%s/firmware-signing/v%d", env, version)
	ek, _, err := s.generate(ctx, ks, keystore.PurposeFirmwareSigning, keystore.ECDSAP256, label)
	if err != nil {
		return nil, nil, err
	}
	iss, err := issuer.New(r.cert, r.signer)
	if err != nil {
		return nil, nil, err
	}
	serial, err := issuer.RandomSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(signingValidity)
	if notAfter.After(r.cert.NotAfter) {
		notAfter = r.cert.NotAfter
	}
	// A compact end-entity certificate: it travels in every manifest (x5chain). Code signing is the only use
	// (RFC 5280 4.2.1.12), and verifiers require that EKU.
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: fmt.Sprintf("%s fw v%d", env, version)},
		NotBefore: now.Add(-time.Minute), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
	}
	p, err := iss.Prepare(tmpl, ek.key.Public)
	if err != nil {
		return nil, nil, err
	}
	der, err := iss.Issue(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	pk, _, err := s.generate(ctx, s.Soft, keystore.PurposeFirmwareSigning, keystore.MLDSA65, label+"/ml-dsa-65")
	if err != nil {
		return nil, nil, err
	}
	pqPub := pk.key.Public.(*mldsa.PublicKey)
	kc, err := manifest.SignPQKeyCert(&manifest.PQKeyCert{Environment: env, PublicKey: pqPub.Bytes(),
		NotBefore: now.Add(-time.Minute).Unix(), NotAfter: notAfter.Unix()}, r.pq)
	if err != nil {
		return nil, nil, err
	}
	ekid, _ := manifest.KeyID(ek.key.Public)
	pkid, _ := manifest.KeyID(pqPub)
	keys := []*store.FirmwareSigningKey{
		{KID: ekid, Environment: env, Algorithm: string(keystore.ECDSAP256), KeyURI: ek.key.URI, Cert: der, RootVersion: version, Status: store.FirmwareKeyActive, CreatedAt: now},
		{KID: pkid, Environment: env, Algorithm: string(keystore.MLDSA65), KeyURI: pk.key.URI, Cert: kc, RootVersion: version, Status: store.FirmwareKeyActive, CreatedAt: now},
	}
	return keys, []newKey{ek, pk}, nil
}

// recordKeys adds generated keys to the key glossary with their audit events.
func (s *Service) recordKeys(ctx context.Context, tx store.Tx, actor string, keys []newKey) error {
	now := s.now()
	for _, k := range keys {
		var spki []byte
		if _, ok := k.key.Public.(*mldsa.PublicKey); ok {
			spki, _ = manifest.KeyID(k.key.Public)
		} else {
			var err error
			if spki, err = goodkey.SPKIHash(k.key.Public); err != nil {
				return err
			}
		}
		if err := tx.InsertKey(ctx, &store.Key{URI: k.key.URI, Purpose: string(k.key.Purpose), Algorithm: string(k.key.Algorithm),
			Location: string(k.loc), State: store.KeyActive, Owner: k.owner, SPKISHA256: spki, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: actor, Action: "key.generate", Subject: k.key.URI, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"purpose": string(k.key.Purpose), "algorithm": string(k.key.Algorithm), "location": string(k.loc), "owner": k.owner}}); err != nil {
			return err
		}
	}
	return nil
}

// abandon destroys keys generated for a change that was not recorded, so no unrecorded key lingers.
func (s *Service) abandon(ctx context.Context, keys []newKey, cause error) error {
	for _, k := range keys {
		if err := s.Keys.Destroy(ctx, k.key.URI); err != nil {
			cause = fmt.Errorf("%w (and destroying the unused key %s failed: %v)", cause, k.key.URI, err)
		}
	}
	return cause
}

// Init creates env's firmware trust version 1: the firmware root in ks (ECDSA P-256), the ML-DSA-65 root and
// ML-DSA signing key in the software keystore, and an ECDSA P-256 firmware-signing key in ks. It returns
// store.ErrExists (wrapped) if env has a firmware root already.
func (s *Service) Init(ctx context.Context, env string, ks keystore.Keystore, actor string) (*store.FirmwareRoot, error) {
	if s.Config.Environments[env] == nil {
		return nil, fmt.Errorf("environment %q is not declared in keyward.yaml (declared: %v): %w", env, s.Config.EnvironmentNames(), ErrBadInput)
	}
	if _, err := s.latest(ctx, env); err == nil {
		return nil, fmt.Errorf("firmware root of %s: %w; rotate it with 'keyward firmware key rotate --env %s --new-root'", env, store.ErrExists, env)
	} else if !errors.Is(err, ErrNoTrust) {
		return nil, err
	}
	r, gen, err := s.newRoots(ctx, env, ks, 1)
	if err != nil {
		return nil, s.abandon(ctx, gen, err)
	}
	keys, gen2, err := s.newSigningKeys(ctx, env, ks, r, 1)
	gen = append(gen, gen2...)
	if err != nil {
		return nil, s.abandon(ctx, gen, err)
	}
	fr := &store.FirmwareRoot{Environment: env, Version: 1, KeyURI: r.keyURI, CertDER: r.cert.Raw, PQKeyURI: r.pqKeyURI,
		PQPublic: r.pq.Public().(*mldsa.PublicKey).Bytes(), CreatedAt: s.now()}
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		if err := s.recordKeys(ctx, tx, actor, gen); err != nil {
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
		return tx.AppendAudit(ctx, &audit.Event{Time: s.now(), Actor: actor, Action: "firmware.trust.create", Subject: env + "/firmware/v1", Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"root_key": r.keyURI, "pq_root_key": r.pqKeyURI, "signing_key": hex.EncodeToString(keys[0].KID), "pq_signing_key": hex.EncodeToString(keys[1].KID)}})
	})
	if err != nil {
		return nil, s.abandon(ctx, gen, fmt.Errorf("record firmware root of %s: %w", env, err))
	}
	return fr, nil
}

// Ensure returns env's current trust version, creating version 1 with software keys if env has none and its
// CA root is online (dev, staging). A production firmware root is created only explicitly, with
// 'keyward firmware init --env production --keystore pkcs11:...'.
func (s *Service) Ensure(ctx context.Context, env, actor string) (*store.FirmwareRoot, error) {
	fr, err := s.latest(ctx, env)
	if !errors.Is(err, ErrNoTrust) {
		return fr, err
	}
	if e := s.Config.Environments[env]; e == nil || e.Root.Offline || env == "production" {
		return nil, err
	}
	return s.Init(ctx, env, s.Soft, actor)
}

func (s *Service) latest(ctx context.Context, env string) (*store.FirmwareRoot, error) {
	rs, err := s.Store.FirmwareRoots(ctx, env)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("environment %s: %w; create it with 'keyward firmware init --env %s'", env, ErrNoTrust, env)
	}
	return rs[len(rs)-1], nil
}

// TrustOf builds the verifier's view of a stored trust version.
func TrustOf(fr *store.FirmwareRoot) (*verify.Trust, error) {
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

// Trust returns env's current trust (what a new device pins) and every trust update (versions 2 and up, in
// order) that moves an older device to it.
func (s *Service) Trust(ctx context.Context, env string) (*verify.Trust, [][]byte, error) {
	rs, err := s.Store.FirmwareRoots(ctx, env)
	if err != nil {
		return nil, nil, err
	}
	if len(rs) == 0 {
		return nil, nil, fmt.Errorf("environment %s: %w; create it with 'keyward firmware init --env %s'", env, ErrNoTrust, env)
	}
	t, err := TrustOf(rs[len(rs)-1])
	if err != nil {
		return nil, nil, err
	}
	var updates [][]byte
	for _, r := range rs[1:] {
		updates = append(updates, r.Update)
	}
	return t, updates, nil
}

// CreateRequest describes a new release.
type CreateRequest struct {
	Environment   string
	ProductLine   string
	Version       string
	MinBootloader string
	Image         io.Reader // streamed once through SHA-256
	Actor         string
}

// CreateRelease hashes the image and records a draft release with the next sequence number of its product line.
func (s *Service) CreateRelease(ctx context.Context, req CreateRequest) (*store.FirmwareRelease, error) {
	pol, err := s.policy(req.Environment, req.ProductLine)
	if err != nil {
		return nil, err
	}
	if !manifest.ValidVersion(req.Version) {
		return nil, fmt.Errorf("--version %q is not a semantic version such as 1.4.2 (semver.org 2.0.0): %w", req.Version, ErrBadInput)
	}
	if req.MinBootloader != "" && !manifest.ValidVersion(req.MinBootloader) {
		return nil, fmt.Errorf("--min-bootloader %q is not a semantic version: %w", req.MinBootloader, ErrBadInput)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, req.Image, make([]byte, 256<<10))
	if err != nil {
		return nil, fmt.Errorf("read image: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("image is empty: %w", ErrBadInput)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	now := s.now()
	r := &store.FirmwareRelease{ID: "fw-" + hex.EncodeToString(id), Environment: req.Environment, ProductLine: req.ProductLine,
		Version: req.Version, ImageSHA256: h.Sum(nil), ImageSize: n, MinBootloader: req.MinBootloader, Threshold: pol.Threshold,
		Hybrid: pol.Hybrid, Status: store.FirmwareDraft, CreatedBy: req.Actor, CreatedAt: now}
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		seq, err := tx.NextFirmwareSequence(ctx, r.Environment, r.ProductLine)
		if err != nil {
			return err
		}
		r.Sequence = seq
		if err := tx.InsertFirmwareRelease(ctx, r); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: req.Actor, Action: "firmware.release.create", Subject: r.ID, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"environment": r.Environment, "product_line": r.ProductLine, "version": r.Version,
				"sequence": strconv.FormatInt(r.Sequence, 10), "image_sha256": hex.EncodeToString(r.ImageSHA256), "image_size": strconv.FormatInt(n, 10),
				"threshold": fmt.Sprintf("%d of %d", pol.Threshold, len(pol.Signers)), "hybrid": strconv.FormatBool(pol.Hybrid)}})
	})
	if errors.Is(err, store.ErrExists) {
		return nil, fmt.Errorf("%s/%s already has a release with version %s (or sequence %d was taken concurrently; retry): %w", r.Environment, r.ProductLine, r.Version, r.Sequence, err)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// refuse records a refused request in the audit trail, so failed attempts at release control are visible.
func (s *Service) refuse(ctx context.Context, actor, action, subject string, cause error) error {
	err := s.Store.Tx(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, &audit.Event{Time: s.now(), Actor: actor, Action: action, Subject: subject, Outcome: audit.OutcomeRefused,
			Details: map[string]string{"reason": cause.Error()}})
	})
	if err != nil {
		return errors.Join(cause, fmt.Errorf("audit the refusal: %w", err))
	}
	return cause
}

// Approve records signer's approval of release id and returns the release and its approvals. The release
// becomes approved when its threshold of distinct signers is reached.
func (s *Service) Approve(ctx context.Context, id, signer, actor string) (*store.FirmwareRelease, []*store.FirmwareApproval, error) {
	r, err := s.Store.GetFirmwareRelease(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	pol, err := s.policy(r.Environment, r.ProductLine)
	if err != nil {
		return nil, nil, err
	}
	allowed := false
	for _, n := range pol.Signers {
		allowed = allowed || n == signer
	}
	if !allowed {
		return nil, nil, s.refuse(ctx, actor, "firmware.release.approve", id,
			fmt.Errorf("%q is not a release signer of %s/%s (signers: %v): %w", signer, r.Environment, r.ProductLine, pol.Signers, ErrNotSigner))
	}
	var approvals []*store.FirmwareApproval
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		cur, err := tx.GetFirmwareRelease(ctx, id)
		if err != nil {
			return err
		}
		if cur.Status == store.FirmwareSigned {
			return fmt.Errorf("release %s was signed at %s: %w", id, cur.SignedAt.Format(time.RFC3339), ErrSigned)
		}
		now := s.now()
		if err := tx.InsertFirmwareApproval(ctx, &store.FirmwareApproval{ReleaseID: id, Signer: signer, ApprovedAt: now}); err != nil {
			if errors.Is(err, store.ErrExists) {
				return fmt.Errorf("%q approved release %s already; another of %v must approve: %w", signer, id, pol.Signers, ErrAlreadyApproved)
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
		r = cur
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: actor, Action: "firmware.release.approve", Subject: id, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"signer": signer, "approvals": fmt.Sprintf("%d of %d required", len(approvals), cur.Threshold), "status": cur.Status}})
	})
	if errors.Is(err, ErrAlreadyApproved) || errors.Is(err, ErrSigned) {
		return nil, nil, s.refuse(ctx, actor, "firmware.release.approve", id, err)
	}
	if err != nil {
		return nil, nil, err
	}
	return r, approvals, nil
}

// Sign signs release id once its threshold is met, stores the manifest and returns it. Signing a signed release
// returns the stored manifest.
func (s *Service) Sign(ctx context.Context, id, actor string) ([]byte, error) {
	r, err := s.Store.GetFirmwareRelease(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Status == store.FirmwareSigned {
		return r.Manifest, nil
	}
	approvals, err := s.Store.FirmwareApprovals(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(approvals) < r.Threshold {
		return nil, s.refuse(ctx, actor, "firmware.release.sign", id,
			fmt.Errorf("release %s has %d of the %d approvals its policy requires; approve it with 'keyward firmware release approve %s --as SIGNER': %w",
				id, len(approvals), r.Threshold, id, ErrThreshold))
	}
	pol, err := s.policy(r.Environment, r.ProductLine)
	if err != nil {
		return nil, err
	}
	fr, err := s.Ensure(ctx, r.Environment, actor)
	if err != nil {
		return nil, err
	}
	trust, err := TrustOf(fr)
	if err != nil {
		return nil, err
	}
	classical, pq, ek, err := s.activeSigners(ctx, r.Environment, r.Hybrid)
	if err != nil {
		return nil, err
	}
	now := s.now().Truncate(time.Second)
	window := time.Duration(pol.Validity)
	if window <= 0 {
		window = defaultManifestWindow
	}
	m := &manifest.Manifest{DeviceClass: r.ProductLine, Sequence: uint64(r.Sequence), Version: r.Version, ImageSize: uint64(r.ImageSize),
		MinBootloader: r.MinBootloader, NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(window), SignerKID: ek.KID}
	copy(m.ImageSHA256[:], r.ImageSHA256)
	if pq != nil {
		m.PQSignerKID, _ = manifest.KeyID(pq.Key.Public())
	}
	payload, err := manifest.Marshal(m)
	if err != nil {
		return nil, err
	}
	env, err := manifest.SignManifest(payload, *classical, pq)
	if err != nil {
		return nil, fmt.Errorf("sign release %s: %w", id, err)
	}
	// Check the signature as a device of this environment will, before anything is stored or returned: a key of
	// another environment, a revoked key or a faulty HSM signature stops here.
	if _, err := verify.Manifest(env, trust, verify.Options{DeviceClass: r.ProductLine, InstalledSequence: uint64(r.Sequence) - 1, Now: now, RequireHybrid: r.Hybrid}); err != nil {
		return nil, fmt.Errorf("release %s: the new manifest fails verification against %s trust version %d: %w", id, r.Environment, fr.Version, err)
	}
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		cur, err := tx.GetFirmwareRelease(ctx, id)
		if err != nil {
			return err
		}
		if cur.Status == store.FirmwareSigned {
			env = cur.Manifest // signed concurrently; keep the first
			return nil
		}
		as, err := tx.FirmwareApprovals(ctx, id)
		if err != nil {
			return err
		}
		if len(as) < cur.Threshold {
			return fmt.Errorf("release %s: %d of %d approvals: %w", id, len(as), cur.Threshold, ErrThreshold)
		}
		signers := ""
		for i, a := range as {
			if i > 0 {
				signers += ","
			}
			signers += a.Signer
		}
		cur.Status, cur.Manifest, cur.SignerKID, cur.SignedAt = store.FirmwareSigned, env, ek.KID, &now
		if err := tx.UpdateFirmwareRelease(ctx, cur); err != nil {
			return err
		}
		d := map[string]string{"environment": cur.Environment, "product_line": cur.ProductLine, "version": cur.Version,
			"sequence": strconv.FormatInt(cur.Sequence, 10), "signing_key": hex.EncodeToString(ek.KID), "trust_version": strconv.FormatInt(fr.Version, 10),
			"approved_by": signers, "manifest_sha256": fmt.Sprintf("%x", sha256.Sum256(env)), "manifest_bytes": strconv.Itoa(len(env))}
		if pq != nil {
			d["pq_signing_key"] = hex.EncodeToString(m.PQSignerKID)
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: actor, Action: "firmware.release.sign", Subject: id, Outcome: audit.OutcomeSuccess, Details: d})
	})
	if err != nil {
		return nil, err
	}
	return env, nil
}

// activeSigners returns env's active ECDSA signer (and ML-DSA signer if hybrid). Keys are selected by
// environment only: no other environment's key is ever considered.
func (s *Service) activeSigners(ctx context.Context, env string, hybrid bool) (*manifest.ClassicalSigner, *manifest.PQSigner, *store.FirmwareSigningKey, error) {
	keys, err := s.Store.FirmwareSigningKeys(ctx, env)
	if err != nil {
		return nil, nil, nil, err
	}
	var ek, pk *store.FirmwareSigningKey
	for _, k := range keys {
		if k.Environment != env || k.Status != store.FirmwareKeyActive {
			continue
		}
		switch keystore.Algorithm(k.Algorithm) {
		case keystore.MLDSA65:
			pk = k
		default:
			ek = k
		}
	}
	if ek == nil || (hybrid && pk == nil) {
		return nil, nil, nil, fmt.Errorf("environment %s has no active firmware-signing key; rotate with 'keyward firmware key rotate --env %s': %w", env, env, ErrNoTrust)
	}
	es, err := s.Keys.Signer(ctx, ek.KeyURI, keystore.PurposeFirmwareSigning)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("firmware-signing key %s: %w", ek.KeyURI, err)
	}
	c := &manifest.ClassicalSigner{Key: es, CertDER: ek.Cert}
	if !hybrid {
		return c, nil, ek, nil
	}
	ps, err := s.Keys.Signer(ctx, pk.KeyURI, keystore.PurposeFirmwareSigning)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ML-DSA firmware-signing key %s: %w", pk.KeyURI, err)
	}
	return c, &manifest.PQSigner{Key: ps, KeyCert: pk.Cert}, ek, nil
}

// RotateRequest describes a rotation of env's firmware signing keys.
type RotateRequest struct {
	Environment string
	// NewRoot also replaces the firmware roots (ECDSA and ML-DSA); the update is signed by the old and new ones.
	NewRoot bool
	// Compromised revokes the current signing keys: listed in the new trust version, manifests they signed
	// are refused by updated devices whatever their sequence. Otherwise they are retired and stay valid.
	Compromised bool
	// Keystore generates the new ECDSA keys (nil: the software keystore).
	Keystore keystore.Keystore
	Actor    string
}

// Rotate makes new firmware-signing keys (and roots, if asked), publishes trust version N+1 as a signed update
// and returns it.
func (s *Service) Rotate(ctx context.Context, req RotateRequest) (*store.FirmwareRoot, error) {
	ks := req.Keystore
	if ks == nil {
		ks = s.Soft
	}
	prev, err := s.latest(ctx, req.Environment)
	if err != nil {
		return nil, err
	}
	prevTrust, err := TrustOf(prev)
	if err != nil {
		return nil, err
	}
	old := &roots{cert: prevTrust.Root, keyURI: prev.KeyURI, pqKeyURI: prev.PQKeyURI}
	if old.signer, err = s.Keys.Signer(ctx, prev.KeyURI, keystore.PurposeRootSigning); err != nil {
		return nil, fmt.Errorf("firmware root %s v%d: %w", req.Environment, prev.Version, err)
	}
	if old.pq, err = s.Keys.Signer(ctx, prev.PQKeyURI, keystore.PurposeRootSigning); err != nil {
		return nil, fmt.Errorf("ML-DSA firmware root %s v%d: %w", req.Environment, prev.Version, err)
	}
	version := prev.Version + 1
	next, gen := old, []newKey(nil)
	if req.NewRoot {
		if next, gen, err = s.newRoots(ctx, req.Environment, ks, version); err != nil {
			return nil, s.abandon(ctx, gen, err)
		}
	}
	keys, gen2, err := s.newSigningKeys(ctx, req.Environment, ks, next, version)
	gen = append(gen, gen2...)
	if err != nil {
		return nil, s.abandon(ctx, gen, err)
	}
	current, err := s.Store.FirmwareSigningKeys(ctx, req.Environment)
	if err != nil {
		return nil, s.abandon(ctx, gen, err)
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
	now := s.now()
	u := &manifest.TrustUpdate{Environment: req.Environment, Version: uint64(version), RootCert: next.cert.Raw,
		PQRoot: next.pq.Public().(*mldsa.PublicKey).Bytes(), Revoked: revoked, IssuedAt: now.Unix()}
	update, err := manifest.SignTrustUpdate(u, old.signer, old.pq, next.signer, next.pq)
	if err != nil {
		return nil, s.abandon(ctx, gen, err)
	}
	// A device at version N must accept this update: check it as one would before publishing it.
	if _, err := prevTrust.Apply(update); err != nil {
		return nil, s.abandon(ctx, gen, fmt.Errorf("trust update %s v%d fails verification: %w", req.Environment, version, err))
	}
	fr := &store.FirmwareRoot{Environment: req.Environment, Version: version, KeyURI: next.keyURI, CertDER: next.cert.Raw, PQKeyURI: next.pqKeyURI,
		PQPublic: u.PQRoot, Revoked: revoked, Update: update, CreatedAt: now}
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		if err := s.recordKeys(ctx, tx, req.Actor, gen); err != nil {
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
			if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: req.Actor, Action: "firmware.key." + status, Subject: k.KeyURI, Outcome: audit.OutcomeSuccess,
				Details: map[string]string{"environment": req.Environment, "key_id": hex.EncodeToString(k.KID), "trust_version": strconv.FormatInt(version, 10)}}); err != nil {
				return err
			}
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: req.Actor, Action: "firmware.trust.update", Subject: fmt.Sprintf("%s/firmware/v%d", req.Environment, version),
			Outcome: audit.OutcomeSuccess, Details: map[string]string{"new_root": strconv.FormatBool(req.NewRoot), "compromised": strconv.FormatBool(req.Compromised),
				"revoked_keys": strconv.Itoa(len(revoked)), "update_sha256": fmt.Sprintf("%x", sha256.Sum256(update)), "signing_key": hex.EncodeToString(keys[0].KID)}})
	})
	if err != nil {
		return nil, s.abandon(ctx, gen, fmt.Errorf("record trust %s v%d: %w", req.Environment, version, err))
	}
	return fr, nil
}
