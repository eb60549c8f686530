package pkcs11test

// Test-only unwrapping of AES key wrap (RFC 3394) and AES key wrap with padding (RFC 5649), so tests can open
// what a token's C_WrapKey produced with a transport key they know. It is written from the RFCs with
// crypto/aes (golang.org/x/crypto has no RFC 5649); the pkcs11 package's TestKeyUnwrapVectors checks it against
// the RFCs' published vectors. Production code never unwraps: the device's secure element does.

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"errors"
	"fmt"
)

var (
	rfc3394IV  = []byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6} // RFC 3394 section 2.2.3.1
	rfc5649AIV = []byte{0xA6, 0x59, 0x59, 0xA6}                         // RFC 5649 section 3
)

// unwrapW inverts the wrapping process W of RFC 3394 section 2.2.2 (index-based form) over n >= 2 blocks and
// returns the recovered integrity check register A and the plaintext blocks.
func unwrapW(kek, c []byte) (a, p []byte, err error) {
	if len(c)%8 != 0 || len(c) < 24 {
		return nil, nil, fmt.Errorf("wrapped key is %d bytes; want a multiple of 8, at least 24", len(c))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, nil, err
	}
	n := len(c)/8 - 1
	a = bytes.Clone(c[:8])
	r := bytes.Clone(c[8:])
	var b [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(a)^t)
			copy(b[8:], r[(i-1)*8:i*8])
			block.Decrypt(b[:], b[:])
			copy(a, b[:8])
			copy(r[(i-1)*8:i*8], b[8:])
		}
	}
	return a, r, nil
}

// UnwrapRFC3394 is AES key unwrap, RFC 3394 section 2.2.2, with the default IV.
func UnwrapRFC3394(kek, c []byte) ([]byte, error) {
	a, p, err := unwrapW(kek, c)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(a, rfc3394IV) {
		return nil, errors.New("RFC 3394 integrity check failed")
	}
	return p, nil
}

// UnwrapRFC5649 is AES key unwrap with padding, RFC 5649 section 4.2.
func UnwrapRFC5649(kek, c []byte) ([]byte, error) {
	var a, p []byte
	switch {
	case len(c) == 16: // one 64-bit block of plaintext: a single AES decryption (section 4.2, n = 1)
		block, err := aes.NewCipher(kek)
		if err != nil {
			return nil, err
		}
		b := make([]byte, 16)
		block.Decrypt(b, c)
		a, p = b[:8], b[8:]
	default:
		var err error
		if a, p, err = unwrapW(kek, c); err != nil {
			return nil, err
		}
	}
	// Section 3: A must be the AIV, its MLI between 8(n-1)+1 and 8n, and the padding zero.
	if !bytes.Equal(a[:4], rfc5649AIV) {
		return nil, errors.New("RFC 5649 integrity check failed (AIV)")
	}
	mli := int(binary.BigEndian.Uint32(a[4:]))
	if mli <= len(p)-8 || mli > len(p) {
		return nil, fmt.Errorf("RFC 5649 integrity check failed (MLI %d for %d bytes)", mli, len(p))
	}
	for _, z := range p[mli:] {
		if z != 0 {
			return nil, errors.New("RFC 5649 integrity check failed (padding)")
		}
	}
	return p[:mli], nil
}
