package goodkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"
)

// refSmallOrder is the reference the fast check is tested against: it decompresses the point as RFC 8032
// 5.1.3 describes (with the square root) and doubles it three times, returning the order if [8]P is the
// identity.
func refSmallOrder(k []byte) (int, error) {
	c := edCurve()
	enc := append([]byte(nil), k...)
	xSign := enc[31] >> 7
	enc[31] &= 0x7f
	y := leInt(enc)
	if y.Cmp(c.p) >= 0 {
		return 0, errors.New("non-canonical")
	}
	y2 := new(big.Int).Mul(y, y)
	u := new(big.Int).Sub(y2, big.NewInt(1))
	u.Mod(u, c.p)
	v := new(big.Int).Mul(c.d, y2)
	v.Add(v, big.NewInt(1))
	v.Mod(v, c.p)
	w := new(big.Int).Mul(u, new(big.Int).ModInverse(v, c.p))
	w.Mod(w, c.p)
	e := new(big.Int).Add(c.p, big.NewInt(3))
	e.Rsh(e, 3)
	x := new(big.Int).Exp(w, e, c.p)
	x2 := new(big.Int).Mod(new(big.Int).Mul(x, x), c.p)
	if x2.Cmp(w) != 0 {
		if x2.Cmp(new(big.Int).Mod(new(big.Int).Neg(w), c.p)) != 0 {
			return 0, errors.New("not on curve")
		}
		sqrtM1 := new(big.Int).Exp(big.NewInt(2), new(big.Int).Rsh(c.pMinus1, 2), c.p)
		x.Mod(x.Mul(x, sqrtM1), c.p)
	}
	if x.Sign() == 0 && xSign == 1 {
		return 0, errors.New("non-canonical")
	}
	if uint8(x.Bit(0)) != xSign {
		x.Sub(c.p, x)
	}
	type pt struct{ x, y *big.Int }
	add := func(a, b pt) pt {
		t := new(big.Int).Mul(new(big.Int).Mul(a.x, b.x), new(big.Int).Mul(a.y, b.y))
		t.Mod(t.Mul(t, c.d), c.p)
		d1 := new(big.Int).ModInverse(new(big.Int).Mod(new(big.Int).Add(big.NewInt(1), t), c.p), c.p)
		d2 := new(big.Int).ModInverse(new(big.Int).Mod(new(big.Int).Sub(big.NewInt(1), t), c.p), c.p)
		x3 := new(big.Int).Add(new(big.Int).Mul(a.x, b.y), new(big.Int).Mul(a.y, b.x))
		y3 := new(big.Int).Add(new(big.Int).Mul(a.y, b.y), new(big.Int).Mul(a.x, b.x)) // a = -1
		return pt{new(big.Int).Mod(x3.Mul(x3, d1), c.p), new(big.Int).Mod(y3.Mul(y3, d2), c.p)}
	}
	p := pt{x, y}
	for order := 1; order <= 8; order *= 2 {
		if p.x.Sign() == 0 && p.y.Cmp(big.NewInt(1)) == 0 {
			return order, nil
		}
		p = add(p, p)
	}
	return 0, nil
}

// TestEd25519AgainstReference compares the fast check with the reference on the small-order encodings, on
// every small y with both sign bits, and on random keys.
func TestEd25519AgainstReference(t *testing.T) {
	var inputs [][]byte
	for _, h := range []string{
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		b := mustHex(t, h)
		inputs = append(inputs, b)
		s := append([]byte(nil), b...)
		s[31] ^= 0x80
		inputs = append(inputs, s)
	}
	for y := range 300 {
		for _, sign := range []byte{0, 0x80} {
			b := make([]byte, 32)
			b[0], b[1], b[31] = byte(y), byte(y>>8), sign
			inputs = append(inputs, b)
		}
	}
	for range 50 {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		inputs = append(inputs, pub)
	}
	orders := map[int]int{}
	for _, in := range inputs {
		got, gotErr := ed25519SmallOrder(in)
		want, wantErr := refSmallOrder(in)
		if (gotErr == nil) != (wantErr == nil) || got != want {
			t.Errorf("%x: fast = %d, %v; reference = %d, %v", in, got, gotErr, want, wantErr)
		}
		if gotErr == nil {
			orders[got]++
		}
	}
	t.Logf("orders seen: %v", orders)
	for _, o := range []int{1, 2, 4, 8} {
		if orders[o] == 0 {
			t.Errorf("no point of order %d among the inputs", o)
		}
	}
}
