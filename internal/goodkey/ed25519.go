package goodkey

import (
	"errors"
	"math/big"
	"slices"
	"sync"
)

// This file checks an Ed25519 public key encoding (RFC 8032 5.1.3) for canonicity, for being a curve point,
// and for small order, with plain math/big. It does not compute the point: whether y belongs to a point is
// a quadratic-residue test (a Jacobi symbol), and the eight points of order dividing 8 (the curve's
// cofactor) have only five distinct y-coordinates: 1 (the identity), -1 (order 2), 0 (order 4, two points)
// and ±y8 (order 8, four points). The test file cross-checks this against an exact computation of [8]P.

type edParams struct {
	p, d, y8, negY8, pMinus1 *big.Int
}

// edCurve holds the constants of edwards25519; computed once, never modified.
var edCurve = sync.OnceValue(func() edParams {
	p := new(big.Int).Lsh(big.NewInt(1), 255)
	p.Sub(p, big.NewInt(19))
	// d = -121665/121666 mod p (RFC 8032 5.1).
	d := new(big.Int).ModInverse(big.NewInt(121666), p)
	d.Mul(d, big.NewInt(-121665))
	d.Mod(d, p)
	// y of the order-8 points, from their encoding 26e8958f...6d53fc05 (libsodium's blocklist).
	y8 := leInt([]byte{
		0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
		0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
	})
	return edParams{
		p: p, d: d, y8: y8,
		negY8:   new(big.Int).Sub(p, y8),
		pMinus1: new(big.Int).Sub(p, big.NewInt(1)),
	}
})

func leInt(b []byte) *big.Int {
	be := slices.Clone(b)
	slices.Reverse(be)
	return new(big.Int).SetBytes(be)
}

// ed25519SmallOrder checks the 32-byte encoding k and returns the point's order if it is 1, 2, 4 or 8, and 0
// if the order is larger. It returns an error if k is not a canonical encoding of a curve point.
func ed25519SmallOrder(k []byte) (int, error) {
	c := edCurve()
	xSign := k[31] >> 7
	enc := slices.Clone(k)
	enc[31] &= 0x7f
	y := leInt(enc)
	// RFC 8032 5.1.3 step 1: y must be below p.
	if y.Cmp(c.p) >= 0 {
		return 0, errors.New("is not a canonical encoding (y >= p)")
	}
	// Steps 2-3: x² = u/v with u = y² - 1, v = d y² + 1 has a root iff u·v is a square mod p (u/v = u·v/v²).
	y2 := new(big.Int).Mul(y, y)
	u := new(big.Int).Sub(y2, big.NewInt(1))
	u.Mod(u, c.p)
	v := new(big.Int).Mul(c.d, y2)
	v.Add(v, big.NewInt(1))
	v.Mod(v, c.p)
	if v.Sign() == 0 {
		return 0, errors.New("is not a curve point")
	}
	uv := new(big.Int).Mul(u, v)
	uv.Mod(uv, c.p)
	if big.Jacobi(uv, c.p) < 0 {
		return 0, errors.New("is not a curve point")
	}
	// Step 4: x = 0 (u = 0) with the sign bit set is a non-canonical encoding.
	if u.Sign() == 0 && xSign == 1 {
		return 0, errors.New("is not a canonical encoding (x = 0 with sign bit set)")
	}
	switch {
	case y.Cmp(big.NewInt(1)) == 0:
		return 1, nil
	case y.Cmp(c.pMinus1) == 0:
		return 2, nil
	case y.Sign() == 0:
		return 4, nil
	case y.Cmp(c.y8) == 0 || y.Cmp(c.negY8) == 0:
		return 8, nil
	}
	return 0, nil
}
