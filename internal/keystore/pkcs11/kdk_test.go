package pkcs11

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/keystoretest"
	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
)

// TestKDKConformance runs the KDK suite on SoftHSM2; the known-key case stores its key with C_CreateObject
// under the template GenerateKDK uses, so the token's CKM_SHA256_HMAC is checked against crypto/hmac.
func TestKDKConformance(t *testing.T) {
	keystoretest.RunKDK(t, func(t *testing.T) keystoretest.KDKBackend {
		s, _ := newStore(t)
		return s
	}, func(t *testing.T, ks keystoretest.KDKBackend, purpose keystore.Purpose, key []byte) string {
		s := ks.(*Store)
		id := make([]byte, idLen)
		rand.Read(id)
		label := labelPrefix + string(purpose) + ":" + hex.EncodeToString(id)
		sh, release, err := s.session()
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		var tmpl []*p11.Attribute
		for _, a := range kdkTemplate(id, label) {
			if a.Type != p11.CKA_VALUE_LEN { // C_CreateObject takes the length from CKA_VALUE
				tmpl = append(tmpl, a)
			}
		}
		if _, err := s.raw.ctx.CreateObject(sh, append(tmpl, p11.NewAttribute(p11.CKA_VALUE, key))); err != nil {
			t.Fatalf("C_CreateObject: %v", err)
		}
		u := s.selector
		u.ID, u.Object, u.Type = id, label, "secret-key"
		return u.String()
	})
}

// TestKDKAttributes reads back what the token recorded for a generated KDK: sensitive, never extractable,
// sign only.
func TestKDKAttributes(t *testing.T) {
	s, _ := newStore(t)
	k, err := s.GenerateKDK(context.Background(), keystore.PurposeDeviceLink, "x")
	if err != nil {
		t.Fatal(err)
	}
	checkBools(t, s, k.URI, p11.CKO_SECRET_KEY, map[uint]bool{
		p11.CKA_SENSITIVE: true, p11.CKA_EXTRACTABLE: false, p11.CKA_ALWAYS_SENSITIVE: true, p11.CKA_NEVER_EXTRACTABLE: true,
		p11.CKA_SIGN: true, p11.CKA_VERIFY: false, p11.CKA_ENCRYPT: false, p11.CKA_DECRYPT: false,
		p11.CKA_WRAP: false, p11.CKA_UNWRAP: false, p11.CKA_DERIVE: false, p11.CKA_TOKEN: true, p11.CKA_PRIVATE: true,
	})
}

// TestWrapSecret wraps a derived secret under a transport key the test knows and unwraps it (RFC 5649).
func TestWrapSecret(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	tURI, kek := newTransportKey(t, s)
	secret := make([]byte, 32)
	rand.Read(secret)
	wrapped, how, err := s.WrapSecret(ctx, secret, tURI)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pkcs11test.UnwrapRFC5649(kek, wrapped)
	if err != nil {
		t.Fatalf("unwrap (%s): %v", how, err)
	}
	if hex.EncodeToString(got) != hex.EncodeToString(secret) {
		t.Fatalf("unwrapped %x, want %x", got, secret)
	}
	kdk, err := s.GenerateKDK(ctx, keystore.PurposeDeviceLink, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.WrapSecret(ctx, secret, kdk.URI); err == nil {
		t.Fatal("WrapSecret under a KDK succeeded")
	}
}
