package verify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"filippo.io/mldsa"
	"github.com/veraison/go-cose"

	"github.com/keyward/keyward/pkg/firmware/manifest"
)

// Errors of verification. Each failure has its own value; test with errors.Is. The wrapped message names the
// input, the rule and, where there is one, the fix.
var (
	ErrTooLarge        = errors.New("signed manifest too large")
	ErrMalformed       = errors.New("malformed signed manifest")
	ErrAlgorithm       = errors.New("signature algorithm not accepted")
	ErrUntrustedSigner = errors.New("signing key not certified by the pinned firmware root")
	ErrRevokedSigner   = errors.New("signing key revoked")
	ErrSignature       = errors.New("signature does not verify")
	ErrSignerMismatch  = errors.New("manifest does not name the key that signed it")
	ErrHybridRequired  = errors.New("hybrid ECDSA + ML-DSA-65 signature required")
	ErrDeviceClass     = errors.New("manifest is for another device class")
	ErrRollback        = errors.New("manifest sequence is not newer than the installed one")
	ErrNotYetValid     = errors.New("manifest not yet valid")
	ErrExpired         = errors.New("manifest expired")
	ErrBootloader      = errors.New("bootloader too old for this image")
	ErrImageSize       = errors.New("image size does not match the manifest")
	ErrImageDigest     = errors.New("image digest does not match the manifest")
)

// Options describe the device doing the check.
type Options struct {
	// DeviceClass is the device's product line, e.g. "demo-implant". Required.
	DeviceClass string
	// InstalledSequence is the sequence number of the installed firmware; only a greater one is accepted.
	InstalledSequence uint64
	// Now is the device's idea of the time; zero means time.Now().
	Now time.Time
	// BootloaderVersion is the device's bootloader version (semver); empty skips the minimum-bootloader check.
	BootloaderVersion string
	// RequireHybrid makes any manifest without a valid ML-DSA-65 signature fail, even one that does not
	// declare itself hybrid: devices of a product line whose policy is hybrid set it, so that stripping the
	// post-quantum signature and the declaration together does not downgrade them.
	RequireHybrid bool
}

// signer is one verified-to-be-trusted signing key of an envelope.
type signer struct {
	kid      []byte
	verifier cose.Verifier
	name     string // for messages
}

