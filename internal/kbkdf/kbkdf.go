package kbkdf

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// PRF computes one output block of the pseudorandom function under the key-derivation key over data. A PRF
// backed by an HSM signs data there; HMACSHA256 computes it in memory.
type PRF func(data []byte) ([]byte, error)

// HMACSHA256 returns the PRF HMAC-SHA-256 (FIPS 198-1) under key, for a key held in memory (the software
// keystore, tests). The returned PRF keeps key; the caller must not clear it while the PRF is in use.
func HMACSHA256(key []byte) PRF {
	return func(data []byte) ([]byte, error) {
		m := hmac.New(sha256.New, key)
		m.Write(data)
		return m.Sum(nil), nil
	}
}

// MaxLength is the largest output Counter produces, in bytes. SP 800-108r1 section 4.1 allows up to
// (2^r - 1) PRF blocks; Keyward's keys are 32 bytes, and [L]_32 holds at most 2^32 - 1 bits.
const MaxLength = 1024

// Counter derives length bytes from fixed, the fixed input data, in counter mode (SP 800-108r1 section 4.1):
// K(i) = PRF(K_IN, [i]_32 || fixed) for i = 1..n, n = ceil(length / h), output the leftmost length bytes of
// K(1) || ... || K(n). Every PRF block must have the same size h > 0. On error nothing is returned.
func Counter(prf PRF, fixed []byte, length int) ([]byte, error) {
	if length <= 0 || length > MaxLength {
		return nil, fmt.Errorf("kbkdf: output length %d bytes is outside 1..%d", length, MaxLength)
	}
	in := make([]byte, 4+len(fixed))
	copy(in[4:], fixed)
	out := make([]byte, 0, length+sha256.Size)
	h := 0
	for i := uint32(1); len(out) < length; i++ {
		binary.BigEndian.PutUint32(in, i)
		k, err := prf(in)
		if err != nil {
			clear(out)
			return nil, fmt.Errorf("kbkdf: PRF block %d: %w", i, err)
		}
		switch {
		case len(k) == 0:
			clear(out)
			return nil, errors.New("kbkdf: the PRF returned an empty block")
		case h == 0:
			h = len(k)
		case len(k) != h:
			clear(k)
			clear(out)
			return nil, fmt.Errorf("kbkdf: the PRF returned a block of %d bytes after one of %d", len(k), h)
		}
		out = append(out, k...)
		clear(k)
	}
	clear(out[length:])
	return out[:length:length], nil
}

// FixedInput returns the fixed input data of SP 800-108r1 section 4: label || 0x00 || context || [L]_32,
// with L the output length in bits. The label must not contain a zero byte, which separates it from the
// context.
func FixedInput(label string, context []byte, length int) ([]byte, error) {
	if strings.IndexByte(label, 0) >= 0 {
		return nil, errors.New("kbkdf: the label contains a zero byte, which SP 800-108 reserves as its separator")
	}
	if length <= 0 || length > MaxLength {
		return nil, fmt.Errorf("kbkdf: output length %d bytes is outside 1..%d", length, MaxLength)
	}
	b := make([]byte, 0, len(label)+1+len(context)+4)
	b = append(b, label...)
	b = append(b, 0)
	b = append(b, context...)
	return binary.BigEndian.AppendUint32(b, uint32(length*8)), nil
}

// Device names a device key: the inputs of its derivation.
type Device struct {
	Purpose     string // the label: the KDK's purpose, e.g. "device-link"
	Environment string
	ProductLine string
	Serial      string // the device serial (its identity's common name)
	KDKVersion  int
	Length      int // bytes
}

// contextTag starts every device context, so a change of its layout is a change of every key.
const contextTag = "keyward device key v1"

// maxField bounds each text field of a device context.
const maxField = math.MaxUint16

// Context returns the context of a device key, unambiguous by construction: the tag "keyward device key v1",
// then environment, product line and device serial, each as its length in bytes ([n]_16, big-endian) and its
// bytes, then [KDK version]_32 and [output length in bytes]_32. No two Devices (with the same purpose) share
// a context.
func (d Device) Context() ([]byte, error) {
	fields := []struct{ name, v string }{{"environment", d.Environment}, {"product line", d.ProductLine}, {"device serial", d.Serial}}
	n := 2 + len(contextTag) + 8
	for _, f := range fields {
		switch {
		case f.v == "":
			return nil, fmt.Errorf("kbkdf: device key context: empty %s", f.name)
		case len(f.v) > maxField:
			return nil, fmt.Errorf("kbkdf: device key context: %s of %d bytes exceeds %d", f.name, len(f.v), maxField)
		}
		n += 2 + len(f.v)
	}
	if d.KDKVersion < 1 || int64(d.KDKVersion) > math.MaxUint32 {
		return nil, fmt.Errorf("kbkdf: device key context: KDK version %d is outside 1..%d", d.KDKVersion, uint32(math.MaxUint32))
	}
	if d.Length <= 0 || d.Length > MaxLength {
		return nil, fmt.Errorf("kbkdf: device key context: length %d bytes is outside 1..%d", d.Length, MaxLength)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint16(b, uint16(len(contextTag)))
	b = append(b, contextTag...)
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.v)))
		b = append(b, f.v...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(d.KDKVersion))
	return binary.BigEndian.AppendUint32(b, uint32(d.Length)), nil
}

// FixedInput returns the fixed input data of the device key: purpose as label, Context as context.
func (d Device) FixedInput() ([]byte, error) {
	if d.Purpose == "" {
		return nil, errors.New("kbkdf: device key: empty purpose (the label)")
	}
	ctx, err := d.Context()
	if err != nil {
		return nil, err
	}
	return FixedInput(d.Purpose, ctx, d.Length)
}

// Derive derives the device key d under the KDK behind prf.
func (d Device) Derive(prf PRF) ([]byte, error) {
	fixed, err := d.FixedInput()
	if err != nil {
		return nil, err
	}
	return Counter(prf, fixed, d.Length)
}
