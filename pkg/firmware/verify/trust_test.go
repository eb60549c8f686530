package verify_test

import (
	"bytes"
	"crypto"
	"errors"
	"testing"

	"github.com/keyward/keyward/pkg/firmware/manifest"
	"github.com/keyward/keyward/pkg/firmware/verify"
)

// update signs trust version v of e (its current roots, the given revocations) with signers.
func update(t *testing.T, e *env, v uint64, revoked [][]byte, signers ...crypto.Signer) []byte {
	t.Helper()
	u := &manifest.TrustUpdate{Environment: e.name, Version: v, RootCert: e.root.Raw, PQRoot: e.pqRoot.PublicKey().Bytes(), Revoked: revoked, IssuedAt: t0.Unix()}
	return must(manifest.SignTrustUpdate(u, signers...))
}

// TestRotationAndCompromiseRecovery walks a device through a signing-key compromise (revocation in trust version
// 2) and a root rotation (version 3), checking at each step which manifests it accepts.
func TestRotationAndCompromiseRecovery(t *testing.T) {
	dev := newEnv(t, "dev")
	image := []byte("firmware image")
	device := dev.trust(t)
	verifyWith := func(tr *verify.Trust, envelope []byte, installed uint64) error {
		_, err := verify.Verify(envelope, bytes.NewReader(image), tr, opts(installed))
		return err
	}

	k1Manifest := dev.sign(t, dev.manifestFor(t, image, 1, true, nil), true)
	if err := verifyWith(device, k1Manifest, 0); err != nil {
		t.Fatalf("v1, key 1: %v", err)
	}
	k1ID := must(manifest.KeyID(dev.signKey.Public()))
	k1PQID := must(manifest.KeyID(dev.pqKey.Public()))
	// The attacker holds key 1 and signs a higher sequence.
	k1Attack := dev.sign(t, dev.manifestFor(t, image, 99, true, nil), true)

	// Compromise recovery: new signing keys, key 1 revoked in version 2, signed by the (unchanged) roots.
	oldRootKey, oldPQRoot := dev.rootKey, dev.pqRoot
	dev.newSigningKey(t)
	v2 := update(t, dev, 2, [][]byte{k1ID, k1PQID}, dev.rootKey, dev.pqRoot)
	device2, err := device.Apply(v2)
	if err != nil {
		t.Fatalf("apply v2: %v", err)
	}
	if device2.Version != 2 || !device2.Revoked(k1ID) {
		t.Fatalf("v2 trust = version %d, revoked %x", device2.Version, device2.RevokedKeys())
	}
	if err := verifyWith(device2, k1Attack, 1); !errors.Is(err, verify.ErrRevokedSigner) {
		t.Fatalf("compromised key at sequence 99 after revocation: %v, want ErrRevokedSigner", err)
	}
	k2Manifest := dev.sign(t, dev.manifestFor(t, image, 2, true, nil), true)
	if err := verifyWith(device2, k2Manifest, 1); err != nil {
		t.Fatalf("v2, key 2: %v", err)
	}

	// Root rotation: version 3 has new roots and a key under them, signed by the old and the new roots.
	*dev = *newEnv(t, "dev")
	v3 := update(t, dev, 3, [][]byte{k1ID, k1PQID}, oldRootKey, oldPQRoot, dev.rootKey, dev.pqRoot)
	device3, err := device2.Apply(v3)
	if err != nil {
		t.Fatalf("apply v3: %v", err)
	}
	if err := verifyWith(device3, k2Manifest, 1); !errors.Is(err, verify.ErrUntrustedSigner) {
		t.Fatalf("key under the retired root after rotation: %v, want ErrUntrustedSigner", err)
	}
	if err := verifyWith(device3, dev.sign(t, dev.manifestFor(t, image, 3, true, nil), true), 2); err != nil {
		t.Fatalf("v3, key 3: %v", err)
	}

	// The trust file round-trips, and a device restarted from it continues.
	pemData := must(device3.PEM())
	again, err := verify.ParseTrustPEM(pemData)
	if err != nil {
		t.Fatal(err)
	}
	if again.Version != 3 || again.Environment != "dev" || !again.Root.Equal(dev.root) || !again.Revoked(k1PQID) || !again.PQRoot.Equal(dev.pqRoot.PublicKey()) {
		t.Fatalf("trust PEM round trip: version %d env %q", again.Version, again.Environment)
	}

	// Bad updates.
	staging := newEnv(t, "staging")
	attacker := newEnv(t, "dev")
	bad := []struct {
		name   string
		from   *verify.Trust
		update []byte
		want   error
	}{
		{"skipped version", device, v3, verify.ErrTrustVersion},
		{"replayed version", device2, v2, verify.ErrTrustVersion},
		{"other environment", device, update(t, staging, 2, nil, staging.rootKey, staging.pqRoot), verify.ErrTrustEnvironment},
		{"new root without the old root's signature", device2, update(t, dev, 3, nil, dev.rootKey, dev.pqRoot), verify.ErrTrustSignature},
		{"new root without its own signature", device2, update(t, dev, 3, nil, oldRootKey, oldPQRoot, dev.pqRoot), verify.ErrTrustSignature},
		{"attacker root signed by itself", device, update(t, attacker, 2, nil, attacker.rootKey, attacker.pqRoot), verify.ErrTrustSignature},
		{"missing ML-DSA root signature", device2, update(t, dev, 3, nil, oldRootKey, dev.rootKey, dev.pqRoot), verify.ErrTrustSignature},
		{"garbage", device, []byte{0xd8, 0x62, 0x84}, verify.ErrTrustMalformed},
		{"a manifest instead", device, k1Manifest, verify.ErrTrustMalformed},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.from.Apply(tc.update); !errors.Is(err, tc.want) {
				t.Fatalf("Apply = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseTrustPEM(t *testing.T) {
	dev := newEnv(t, "dev")
	bare := must(dev.trust(t).PEM())
	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"full", bare, true},
		{"certificate only", bare[:bytes.Index(bare, []byte("-----BEGIN ML-DSA"))], true},
		{"empty", nil, false},
		{"unknown block", append(bytes.Clone(bare), []byte("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n")...), false},
		{"trailing junk", append(bytes.Clone(bare), "junk"...), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := verify.ParseTrustPEM(tc.data)
			if tc.ok != (err == nil) {
				t.Fatalf("ParseTrustPEM: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, verify.ErrTrustMalformed) {
				t.Errorf("error %v does not wrap ErrTrustMalformed", err)
			}
			if err == nil && tr.Version < 1 {
				t.Errorf("version %d", tr.Version)
			}
		})
	}
}
