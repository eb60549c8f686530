package soft

import (
	"crypto"

	"filippo.io/mldsa"
	mldsax509 "filippo.io/mldsa/x509"

	"github.com/keyward/keyward/internal/keystore"
)

// ML-DSA-65 keys (keystore.MLDSA65) for hybrid firmware signatures. They are sealed like every other key: the
// PKCS #8 encoding (the 32-byte seed form of RFC 9881, via filippo.io/mldsa/x509, which hands every other key
// type to crypto/x509) under the KEK. Zeroisation cannot reach an mldsa.PrivateKey's expanded key, which the
// package keeps unexported; Destroy still removes the file and drops the cached key.

func generateMLDSA65() (crypto.Signer, error) { return mldsa.GenerateKey(mldsa.MLDSA65()) }

func marshalPKCS8(key crypto.Signer) ([]byte, error) { return mldsax509.MarshalPKCS8PrivateKey(key) }

func parsePKCS8(der []byte) (any, error) { return mldsax509.ParsePKCS8PrivateKey(der) }

// knownAlgorithm reports whether a key file may name alg: any of keystore.Algorithms, or ML-DSA-65.
func knownAlgorithm(alg keystore.Algorithm) bool {
	if alg == keystore.MLDSA65 {
		return true
	}
	_, err := keystore.ParseAlgorithm(string(alg))
	return err == nil
}