// Manifest verifies a signed manifest (the envelope) against trust and the device described by opts, and
// returns the manifest. It does not read the image: call Image next, or use Verify for both.
func Manifest(envelope []byte, trust *Trust, opts Options) (*manifest.Manifest, error) {
	if trust == nil || trust.Root == nil {
		return nil, errors.New("verify manifest: no firmware trust given; pin the firmware root ('keyward firmware trust --env ENV')")
	}
	if opts.DeviceClass == "" {
		return nil, errors.New("verify manifest: the device class is required")
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if len(envelope) > manifest.MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(envelope), manifest.MaxEnvelopeSize)
	}
	payload, classical, pq, err := checkEnvelope(envelope, trust, now)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Parse(payload)
	switch {
	case errors.Is(err, manifest.ErrTooLarge):
		return nil, fmt.Errorf("%w: %w", ErrTooLarge, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !bytes.Equal(m.SignerKID, classical.kid) {
		return nil, fmt.Errorf("%w: manifest names signer %s but %s signed it", ErrSignerMismatch, shortKID(m.SignerKID), classical.name)
	}
	if (opts.RequireHybrid || m.Hybrid()) && pq == nil {
		why := "the manifest declares an ML-DSA signer"
		if !m.Hybrid() {
			why = "this device requires hybrid signatures"
		}
		return nil, fmt.Errorf("%w: %s but the envelope carries no ML-DSA-65 signature (was it stripped?)", ErrHybridRequired, why)
	}
	if m.Hybrid() && !bytes.Equal(m.PQSignerKID, pq.kid) {
		return nil, fmt.Errorf("%w: manifest names ML-DSA signer %s but %s signed it", ErrSignerMismatch, shortKID(m.PQSignerKID), pq.name)
	}
	if m.DeviceClass != opts.DeviceClass {
		return nil, fmt.Errorf("%w: manifest is for %q, this device is %q", ErrDeviceClass, m.DeviceClass, opts.DeviceClass)
	}
	if m.Sequence <= opts.InstalledSequence {
		return nil, fmt.Errorf("%w: manifest sequence %d, installed %d; a device only moves forward", ErrRollback, m.Sequence, opts.InstalledSequence)
	}
	if now.Before(m.NotBefore) {
		return nil, fmt.Errorf("%w: valid from %s, device time %s", ErrNotYetValid, m.NotBefore.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Before(m.NotAfter) {
		return nil, fmt.Errorf("%w: valid until %s, device time %s; ask the maker for a re-signed release", ErrExpired, m.NotAfter.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if m.MinBootloader != "" && opts.BootloaderVersion != "" {
		c, err := manifest.CompareVersions(opts.BootloaderVersion, m.MinBootloader)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBootloader, err)
		}
		if c < 0 {
			return nil, fmt.Errorf("%w: image needs bootloader %s or later, device has %s", ErrBootloader, m.MinBootloader, opts.BootloaderVersion)
		}
	}
	return m, nil
}

// Verify runs Manifest and then Image: the complete device-side check.
func Verify(envelope []byte, image io.Reader, trust *Trust, opts Options) (*manifest.Manifest, error) {
	m, err := Manifest(envelope, trust, opts)
	if err != nil {
		return nil, err
	}
	if err := Image(m, image); err != nil {
		return nil, err
	}
	return m, nil
}

// imageBuffer is the read size for images that cannot write themselves into the hash: large enough that
// system calls cost little beside SHA-256, small enough for a gateway.
const imageBuffer = 256 << 10

// Image streams image through SHA-256 once and checks it against m: exactly m.ImageSize bytes (reading stops one
// byte past it, so an oversized image is not read to its end) with digest m.ImageSHA256.
func Image(m *manifest.Manifest, image io.Reader) error {
	w := &imageHasher{h: sha256.New(), limit: m.ImageSize}
	var err error
	switch r := image.(type) {
	case *bytes.Reader, *bytes.Buffer, *strings.Reader:
		_, err = r.(io.WriterTo).WriteTo(w) // an in-memory image hashes in place, without a copy
	default:
		_, err = io.CopyBuffer(w, io.LimitReader(image, int64(min(m.ImageSize, 1<<62))+1), make([]byte, imageBuffer))
	}
	if err != nil && !errors.Is(err, errOversized) {
		return fmt.Errorf("read image: %w", err)
	}
	if w.n != m.ImageSize {
		more := ""
		if w.n > m.ImageSize {
			more = " or more"
		}
		return fmt.Errorf("%w: image is %d bytes%s, manifest says %d", ErrImageSize, w.n, more, m.ImageSize)
	}
	var sum [sha256.Size]byte
	w.h.Sum(sum[:0])
	if subtle.ConstantTimeCompare(sum[:], m.ImageSHA256[:]) != 1 {
		return fmt.Errorf("%w: image SHA-256 %x, manifest says %x", ErrImageDigest, sum, m.ImageSHA256)
	}
	return nil
}

var errOversized = errors.New("image longer than the manifest says")

// imageHasher hashes what is written to it and counts it, refusing to go more than one byte past limit.
type imageHasher struct {
	h     hash.Hash
	n     uint64
	limit uint64
}

func (w *imageHasher) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += uint64(len(p))
	if w.n > w.limit {
		return len(p), errOversized
	}
	return len(p), nil
}

// checkEnvelope decodes the envelope, checks its signers against trust and verifies every signature. It
// returns the payload and the ECDSA signer, and the ML-DSA signer if there is one.
func checkEnvelope(envelope []byte, trust *Trust, now time.Time) (payload []byte, classical, pq *signer, err error) {
	switch {
	case bytes.HasPrefix(envelope, []byte{0xd2}): // tag 18, COSE_Sign1
		var msg cose.Sign1Message
		if err := msg.UnmarshalCBOR(envelope); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: COSE_Sign1: %v", ErrMalformed, err)
		}
		if err := checkContentType(msg.Headers.Protected); err != nil {
			return nil, nil, nil, err
		}
		s, isPQ, err := trustedSigner(&msg.Headers, trust, now)
		if err != nil {
			return nil, nil, nil, err
		}
		if isPQ {
			return nil, nil, nil, fmt.Errorf("%w: a COSE_Sign1 manifest must be signed with ECDSA; ML-DSA signs only beside it, in a COSE_Sign", ErrAlgorithm)
		}
		if err := msg.Verify(nil, s.verifier); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %s: %v (the manifest or its signature was altered)", ErrSignature, s.name, err)
		}
		return msg.Payload, s, nil, nil
	case bytes.HasPrefix(envelope, []byte{0xd8, 0x62}): // tag 98, COSE_Sign
		var msg cose.SignMessage
		if err := msg.UnmarshalCBOR(envelope); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: COSE_Sign: %v", ErrMalformed, err)
		}
		if err := checkContentType(msg.Headers.Protected); err != nil {
			return nil, nil, nil, err
		}
		if len(msg.Signatures) > 2 {
			return nil, nil, nil, fmt.Errorf("%w: %d signatures; a manifest has one ECDSA and at most one ML-DSA-65 signature", ErrMalformed, len(msg.Signatures))
		}
		verifiers := make([]cose.Verifier, len(msg.Signatures))
		names := make([]string, len(msg.Signatures))
		for i, sig := range msg.Signatures {
			s, isPQ, err := trustedSigner(&sig.Headers, trust, now)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("signature %d: %w", i, err)
			}
			switch {
			case isPQ && pq != nil, !isPQ && classical != nil:
				return nil, nil, nil, fmt.Errorf("%w: two signatures of the same kind; a manifest has one ECDSA and at most one ML-DSA-65 signature", ErrMalformed)
			case isPQ:
				pq = s
			default:
				classical = s
			}
			verifiers[i], names[i] = s.verifier, s.name
		}
		if classical == nil {
			return nil, nil, nil, fmt.Errorf("%w: no ECDSA signature; ML-DSA-65 alone is not accepted (hybrid means both)", ErrHybridRequired)
		}
		protected, err := msg.Headers.MarshalProtected()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		for i, sig := range msg.Signatures {
			if err := sig.Verify(verifiers[i], protected, msg.Payload, nil); err != nil {
				return nil, nil, nil, fmt.Errorf("%w: signature %d by %s: %v (the manifest or a signature was altered)", ErrSignature, i, names[i], err)
			}
		}
		return msg.Payload, classical, pq, nil
	}
	return nil, nil, nil, fmt.Errorf("%w: not a tagged COSE_Sign1 (tag 18) or COSE_Sign (tag 98)", ErrMalformed)
}

