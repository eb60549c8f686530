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
	}, nil
}
