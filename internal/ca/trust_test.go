package ca

import (
	"context"
	"crypto"
	"errors"
	"testing"
	"time"

	"github.com/veraison/go-cose"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/trust"
)

// memKeys is a keystore in memory that refuses a key for any purpose but its own, as every backend does.
type memKeys map[string]memKey

type memKey struct {
	purpose keystore.Purpose
	key     crypto.Signer
}

func (m memKeys) Generate(context.Context, keystore.Purpose, keystore.Algorithm, string) (keystore.Key, error) {
	return keystore.Key{}, errors.New("memKeys: Generate is not used by these tests")
}

func (m memKeys) Signer(_ context.Context, uri string, purpose keystore.Purpose) (crypto.Signer, error) {
	k, ok := m[uri]
	switch {
	case !ok:
		return nil, keystore.ErrNotFound
	case k.purpose != purpose:
		return nil, keystore.PurposeError(uri, k.purpose, purpose)
	}
	return k.key, nil
}

func (m memKeys) Destroy(_ context.Context, uri string) error { delete(m, uri); return nil }
func (m memKeys) Handles(string) bool                         { return true }
func (m memKeys) Location() keystore.Location                 { return keystore.LocationSoftware }
func (m memKeys) Close() error                                { return nil }

// keyStates is a store reader that knows only the glossary states of keys; any other read panics.
type keyStates struct {
	store.Reader
	states map[string]string
}

func (k keyStates) GetKey(_ context.Context, uri string) (*store.Key, error) {
	s, ok := k.states[uri]
	if !ok {
		return nil, store.ErrNotFound
	}
	return &store.Key{URI: uri, State: s}, nil
}

func TestSignAnchorUpdate(t *testing.T) {
	ctx := context.Background()
	oldRoot := pkitest.NewRoot(t, "Keyward dev Root CA", nil)
	newRoot := pkitest.NewRoot(t, "Keyward dev Root CA 2", pkitest.KeyOf(t, "Ed25519"))
	issuing := pkitest.Key(t)
	keys := memKeys{
		"soft:old":     {keystore.PurposeRootSigning, oldRoot.Key},
		"soft:new":     {keystore.PurposeRootSigning, newRoot.Key},
		"soft:issuing": {keystore.PurposeCASigning, issuing},
	}
	states := map[string]string{"soft:old": store.KeyActive, "soft:new": store.KeyActive, "soft:issuing": store.KeyActive}
	c, err := New(Config{Keys: keys, Soft: keys, Store: keyStates{states: states}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	u := &trust.Update{Environment: "dev", Version: 1, Anchors: [][]byte{oldRoot.Cert.Raw, newRoot.Cert.Raw},
		NotBefore: now.Add(-time.Hour).Unix(), NotAfter: now.Add(30 * 24 * time.Hour).Unix(), IssuedAt: now.Unix()}

	signed, err := c.SignAnchorUpdate(ctx, u, "soft:old", "soft:new", "soft:old")
	if err != nil {
		t.Fatal(err)
	}
	var msg cose.SignMessage
	if err := msg.UnmarshalCBOR(signed); err != nil || len(msg.Signatures) != 2 {
		t.Fatalf("signed update: %v, %d signatures, want 2", err, len(msg.Signatures))
	}
	device, err := trust.NewAnchors("dev", 0, oldRoot.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if next, err := device.Apply(signed, now); err != nil || next.Version != 1 {
		t.Fatalf("a device holding the old root refuses the update: %v", err)
	}

	if _, err := c.SignAnchorUpdate(ctx, u, "soft:old", "soft:issuing"); !errors.Is(err, keystore.ErrWrongPurpose) {
		t.Errorf("signing with a ca-signing key = %v, want ErrWrongPurpose", err)
	}
	bad := *u
	bad.Version = 0
	if _, err := c.SignAnchorUpdate(ctx, &bad, "soft:old", "soft:new"); !errors.Is(err, trust.ErrMalformed) {
		t.Errorf("signing version 0 = %v, want trust.ErrMalformed", err)
	}
	states["soft:old"] = store.KeyDeactivated
	c.Invalidate(ctx, "soft:old")
	if _, err := c.SignAnchorUpdate(ctx, u, "soft:old", "soft:new"); !errors.Is(err, ErrRetired) {
		t.Errorf("signing with a deactivated root = %v, want ErrRetired", err)
	}
}
