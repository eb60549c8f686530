package factory

// Injecting keys held in a site HSM. A device that cannot generate its key gets it from the batch at the
// production line; with PKCS#11 custody the key was generated in the site HSM sensitive and extractable only
// wrapped (internal/keystore/pkcs11 wrap.go), and injection exports it with C_WrapKey under an AES transport
// key that the device's secure element also holds (its vendor provisions it; in the site HSM it is imported
// with 'keyward factory transport-key --import'). The HSM never reveals the key in the clear, and Keyward
// never sees it.

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/internal/keystore"
)

// SecretWrapper is a site HSM that derives symmetric device keys with its key-derivation keys and wraps them
// under a transport key (internal/keystore/pkcs11 kdk.go).
type SecretWrapper interface {
	keystore.KDKStore
	WrapSecret(ctx context.Context, secret []byte, transportURI string) ([]byte, string, error)
}

// KeyWrapper is a site HSM that can make device keys for injection and export them wrapped.
type KeyWrapper interface {
	GenerateWrappable(ctx context.Context, purpose keystore.Purpose, alg keystore.Algorithm, label string) (keystore.Key, error)
	WrapKey(ctx context.Context, keyURI, transportURI string) ([]byte, error)
}

// HSMInjection returns the InjectOptions that export a credential's key from hsm wrapped under the transport
// key transportURI (AES key wrap with padding, RFC 5649) and then destroy the HSM's copy.
func HSMInjection(ctx context.Context, hsm keystore.Keystore, transportURI string) (InjectOptions, error) {
	w, ok := hsm.(KeyWrapper)
	if !ok {
		return InjectOptions{}, badRequest("the %s keystore cannot wrap keys; name the site HSM with --keystore pkcs11:...", hsm.Location())
	}
	if transportURI == "" {
		return InjectOptions{}, badRequest("name the transport key to wrap under with --wrap-with (see 'keyward factory transport-key')")
	}
	return InjectOptions{
		Wrap: func(keyURI string) ([]byte, string, error) {
			wrapped, err := w.WrapKey(ctx, keyURI, transportURI)
			if err != nil {
				return nil, "", err
			}
			return wrapped, fmt.Sprintf("C_WrapKey AES key wrap (RFC 5649 / RFC 3394) under %s", transportURI), nil
		},
		Release: func(keyURI string) error { return hsm.Destroy(ctx, keyURI) },
		WrapSymmetric: func(h *BatchHeader, c *Credential) ([]InjectedSymmetric, error) {
			sw, ok := hsm.(SecretWrapper)
			if !ok {
				return nil, badRequest("the %s keystore cannot derive symmetric keys", hsm.Location())
			}
			return deriveWrapped(ctx, sw, h, c, transportURI)
		},
	}, nil
}

// deriveWrapped derives each symmetric key of credential c in the HSM (its KDK signs the SP 800-108 counter
// blocks with CKM_SHA256_HMAC) and wraps it there under transportURI; each clear key is cleared at once.
func deriveWrapped(ctx context.Context, hsm SecretWrapper, h *BatchHeader, c *Credential, transportURI string) ([]InjectedSymmetric, error) {
	out := make([]InjectedSymmetric, 0, len(c.Symmetric))
	for _, s := range c.Symmetric {
		var kdk *BatchKDK
		for i := range h.Symmetric {
			if h.Symmetric[i].Purpose == s.Purpose && h.Symmetric[i].Version == s.KDKVersion {
				kdk = &h.Symmetric[i]
			}
		}
		if kdk == nil {
			return nil, fmt.Errorf("%w: credential %d names a %s key of KDK version %d, which the batch header does not", ErrCorrupt, c.Index, s.Purpose, s.KDKVersion)
		}
		purpose := keystore.Purpose(s.Purpose)
		key, err := deviceKey(h.Environment, h.ProductLine, c.DeviceCN, *kdk).Derive(func(block []byte) ([]byte, error) {
			return hsm.PRF(ctx, kdk.URI, purpose, block)
		})
		if err != nil {
			return nil, fmt.Errorf("derive the %s key: %w", s.Purpose, err)
		}
		wrapped, how, err := hsm.WrapSecret(ctx, key, transportURI)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("wrap the %s key: %w", s.Purpose, err)
		}
		out = append(out, InjectedSymmetric{Purpose: s.Purpose, KDKVersion: s.KDKVersion, WrappedKey: wrapped, KeyWrap: how})
	}
	return out, nil
}