func checkContentType(h cose.ProtectedHeader) error {
	ct, ok := h[cose.HeaderLabelContentType].(string)
	if !ok || ct != manifest.ContentTypeManifest {
		return fmt.Errorf("%w: protected content type is %v, want %q (is this a firmware manifest?)", ErrMalformed, h[cose.HeaderLabelContentType], manifest.ContentTypeManifest)
	}
	if _, ok := h[cose.HeaderLabelCritical]; ok {
		return fmt.Errorf("%w: critical header parameters are not understood by this verifier", ErrMalformed)
	}
	return nil
}

// trustedSigner identifies the key behind one signature from its protected header and checks that trust
// certifies it and has not revoked it. It does not verify the signature itself.
func trustedSigner(h *cose.Headers, trust *Trust, now time.Time) (*signer, bool, error) {
	p := h.Protected
	if _, ok := p[cose.HeaderLabelCritical]; ok {
		return nil, false, fmt.Errorf("%w: critical header parameters are not understood by this verifier", ErrMalformed)
	}
	alg, err := p.Algorithm()
	if err != nil {
		return nil, false, fmt.Errorf("%w: protected algorithm header: %v", ErrAlgorithm, err)
	}
	kid, _ := p[cose.HeaderLabelKeyID].([]byte)
	switch alg {
	case cose.AlgorithmES256, cose.AlgorithmES384:
		s, err := classicalSigner(p, alg, kid, trust, now)
		return s, false, err
	case manifest.AlgMLDSA65:
		s, err := mldsaSigner(p, kid, trust, now)
		return s, true, err
	}
	return nil, false, fmt.Errorf("%w: %v; accepted: ES256, ES384 (ECDSA) and ML-DSA-65 (%d)", ErrAlgorithm, alg, manifest.AlgMLDSA65)
}

func classicalSigner(p cose.ProtectedHeader, alg cose.Algorithm, kid []byte, trust *Trust, now time.Time) (*signer, error) {
	der, ok := p[cose.HeaderLabelX5Chain].([]byte)
	if !ok {
		return nil, fmt.Errorf("%w: the protected header must carry the signing certificate as one bstr in x5chain (33)", ErrMalformed)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: x5chain certificate: %v", ErrMalformed, err)
	}
	name := fmt.Sprintf("signing key %q", cert.Subject.CommonName)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: trust.pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
		return nil, fmt.Errorf("%w: %s does not chain to firmware root %q (trust version %d): %v; an unknown key or a key of another environment",
			ErrUntrustedSigner, name, trust.Root.Subject.CommonName, trust.Version, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	want := map[cose.Algorithm]elliptic.Curve{cose.AlgorithmES256: elliptic.P256(), cose.AlgorithmES384: elliptic.P384()}[alg]
	if !ok || pub.Curve != want {
		return nil, fmt.Errorf("%w: %s is not an ECDSA %s key as algorithm %v requires", ErrAlgorithm, name, want.Params().Name, alg)
	}
	certKID, err := manifest.KeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(kid, certKID) {
		return nil, fmt.Errorf("%w: kid header %s is not the id %s of the x5chain certificate's key", ErrSignerMismatch, shortKID(kid), shortKID(certKID))
	}
	if trust.Revoked(certKID) {
		return nil, fmt.Errorf("%w: %s (id %s) was revoked in trust version %d or earlier; manifests it signed are refused whatever their sequence",
			ErrRevokedSigner, name, shortKID(certKID), trust.Version)
	}
	v, err := cose.NewVerifier(alg, pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAlgorithm, err)
	}
	return &signer{kid: certKID, verifier: v, name: name}, nil
}

