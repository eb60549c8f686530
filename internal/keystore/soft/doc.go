// Package soft is Keyward's software keystore: private keys sealed at rest in a directory, for the embedded
// single-node deployment and for development.
//
// Layout of the directory:
//
//	keystore.json   scrypt salt and parameters, and a verifier: a known plaintext sealed under the KEK
//	<id>.key        one private key: JSON with id, purpose, algorithm, label, creation time, and the PKCS #8
//	                key sealed with AES-256-GCM under the KEK, the additional data binding id, purpose and
//	                algorithm (and label and creation time, so no field of the file can change unnoticed)
//
// The key-encryption key (KEK) is scrypt(passphrase, salt) and is derived once, by Open or Create; the passphrase is
// not kept. Because the metadata is authenticated, renaming or swapping key files, or editing the purpose in one,
// makes it fail to unseal rather than serve a key for the wrong purpose. A key file must also be byte for byte in
// the form this package writes, so any edit at all, even one JSON decoding would forgive, is refused.
//
// A Store caches unsealed keys in memory so hot signing paths neither re-read nor re-decrypt. A key destroyed by
// another process stays in this one's cache; the CA custodian (internal/ca) stops signing with it when the
// change feed reports the destruction.
//
// Zeroisation in Go is best effort. Destroy and Close overwrite what this package can reach: the big.Int words
// of ECDSA and RSA private scalars and primes and the bytes of Ed25519 keys and of decrypted PKCS #8 buffers.
// They cannot reach copies the runtime or the standard library made: temporaries of big.Int arithmetic and
// PKCS #8 parsing left on the heap until reused, the per-key caches crypto/ecdsa and crypto/rsa keep in
// unexported fields (crypto/internal/fips140 key forms), the AES key schedule inside the cipher.AEAD holding the
// KEK, or pages the OS swapped out. Overwriting a key file before removing it does not defeat copy-on-write or
// journaling filesystems, SSD wear levelling or backups; what protects a key on disk is the KEK.
//
// It may import internal/keystore. It must never write a key unsealed, or a passphrase anywhere.
package soft
