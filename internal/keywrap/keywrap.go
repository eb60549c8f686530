// Package keywrap is AES key wrap with padding (RFC 5649) in software, for keys Keyward hands out wrapped
// under a transport key it holds in memory (development; `keyward key derive --wrap-with file:...`). In an HSM
// the token wraps (C_WrapKey, internal/keystore/pkcs11). Only wrapping is here: a device or its secure element
// unwraps.
//
// It imports only the standard library (crypto/aes); it never logs or keeps a key.
package keywrap

import (
	"crypto/aes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// aiv is the alternative initial value's constant half (RFC 5649 section 3).
var aiv = [4]byte{0xA6, 0x59, 0x59, 0xA6}

// Wrap wraps key under kek (16, 24 or 32 bytes) with AES key wrap with padding, RFC 5649 section 4.1: the AIV
// A65959A6 || [len(key)]_32, the key padded with zeros to a multiple of 8 bytes, then a single AES block
// encryption for one 64-bit block, or the RFC 3394 wrapping process W (section 2.2.1) for more.
func Wrap(kek, key []byte) ([]byte, error) {
	if len(key) == 0 || uint64(len(key)) > math.MaxUint32 {
		return nil, fmt.Errorf("keywrap: key of %d bytes; RFC 5649 wraps 1 to 2^32-1 bytes", len(key))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, errors.New("keywrap: the transport key is not an AES key (16, 24 or 32 bytes)")
	}
	n := (len(key) + 7) / 8
	out := make([]byte, 8*(n+1))
	copy(out[:4], aiv[:])
	binary.BigEndian.PutUint32(out[4:8], uint32(len(key)))
	copy(out[8:], key) // zero padding: out is zeroed
	if n == 1 {
		block.Encrypt(out, out)
		return out, nil
	}
	// RFC 3394 section 2.2.1, index-based form: A = out[:8], R[i] = out[8i:8i+8].
	var b [16]byte
	a := out[:8]
	for j := 0; j <= 5; j++ {
		for i := 1; i <= n; i++ {
			copy(b[:8], a)
			copy(b[8:], out[8*i:8*i+8])
			block.Encrypt(b[:], b[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(b[:8])^t)
			copy(out[8*i:8*i+8], b[8:])
		}
	}
	clear(b[:])
	return out, nil
}
