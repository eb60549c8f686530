package filter

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
)

// fuse is a 4-wise binary fuse table (Graf and Lemire, "Binary Fuse Filters: Fast and Smaller Than Xor
// Filters", ACM JEA 2022) used as a static function: for every key of the set it was built from, the XOR of
// the w-bit entries at the key's four positions equals the key's value. For a key outside the set the XOR is
// an arbitrary w-bit value. The table is packed: entry i occupies bits [i*w, (i+1)*w) of data, least
// significant bit first.
type fuse struct {
	seed       [32]byte
	width      uint8  // bits per entry, 1..16
	segLen     uint32 // power of two
	segCount   uint32
	arrayLen   uint32 // (segCount + 3) * segLen
	data       []byte // ceil(arrayLen*width/8) bytes, followed in memory by 8 zero bytes of padding
	segLenMask uint32
}

// maxSegLen bounds the segment length: the reference implementation caps it at 2^18.
const maxSegLen = 1 << 18

// arity is the number of positions per key.
const arity = 4

// keyHash is a key's SHA-256 digest under a level's seed: SHA-256(seed || serial). SHA-256 is the keyed hash
// that picks positions and fingerprints; a 32-byte random seed per level (and per build) makes the layout
// unpredictable to anyone choosing serials, and lets a failed construction retry with fresh positions.
func keyHash(seed *[32]byte, serial []byte) [32]byte {
	var buf [32 + maxSerialLen]byte
	copy(buf[:32], seed[:])
	n := copy(buf[32:], serial)
	return sha256.Sum256(buf[:32+n])
}

// positions returns the four table positions of a key digest.
func (f *fuse) positions(d *[32]byte) [arity]uint32 {
	a := binary.BigEndian.Uint64(d[0:8])
	b := binary.BigEndian.Uint64(d[8:16])
	hi, _ := bits.Mul64(a, uint64(f.segCount)*uint64(f.segLen))
	h0 := uint32(hi)
	var p [arity]uint32
	p[0] = h0
	p[1] = (h0 + f.segLen) ^ (uint32(b) & f.segLenMask)
	p[2] = (h0 + 2*f.segLen) ^ (uint32(b>>21) & f.segLenMask)
	p[3] = (h0 + 3*f.segLen) ^ (uint32(b>>42) & f.segLenMask)
	return p
}

// fingerprint is the w-bit value a level-1 key maps to.
func fingerprint(d *[32]byte, w uint8) uint16 {
	return uint16(binary.BigEndian.Uint64(d[16:24]) & (1<<w - 1))
}

func (f *fuse) get(i uint32) uint16 {
	bit := uint64(i) * uint64(f.width)
	v := binary.LittleEndian.Uint32(f.data[bit/8:]) // data is padded, so 4 bytes are always readable
	return uint16(v>>(bit%8)) & (1<<f.width - 1)
}

func (f *fuse) set(i uint32, v uint16) {
	bit := uint64(i) * uint64(f.width)
	cur := binary.LittleEndian.Uint32(f.data[bit/8:])
	mask := uint32(1<<f.width-1) << (bit % 8)
	cur = cur&^mask | uint32(v)<<(bit%8)&mask
	binary.LittleEndian.PutUint32(f.data[bit/8:], cur)
}

// eval returns the XOR of the entries at d's positions. An empty table evaluates to 0.
func (f *fuse) eval(d *[32]byte) uint16 {
	if f.arrayLen == 0 {
		return 0
	}
	p := f.positions(d)
	return f.get(p[0]) ^ f.get(p[1]) ^ f.get(p[2]) ^ f.get(p[3])
}

// tableBytes is the encoded size of a table of n entries of w bits.
func tableBytes(n uint32, w uint8) int { return int((uint64(n)*uint64(w) + 7) / 8) }

// layout computes the segment length and count for size keys at the given size factor, following the
// reference implementation's 4-wise parameters: segment length 2^floor(ln(size)/ln(2.91) - 0.5), capped at
// 2^18.
func layout(size int, factor float64) (segLen, segCount, arrayLen uint32) {
	if size == 0 {
		return 0, 0, 0
	}
	sl := 4
	if size > 1 {
		e := math.Floor(math.Log(float64(size))/math.Log(2.91) - 0.5)
		if e > 2 {
			sl = 1 << int(e)
		}
	}
	sl = min(sl, maxSegLen)
	capacity := int(math.Round(float64(size) * factor))
	if capacity < size+arity {
		capacity = size + arity
	}
	initSegCount := (capacity+sl-1)/sl - (arity - 1)
	if initSegCount < 1 {
		initSegCount = 1
	}
	return uint32(sl), uint32(initSegCount), uint32((initSegCount + arity - 1) * sl)
}

// sizeFactor is the reference implementation's 4-wise table size factor: max(1.075, 0.77 + 0.305 ln(600000)/ln(n)).
func sizeFactor(size int) float64 {
	if size < 2 {
		return 4
	}
	return math.Max(1.075, 0.77+0.305*math.Log(600000)/math.Log(float64(size)))
}

var errConstruction = errors.New("binary fuse construction failed")

// buildFuse builds a table over the digests ds with values vals (w bits each), by hypergraph peeling. It fails
// with errConstruction when the peeling gets stuck; the caller retries with a new seed or a larger factor.
// Digests must be distinct.
func buildFuse(seed [32]byte, w uint8, ds [][32]byte, vals []uint16, factor float64) (*fuse, error) {
	f := &fuse{seed: seed, width: w}
	f.segLen, f.segCount, f.arrayLen = layout(len(ds), factor)
	f.data = make([]byte, tableBytes(f.arrayLen, w)+8)
	if len(ds) == 0 {
		return f, nil
	}
	f.segLenMask = f.segLen - 1
	n := f.arrayLen
	count := make([]uint8, n)
	xorIdx := make([]uint32, n)
	pos := make([][arity]uint32, len(ds))
	for i := range ds {
		pos[i] = f.positions(&ds[i])
		for _, p := range pos[i] {
			if count[p] == math.MaxUint8 {
				return nil, errConstruction
			}
			count[p]++
			xorIdx[p] ^= uint32(i)
		}
	}
	queue := make([]uint32, 0, len(ds))
	for p := uint32(0); p < n; p++ {
		if count[p] == 1 {
			queue = append(queue, p)
		}
	}
	type peeled struct{ key, pos uint32 }
	stack := make([]peeled, 0, len(ds))
	for len(queue) > 0 {
		p := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if count[p] != 1 {
			continue
		}
		k := xorIdx[p]
		stack = append(stack, peeled{k, p})
		for _, q := range pos[k] {
			count[q]--
			xorIdx[q] ^= k
			if count[q] == 1 {
				queue = append(queue, q)
			}
		}
	}
	if len(stack) != len(ds) {
		return nil, errConstruction
	}
	for i := len(stack) - 1; i >= 0; i-- {
		k, p := stack[i].key, stack[i].pos
		v := vals[k]
		for _, q := range pos[k] {
			if q != p {
				v ^= f.get(q)
			}
		}
		f.set(p, v)
	}
	return f, nil
}
