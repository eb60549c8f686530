package verify_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"filippo.io/mldsa"
	"github.com/veraison/go-cose"

	"github.com/keyward/keyward/pkg/firmware/manifest"
	"github.com/keyward/keyward/pkg/firmware/verify"
)

// resignSign1 decodes a COSE_Sign1, lets edit change it and re-encodes it without re-signing.
func editSign1(t *testing.T, env []byte, edit func(*cose.Sign1Message)) []byte {
	t.Helper()
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(env); err != nil {
		t.Fatal(err)
	}
	edit(&msg)
	return must(msg.MarshalCBOR())
}

func editSign(t *testing.T, env []byte, edit func(*cose.SignMessage)) []byte {
	t.Helper()
	var msg cose.SignMessage
	if err := msg.UnmarshalCBOR(env); err != nil {
		t.Fatal(err)
	}
	edit(&msg)
	return must(msg.MarshalCBOR())
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	if i < 0 {
		i += len(c)
	}
	c[i] ^= 0x01
	return c
}

func TestVerify(t *testing.T) {
	dev := newEnv(t, "dev")
	staging := newEnv(t, "staging")
	impostor := newEnv(t, "dev") // same environment name, another root: an unknown key
	image := bytes.Repeat([]byte("firmware"), 4096)
	trust := dev.trust(t)

	good := dev.sign(t, dev.manifestFor(t, image, 7, false, nil), false)
	goodHybrid := dev.sign(t, dev.manifestFor(t, image, 7, true, nil), true)
	payload := must(manifest.Marshal(dev.manifestFor(t, image, 7, false, nil)))
	signRaw := func(p []byte) []byte {
		return must(manifest.SignManifest(p, manifest.ClassicalSigner{Key: dev.signKey, CertDER: dev.signCert}, nil))
	}

	edKey := must(func() (ed25519.PrivateKey, error) { _, k, err := ed25519.GenerateKey(rand.Reader); return k, err }())
	edCert := signingCert(t, dev.root, dev.rootKey, edKey.Public(), x509.ExtKeyUsageCodeSigning)
	p384 := must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	p384Cert := signingCert(t, dev.root, dev.rootKey, p384.Public(), x509.ExtKeyUsageCodeSigning)
	tlsKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tlsCert := signingCert(t, dev.root, dev.rootKey, tlsKey.Public(), x509.ExtKeyUsageServerAuth)

	revokedTrust := must(verify.NewTrust("dev", 2, dev.root, dev.pqRoot.PublicKey(), [][]byte{must(manifest.KeyID(dev.signKey.Public()))}))
	pqRevokedTrust := must(verify.NewTrust("dev", 2, dev.root, dev.pqRoot.PublicKey(), [][]byte{must(manifest.KeyID(dev.pqKey.Public()))}))
	noPQTrust := must(verify.NewTrust("dev", 1, dev.root, nil, nil))

	tests := []struct {
		name     string
		envelope []byte
		image    []byte
		trust    *verify.Trust
		opts     func(*verify.Options)
		want     error
	}{
		{name: "valid classical", envelope: good},
		{name: "valid hybrid", envelope: goodHybrid},
		{name: "valid hybrid required", envelope: goodHybrid, opts: func(o *verify.Options) { o.RequireHybrid = true }},
		{name: "valid P-384 signer ES384", envelope: signWith(t, dev, image, p384, p384Cert)},
		{name: "tampered image", envelope: good, image: flip(image, 100), want: verify.ErrImageDigest},
		{name: "truncated image", envelope: good, image: image[:len(image)-1], want: verify.ErrImageSize},
		{name: "longer image", envelope: good, image: append(bytes.Clone(image), 0), want: verify.ErrImageSize},
		{name: "tampered manifest payload", envelope: editSign1(t, good, func(m *cose.Sign1Message) {
			m.Payload = must(manifest.Marshal(dev.manifestFor(t, image, 8, false, nil)))
		}), want: verify.ErrSignature},
		{name: "tampered signature", envelope: editSign1(t, good, func(m *cose.Sign1Message) { m.Signature = flip(m.Signature, 5) }), want: verify.ErrSignature},
		{name: "unknown key", envelope: impostor.sign(t, impostor.manifestFor(t, image, 7, false, nil), false), want: verify.ErrUntrustedSigner},
		{name: "key of another environment", envelope: staging.sign(t, staging.manifestFor(t, image, 7, false, nil), false), want: verify.ErrUntrustedSigner},
		{name: "certificate without code-signing EKU", envelope: signWith(t, dev, image, tlsKey, tlsCert), want: verify.ErrUntrustedSigner},
		{name: "revoked key", envelope: good, trust: revokedTrust, want: verify.ErrRevokedSigner},
		{name: "revoked key at higher sequence", envelope: dev.sign(t, dev.manifestFor(t, image, 1000, false, nil), false), trust: revokedTrust, want: verify.ErrRevokedSigner},
		{name: "revoked ML-DSA key", envelope: goodHybrid, trust: pqRevokedTrust, want: verify.ErrRevokedSigner},
		{name: "other product line", envelope: good, opts: func(o *verify.Options) { o.DeviceClass = "pacemaker-x1" }, want: verify.ErrDeviceClass},
		{name: "sequence equal to installed", envelope: good, opts: func(o *verify.Options) { o.InstalledSequence = 7 }, want: verify.ErrRollback},
		{name: "sequence lower than installed", envelope: good, opts: func(o *verify.Options) { o.InstalledSequence = 9 }, want: verify.ErrRollback},
		{name: "expired", envelope: good, opts: func(o *verify.Options) { o.Now = t0.Add(25 * time.Hour) }, want: verify.ErrExpired},
		{name: "not yet valid", envelope: good, opts: func(o *verify.Options) { o.Now = t0.Add(-2 * time.Hour) }, want: verify.ErrNotYetValid},
		{name: "bootloader too old", envelope: dev.sign(t, dev.manifestFor(t, image, 7, false, func(m *manifest.Manifest) { m.MinBootloader = "2.0.0" }), false),
			opts: func(o *verify.Options) { o.BootloaderVersion = "1.9.9" }, want: verify.ErrBootloader},
		{name: "bootloader new enough", envelope: dev.sign(t, dev.manifestFor(t, image, 7, false, func(m *manifest.Manifest) { m.MinBootloader = "2.0.0-rc.1" }), false),
			opts: func(o *verify.Options) { o.BootloaderVersion = "2.0.0" }},
		{name: "truncated CBOR", envelope: good[:len(good)-3], want: verify.ErrMalformed},
		{name: "oversized CBOR", envelope: append(bytes.Clone(good), make([]byte, manifest.MaxEnvelopeSize)...), want: verify.ErrTooLarge},
		{name: "trailing bytes", envelope: append(bytes.Clone(good), 0), want: verify.ErrMalformed},
		{name: "untagged", envelope: good[1:], want: verify.ErrMalformed},
		{name: "duplicate map key in manifest", envelope: signRaw(withDuplicateKey(payload)), want: verify.ErrMalformed},
		{name: "oversized manifest payload", envelope: signRaw(append(bytes.Clone(payload), make([]byte, manifest.MaxManifestSize)...)), want: verify.ErrTooLarge},
		{name: "wrong COSE algorithm EdDSA", envelope: signWith(t, dev, image, edKey, edCert), want: verify.ErrAlgorithm},
		{name: "algorithm header says ES384 for a P-256 key", envelope: editSign1(t, good, func(m *cose.Sign1Message) {
			m.Headers.RawProtected = nil
			m.Headers.Protected[cose.HeaderLabelAlgorithm] = cose.AlgorithmES384
		}), want: verify.ErrAlgorithm},
		{name: "wrong content type", envelope: editSign1(t, good, func(m *cose.Sign1Message) {
			m.Headers.RawProtected = nil
			m.Headers.Protected[cose.HeaderLabelContentType] = manifest.ContentTypeTrustUpdate
		}), want: verify.ErrMalformed},
		{name: "manifest names another signer", envelope: dev.sign(t, dev.manifestFor(t, image, 7, false, func(m *manifest.Manifest) {
			m.SignerKID = must(manifest.KeyID(staging.signKey.Public()))
		}), false), want: verify.ErrSignerMismatch},
		// Hybrid: Wycheproof-style, either half missing or wrong must fail.
		{name: "hybrid ML-DSA signature stripped", envelope: editSign(t, goodHybrid, func(m *cose.SignMessage) { m.Signatures = m.Signatures[:1] }), want: verify.ErrHybridRequired},
		{name: "hybrid ECDSA signature stripped", envelope: editSign(t, goodHybrid, func(m *cose.SignMessage) { m.Signatures = m.Signatures[1:] }), want: verify.ErrHybridRequired},
		{name: "hybrid manifest as COSE_Sign1", envelope: dev.sign(t, dev.manifestFor(t, image, 7, true, nil), false), want: verify.ErrHybridRequired},
		{name: "classical manifest on hybrid-only device", envelope: good, opts: func(o *verify.Options) { o.RequireHybrid = true }, want: verify.ErrHybridRequired},
		{name: "hybrid ML-DSA signature wrong", envelope: editSign(t, goodHybrid, func(m *cose.SignMessage) { m.Signatures[1].Signature = flip(m.Signatures[1].Signature, 10) }), want: verify.ErrSignature},
		{name: "hybrid ECDSA signature wrong", envelope: editSign(t, goodHybrid, func(m *cose.SignMessage) { m.Signatures[0].Signature = flip(m.Signatures[0].Signature, 10) }), want: verify.ErrSignature},
		{name: "hybrid ML-DSA signature truncated", envelope: editSign(t, goodHybrid, func(m *cose.SignMessage) {
			m.Signatures[1].Signature = m.Signatures[1].Signature[:mldsa.MLDSA65SignatureSize-1]
		}), want: verify.ErrSignature},
		{name: "hybrid ML-DSA signature swapped from another manifest", envelope: editSign(t, goodHybrid, func(m *cose.SignMessage) {
			var other cose.SignMessage
			if err := other.UnmarshalCBOR(dev.sign(t, dev.manifestFor(t, image, 8, true, nil), true)); err != nil {
				t.Fatal(err)
			}
			m.Signatures[1].Signature = other.Signatures[1].Signature
		}), want: verify.ErrSignature},
		{name: "hybrid ML-DSA key certified by another root", envelope: impostorPQ(t, dev, impostor, image), want: verify.ErrUntrustedSigner},
		{name: "hybrid with no ML-DSA root pinned", envelope: goodHybrid, trust: noPQTrust, want: verify.ErrUntrustedSigner},
		{name: "two ECDSA signatures", envelope: editSign(t, goodHybrid, func(m *cose.SignMessage) { m.Signatures[1] = m.Signatures[0] }), want: verify.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := opts(5)
			if tc.opts != nil {
				tc.opts(&o)
			}
			tr := trust
			if tc.trust != nil {
				tr = tc.trust
			}
			img := image
			if tc.image != nil {
				img = tc.image
			}
			m, err := verify.Verify(tc.envelope, bytes.NewReader(img), tr, o)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if m.DeviceClass != "demo-implant" || m.Sequence == 0 {
					t.Fatalf("manifest = %+v", m)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
			// Exactly one failure kind per case: the error matches no other sentinel.
			for _, other := range allErrors {
				if !errors.Is(other, tc.want) && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
		})
	}
}

var allErrors = []error{
	verify.ErrTooLarge, verify.ErrMalformed, verify.ErrAlgorithm, verify.ErrUntrustedSigner, verify.ErrRevokedSigner,
	verify.ErrSignature, verify.ErrSignerMismatch, verify.ErrHybridRequired, verify.ErrDeviceClass, verify.ErrRollback,
	verify.ErrNotYetValid, verify.ErrExpired, verify.ErrBootloader, verify.ErrImageSize, verify.ErrImageDigest,
}

// signWith signs a manifest for image as a COSE_Sign1 with an arbitrary key and certificate, choosing the COSE
// algorithm from the key (EdDSA for Ed25519, which manifest.COSESigner refuses to make).
func signWith(t *testing.T, e *env, image []byte, key crypto.Signer, certDER []byte) []byte {
	t.Helper()
	m := e.manifestFor(t, image, 7, false, func(m *manifest.Manifest) { m.SignerKID = must(manifest.KeyID(key.Public())) })
	alg := cose.AlgorithmEdDSA
	if k, ok := key.Public().(*ecdsa.PublicKey); ok {
		alg = map[elliptic.Curve]cose.Algorithm{elliptic.P256(): cose.AlgorithmES256, elliptic.P384(): cose.AlgorithmES384}[k.Curve]
	}
	cs := must(cose.NewSigner(alg, key))
	msg := cose.NewSign1Message()
	msg.Headers.Protected = cose.ProtectedHeader{
		cose.HeaderLabelAlgorithm: alg, cose.HeaderLabelContentType: manifest.ContentTypeManifest,
		cose.HeaderLabelKeyID: must(manifest.KeyID(key.Public())), cose.HeaderLabelX5Chain: certDER,
	}
	msg.Payload = must(manifest.Marshal(m))
	if err := msg.Sign(rand.Reader, nil, cs); err != nil {
		t.Fatal(err)
	}
	return must(msg.MarshalCBOR())
}

// withDuplicateKey returns the manifest map payload with key 2 (device class) repeated at the end.
func withDuplicateKey(payload []byte) []byte {
	out := bytes.Clone(payload)
	out[0]++ // a map of n+1 pairs (n < 23, so the count is in the initial byte)
	return append(out, 0x02, 0x63, 'e', 'v', 'l')
}

// impostorPQ signs a hybrid manifest whose ML-DSA key certificate comes from another ML-DSA root.
func impostorPQ(t *testing.T, dev, other *env, image []byte) []byte {
	t.Helper()
	m := dev.manifestFor(t, image, 7, true, func(m *manifest.Manifest) { m.PQSignerKID = must(manifest.KeyID(other.pqKey.Public())) })
	return must(manifest.SignManifest(must(manifest.Marshal(m)), manifest.ClassicalSigner{Key: dev.signKey, CertDER: dev.signCert},
		&manifest.PQSigner{Key: other.pqKey, KeyCert: other.pqCert}))
}

func TestErrorsNameTheRule(t *testing.T) {
	dev := newEnv(t, "dev")
	image := []byte("image")
	env := dev.sign(t, dev.manifestFor(t, image, 3, false, nil), false)
	_, err := verify.Verify(env, bytes.NewReader(image), dev.trust(t), opts(3))
	if err == nil || !strings.Contains(err.Error(), "sequence 3, installed 3") {
		t.Fatalf("rollback error %v does not name both sequence numbers", err)
	}
}
