package hygiene

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"testing"
)

// TestReduction holds reciprocal and modWith to math/big's exact division, with thresholds small enough that
// the Newton recursion runs several levels deep, on random operands and on the edges of Barrett's bound:
// powers of two and their neighbours as moduli, x below, at and far above m, x wider than m squared.
func TestReduction(t *testing.T) {
	one := big.NewInt(1)
	pow := func(k int) *big.Int { return new(big.Int).Lsh(one, uint(k)) }
	random := func(bits int) *big.Int {
		v, err := rand.Int(rand.Reader, pow(bits))
		if err != nil {
			t.Fatal(err)
		}
		return v.SetBit(v, bits-1, 1)
	}
	var moduli []*big.Int
	for _, bits := range []int{65, 200, 1000, 4097, 20000} {
		moduli = append(moduli, random(bits), pow(bits-1), new(big.Int).Sub(pow(bits), one), new(big.Int).Add(pow(bits-1), one))
	}
	for _, direct := range []int{64, 300, 5000} {
		for _, m := range moduli {
			want := new(big.Int).Quo(pow(2*m.BitLen()), m)
			if got := reciprocal(m, direct); got.Cmp(want) != 0 {
				t.Fatalf("reciprocal of a %d-bit m (direct %d): off by %v", m.BitLen(), direct, new(big.Int).Sub(got, want))
			}
			s := m.BitLen()
			xs := []*big.Int{new(big.Int), new(big.Int).Sub(m, one), new(big.Int).Set(m), new(big.Int).Mul(m, m),
				new(big.Int).Sub(pow(2*s), one), random(2 * s), random(2*s + 7), random(3 * s), random(s + 1)}
			for i, x := range xs {
				want := new(big.Int).Mod(x, m)
				if got := modWith(x, m, direct); got.Cmp(want) != 0 {
					t.Fatalf("x #%d (%d bits) mod a %d-bit m (direct %d): got %v, want %v", i, x.BitLen(), s, direct, got, want)
				}
			}
		}
	}
}

// BenchmarkMod compares the reduction of a 2s-bit number modulo an s-bit one with math/big's, at the sizes of the
// remainder tree's top levels.
func BenchmarkMod(b *testing.B) {
	for _, bits := range []int{1 << 20, 1 << 23} {
		m, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
		x, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(2*bits)))
		b.Run(fmt.Sprintf("bigfft/%d", bits), func(b *testing.B) {
			for b.Loop() {
				mod(x, m)
			}
		})
		b.Run(fmt.Sprintf("mathbig/%d", bits), func(b *testing.B) {
			for b.Loop() {
				new(big.Int).Mod(x, m)
			}
		})
	}
}
