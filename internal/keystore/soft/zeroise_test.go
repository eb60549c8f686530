package soft

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"testing"

	"github.com/keyward/keyward/internal/keystore"
)

func TestZeroise(t *testing.T) {
	for _, alg := range []keystore.Algorithm{keystore.ECDSAP256, keystore.Ed25519, keystore.RSA3072} {
		key, err := generateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		zeroise(key)
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			if k.D.Sign() != 0 {
				t.Errorf("%s: D not zeroised", alg)
			}
		case ed25519.PrivateKey:
			for _, b := range k {
				if b != 0 {
					t.Fatalf("%s: key bytes not zeroised", alg)
				}
			}
		case *rsa.PrivateKey:
			if k.D.Sign() != 0 || k.Primes[0].Sign() != 0 || k.Primes[1].Sign() != 0 || k.Precomputed.Dp.Sign() != 0 {
				t.Errorf("%s: private values not zeroised", alg)
			}
		}
	}
}
