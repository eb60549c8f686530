package edhoc

import (
	"encoding/binary"
	"fmt"
)

// EDHOC messages are CBOR sequences (RFC 8742) of a handful of item types. They are encoded and decoded by
// hand here: the transcript hashes cover exact bytes, and RFC 9528 section 3.1 requires deterministic
// encoding (RFC 8949 section 4.2.1), which the decoder enforces: shortest-form heads, definite lengths,
// map keys in bytewise order without duplicates. Anything else is ErrMalformed.

const (
	majorUint   = 0
	majorNeg    = 1
	majorBytes  = 2
	majorText   = 3
	majorArray  = 4
	majorMap    = 5
	majorTag    = 6
	majorSimple = 7

	cborTrue = 0xf5

	// maxDepth bounds nesting in EAD values and ID_CRED maps, so a hostile message cannot exhaust the stack.
	maxDepth = 16
)

func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, m|27), n)
	}
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendHead(b, majorUint, uint64(v))
	}
	return appendHead(b, majorNeg, uint64(-(v + 1)))
}

func appendBstr(b, s []byte) []byte { return append(appendHead(b, majorBytes, uint64(len(s))), s...) }

func appendTstr(b []byte, s string) []byte {
	return append(appendHead(b, majorText, uint64(len(s))), s...)
}

// bstr returns the CBOR byte string encoding of s.
func bstr(s []byte) []byte { return appendBstr(nil, s) }

// oneByteInt reports whether id is the one-byte CBOR encoding of an integer in -24..23 (RFC 9528 section
// 3.3.2): such connection identifiers and kid values go on the wire as that integer, not as a byte string.
func oneByteInt(id []byte) bool {
	return len(id) == 1 && (id[0] <= 0x17 || (id[0] >= 0x20 && id[0] <= 0x37))
}

// appendID appends a connection identifier or compact kid: as its integer when it is one, else as a bstr.
func appendID(b, id []byte) []byte {
	if oneByteInt(id) {
		return append(b, id[0])
	}
	return appendBstr(b, id)
}

// decoder reads one CBOR sequence strictly.
type decoder struct {
	b   []byte
	off int
	err error
}

func newDecoder(b []byte) *decoder { return &decoder{b: b} }

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) done() bool { return d.err != nil || d.off >= len(d.b) }

// peek returns the major type of the next item, or -1 at the end.
func (d *decoder) peek() int {
	if d.done() {
		return -1
	}
	return int(d.b[d.off] >> 5)
}

// head reads an item head and returns its major type and argument. Indefinite lengths, reserved values and
// arguments longer than needed are refused (RFC 8949 section 4.2.1).
func (d *decoder) head(what string) (byte, uint64) {
	if d.err != nil {
		return 0, 0
	}
	if d.off >= len(d.b) {
		d.fail("%s: message ends early", what)
		return 0, 0
	}
	ib := d.b[d.off]
	major, ai := ib>>5, ib&0x1f
	d.off++
	var n uint64
	var size int
	switch {
	case ai < 24:
		return major, uint64(ai)
	case ai == 24:
		size = 1
	case ai == 25:
		size = 2
	case ai == 26:
		size = 4
	case ai == 27:
		size = 8
	case ai == 31:
		d.fail("%s: indefinite-length encoding is not deterministic CBOR", what)
		return 0, 0
	default:
		d.fail("%s: reserved CBOR additional information %d", what, ai)
		return 0, 0
	}
	if len(d.b)-d.off < size {
		d.fail("%s: message ends early", what)
		return 0, 0
	}
	for _, c := range d.b[d.off : d.off+size] {
		n = n<<8 | uint64(c)
	}
	d.off += size
	if major == majorSimple {
		if size != 1 || n < 32 {
			d.fail("%s: floating-point or invalid simple value", what)
		}
		return major, n
	}
	// The smallest argument each width may carry: anything below fits a shorter head.
	var least uint64
	switch size {
	case 1:
		least = 24
	case 2:
		least = 0x100
	case 4:
		least = 0x10000
	case 8:
		least = 0x100000000
	}
	if n < least {
		d.fail("%s: integer or length not in its shortest encoding", what)
	}
	return major, n
}

func (d *decoder) take(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)-d.off) < n {
		d.fail("%s: length %d exceeds the %d bytes left", what, n, len(d.b)-d.off)
		return nil
	}
	v := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return v
}

// integer reads an int (major 0 or 1) that fits in int64.
func (d *decoder) integer(what string) int64 {
	major, n := d.head(what)
	if d.err != nil {
		return 0
	}
	if major != majorUint && major != majorNeg {
		d.fail("%s: expected an integer, found CBOR major type %d", what, major)
		return 0
	}
	if n > 1<<62 {
		d.fail("%s: integer out of range", what)
		return 0
	}
	if major == majorNeg {
		return -1 - int64(n)
	}
	return int64(n)
}

// bytes reads a byte string.
func (d *decoder) bytes(what string) []byte {
	major, n := d.head(what)
	if d.err != nil {
		return nil
	}
	if major != majorBytes {
		d.fail("%s: expected a byte string, found CBOR major type %d", what, major)
		return nil
	}
	return d.take(n, what)
}

// id reads a connection identifier or compact kid: a one-byte integer, or a byte string that is not the
// encoding of one (RFC 9528 section 3.3.2 requires the integer form then).
func (d *decoder) id(what string) []byte {
	if d.done() {
		d.fail("%s: message ends early", what)
		return nil
	}
	start := d.off
	switch d.peek() {
	case majorUint, majorNeg:
		v := d.integer(what)
		if d.err == nil && (v < -24 || v > 23) {
			d.fail("%s: integer identifier %d is outside -24..23", what, v)
		}
		return d.b[start:d.off]
	case majorBytes:
		v := d.bytes(what)
		if d.err == nil && oneByteInt(v) {
			d.fail("%s: byte string h'%x' must be encoded as the integer it represents", what, v)
		}
		return v
	default:
		d.fail("%s: expected an integer or a byte string", what)
		return nil
	}
}

// skip reads one well-formed, deterministically encoded item of any type and returns its bytes.
func (d *decoder) skip(what string, depth int) []byte {
	start := d.off
	if depth > maxDepth {
		d.fail("%s: nested deeper than %d", what, maxDepth)
		return nil
	}
	major, n := d.head(what)
	if d.err != nil {
		return nil
	}
	switch major {
	case majorBytes, majorText:
		d.take(n, what)
	case majorArray:
		if n > uint64(len(d.b)) {
			d.fail("%s: array of %d items in a %d-byte message", what, n, len(d.b))
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			d.skip(what, depth+1)
		}
	case majorMap:
		if n > uint64(len(d.b)) {
			d.fail("%s: map of %d entries in a %d-byte message", what, n, len(d.b))
		}
		var prev []byte
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := d.skip(what, depth+1)
			if prev != nil && d.err == nil && compareKeys(prev, k) >= 0 {
				d.fail("%s: map keys not in deterministic order or repeated", what)
			}
			prev = k
			d.skip(what, depth+1)
		}
	case majorTag:
		d.skip(what, depth+1)
	case majorSimple:
		if n < 20 || n > 22 {
			d.fail("%s: unsupported simple value %d", what, n)
		}
	}
	if d.err != nil {
		return nil
	}
	return d.b[start:d.off]
}

// compareKeys orders encoded map keys bytewise lexicographically (RFC 8949 section 4.2.1).
func compareKeys(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return len(a) - len(b)
}

// end fails unless the whole input has been read.
func (d *decoder) end(what string) {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%s: %d unexpected bytes after the last element", what, len(d.b)-d.off)
	}
}