func mldsaSigner(p cose.ProtectedHeader, kid []byte, trust *Trust, now time.Time) (*signer, error) {
	raw, ok := p[manifest.HeaderPQKeyCert].([]byte)
	if !ok {
		return nil, fmt.Errorf("%w: the ML-DSA-65 signature's protected header must carry its key certificate (label %d)", ErrMalformed, manifest.HeaderPQKeyCert)
	}
	if trust.PQRoot == nil {
		return nil, fmt.Errorf("%w: the envelope has an ML-DSA-65 signature but the pinned trust has no ML-DSA-65 root", ErrUntrustedSigner)
	}
	kc, err := parsePQKeyCert(raw, trust.PQRoot)
	if err != nil {
		return nil, err
	}
	if trust.Environment != "" && kc.Environment != trust.Environment {
		return nil, fmt.Errorf("%w: ML-DSA-65 key certificate is for environment %q, the pinned trust is %q", ErrUntrustedSigner, kc.Environment, trust.Environment)
	}
	if now.Before(time.Unix(kc.NotBefore, 0)) || !now.Before(time.Unix(kc.NotAfter, 0)) {
		return nil, fmt.Errorf("%w: ML-DSA-65 key certificate is valid %s to %s, device time %s", ErrUntrustedSigner,
			time.Unix(kc.NotBefore, 0).UTC().Format(time.RFC3339), time.Unix(kc.NotAfter, 0).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	pub, err := mldsa.NewPublicKey(mldsa.MLDSA65(), kc.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: ML-DSA-65 key certificate: %v", ErrMalformed, err)
	}
	certKID, _ := manifest.KeyID(pub)
	name := "ML-DSA-65 signing key " + shortKID(certKID)
	if !bytes.Equal(kid, certKID) {
		return nil, fmt.Errorf("%w: kid header %s is not the id of the certified ML-DSA-65 key %s", ErrSignerMismatch, shortKID(kid), shortKID(certKID))
	}
	if trust.Revoked(certKID) {
		return nil, fmt.Errorf("%w: %s was revoked in trust version %d or earlier", ErrRevokedSigner, name, trust.Version)
	}
	return &signer{kid: certKID, verifier: manifest.MLDSAVerifier{Key: pub}, name: name}, nil
}

// parsePQKeyCert verifies an ML-DSA key certificate against the ML-DSA root and decodes it.
func parsePQKeyCert(raw []byte, root *mldsa.PublicKey) (*manifest.PQKeyCert, error) {
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(raw); err != nil {
		return nil, fmt.Errorf("%w: ML-DSA-65 key certificate: %v", ErrMalformed, err)
	}
	if ct, _ := msg.Headers.Protected[cose.HeaderLabelContentType].(string); ct != manifest.ContentTypePQKeyCert {
		return nil, fmt.Errorf("%w: ML-DSA-65 key certificate has content type %q, want %q", ErrMalformed, ct, manifest.ContentTypePQKeyCert)
	}
	if err := msg.Verify(nil, manifest.MLDSAVerifier{Key: root}); err != nil {
		return nil, fmt.Errorf("%w: ML-DSA-65 key certificate is not signed by the pinned ML-DSA-65 root: %v", ErrUntrustedSigner, err)
	}
	var kc manifest.PQKeyCert
	if err := manifest.UnmarshalStrict(msg.Payload, &kc); err != nil {
		return nil, fmt.Errorf("%w: ML-DSA-65 key certificate payload: %v", ErrMalformed, err)
	}
	return &kc, nil
}

func shortKID(kid []byte) string {
	if len(kid) > 8 {
		return hex.EncodeToString(kid[:8]) + "..."
	}
	if len(kid) == 0 {
		return "(none)"
	}
	return hex.EncodeToString(kid)
}
