package soft

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"testing"

	"filippo.io/mldsa"

	"github.com/keyward/keyward/internal/keystore"
)

// TestMLDSA65 generates an ML-DSA-65 firmware-signing key, reopens the keystore and signs with the unsealed key.
func TestMLDSA65(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pass := []byte("correct horse")
	s, err := Create(dir, pass, &Options{ScryptN: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Generate(ctx, keystore.PurposeFirmwareSigning, keystore.MLDSA65, "dev firmware ML-DSA")
	if err != nil {
		t.Fatal(err)
	}
	if alg, err := keystore.AlgorithmOf(k.Public); err != nil || alg != keystore.MLDSA65 {
		t.Fatalf("AlgorithmOf = %s, %v", alg, err)
	}
	s.Close()
	s, err = Open(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Signer(ctx, k.URI, keystore.PurposeCASigning); !errors.Is(err, keystore.ErrWrongPurpose) {
		t.Fatalf("Signer for ca-signing: %v, want ErrWrongPurpose", err)
	}
	sg, err := s.Signer(ctx, k.URI, keystore.PurposeFirmwareSigning)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("manifest to be signed")
	sig, err := sg.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := mldsa.Verify(k.Public.(*mldsa.PublicKey), msg, sig, nil); err != nil {
		t.Fatalf("signature by the reopened key does not verify: %v", err)
	}
	if err := mldsa.Verify(k.Public.(*mldsa.PublicKey), []byte("other"), sig, nil); err == nil {
		t.Fatal("signature verifies over another message")
	}
}
