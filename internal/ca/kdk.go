package ca

// Key-derivation keys. The custodian generates them and runs every derivation, as it makes every signature:
// the KDK's glossary state is checked before each use, and only the derived key leaves (internal/kbkdf, SP
// 800-108r1 counter mode with HMAC-SHA-256 computed by the keystore, in the HSM for a PKCS#11 KDK). Nothing
// here stores a derived key.

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyward/keyward/internal/kbkdf"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// GenerateKDK generates a key-derivation key of purpose p in ks (nil: the software keystore). As with
// GenerateKey, the key is not recorded: the caller records it with its change or destroys it.
func (c *Custodian) GenerateKDK(ctx context.Context, ks keystore.Keystore, p keystore.Purpose, label string) (keystore.Key, keystore.Location, error) {
	if ks == nil {
		ks = c.cfg.Soft
	}
	k, ok := ks.(keystore.KDKStore)
	if !ok {
		return keystore.Key{}, "", fmt.Errorf("the %s keystore cannot hold key-derivation keys: %w", ks.Location(), errors.ErrUnsupported)
	}
	key, err := k.GenerateKDK(ctx, p, label)
	if err != nil {
		return keystore.Key{}, "", fmt.Errorf("generate %s key-derivation key %q: %w", p, label, err)
	}
	return key, ks.Location(), nil
}

// DeriveKey derives the device key d under the KDK at uri. The KDK must be recorded in the key glossary with
// d's purpose and be active, or deactivated (retired) when rederive is set: a retired KDK re-derives the keys
// of devices that have them, and derives no new ones. The caller clears the key when done.
func (c *Custodian) DeriveKey(ctx context.Context, uri string, d kbkdf.Device, rederive bool) ([]byte, error) {
	k, err := c.cfg.Store.GetKey(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("key-derivation key %s: %w", uri, err)
	}
	switch {
	case k.Purpose != d.Purpose:
		return nil, keystore.PurposeError(uri, keystore.Purpose(k.Purpose), keystore.Purpose(d.Purpose))
	case k.State == store.KeyActive:
	case k.State == store.KeyDeactivated && rederive:
	default:
		return nil, fmt.Errorf("key-derivation key %s: %w: its state is %s", uri, ErrRetired, k.State)
	}
	kdks, ok := c.cfg.Keys.(keystore.KDKStore)
	if !ok {
		return nil, fmt.Errorf("key-derivation key %s: no configured keystore holds key-derivation keys: %w", uri, errors.ErrUnsupported)
	}
	purpose := keystore.Purpose(d.Purpose)
	return d.Derive(func(block []byte) ([]byte, error) { return kdks.PRF(ctx, uri, purpose, block) })
}
