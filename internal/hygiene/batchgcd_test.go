package hygiene

import (
	"context"
	"crypto/rand"
	"math/big"
	"slices"
	"testing"
)

func prime(t testing.TB, bits int) *big.Int {
	t.Helper()
	p, err := rand.Prime(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBatchGCDPlanted plants each way moduli can share primes among RSA-shaped moduli (products of two 256-bit
// primes) and checks that exactly those are found, with their factors.
func TestBatchGCDPlanted(t *testing.T) {
	var moduli []*big.Int
	for range 40 {
		moduli = append(moduli, mul(prime(t, 256), prime(t, 256)))
	}
	p, q1, q2 := prime(t, 256), prime(t, 256), prime(t, 256)
	r, s, u, v := prime(t, 256), prime(t, 256), prime(t, 256), prime(t, 256)
	planted := map[int]*big.Int{}
	plant := func(n, factor *big.Int) int {
		moduli = append(moduli, n)
		planted[len(moduli)-1] = factor
		return len(moduli) - 1
	}
	a := plant(mul(p, q1), p) // a and b share p
	moduli = append(moduli, mul(prime(t, 256), prime(t, 256)))
	b := plant(mul(p, q2), p)
	c := plant(mul(r, s), nil) // every factor of c is shared: r with d, s with e
	d := plant(mul(r, u), r)
	e := plant(mul(s, v), s)
	dup := mul(prime(t, 256), prime(t, 256))
	f1 := plant(dup, dup) // the same modulus twice (a duplicate key)
	moduli = append(moduli, mul(prime(t, 256), prime(t, 256)))
	f2 := plant(new(big.Int).Set(dup), dup)

	got, err := BatchGCD(context.Background(), moduli)
	if err != nil {
		t.Fatal(err)
	}
	var idx []int
	for _, sf := range got {
		idx = append(idx, sf.Index)
		want, ok := planted[sf.Index]
		if !ok {
			t.Errorf("modulus %d reported (factor %x), but shares nothing", sf.Index, sf.Factor)
			continue
		}
		if new(big.Int).Mod(moduli[sf.Index], sf.Factor).Sign() != 0 || sf.Factor.BitLen() <= 1 {
			t.Errorf("modulus %d: %x is not a factor of it", sf.Index, sf.Factor)
		}
		if want != nil && sf.Factor.Cmp(want) != 0 {
			t.Errorf("modulus %d: factor %x, want %x", sf.Index, sf.Factor, want)
		}
		switch sf.Index {
		case c: // a proper factor (r or s), found through d or e
			if sf.Factor.Cmp(r) != 0 && sf.Factor.Cmp(s) != 0 {
				t.Errorf("modulus c: factor %x is neither shared prime", sf.Factor)
			}
			if !slices.Equal(sf.With, []int{d, e}) {
				t.Errorf("modulus c shares with %v, want [%d %d]", sf.With, d, e)
			}
		case f1, f2:
			other := f1 + f2 - sf.Index
			if !slices.Equal(sf.With, []int{other}) {
				t.Errorf("duplicate modulus %d shares with %v, want [%d]", sf.Index, sf.With, other)
			}
		}
	}
	if want := []int{a, b, c, d, e, f1, f2}; !slices.Equal(idx, want) {
		t.Errorf("reported %v, want %v", idx, want)
	}
}

// TestBatchGCDAgreesWithPairwise compares the batch result with every pairwise GCD on moduli with small shared
// factors all over (random odd 64-bit numbers share primes often).
func TestBatchGCDAgreesWithPairwise(t *testing.T) {
	for round := range 20 {
		var moduli []*big.Int
		for range 1 + round*7 {
			b := make([]byte, 8)
			_, _ = rand.Read(b)
			b[7] |= 1
			moduli = append(moduli, new(big.Int).SetBytes(b))
		}
		got, err := BatchGCD(context.Background(), moduli)
		if err != nil {
			t.Fatal(err)
		}
		var want []int
		for i := range moduli {
			for j := range moduli {
				if i != j && new(big.Int).GCD(nil, nil, moduli[i], moduli[j]).BitLen() > 1 {
					want = append(want, i)
					break
				}
			}
		}
		var idx []int
		for _, sf := range got {
			idx = append(idx, sf.Index)
			if new(big.Int).Mod(moduli[sf.Index], sf.Factor).Sign() != 0 {
				t.Fatalf("round %d: %x is not a factor of modulus %d", round, sf.Factor, sf.Index)
			}
		}
		if !slices.Equal(idx, want) {
			t.Fatalf("round %d (%d moduli): batch %v, pairwise %v", round, len(moduli), idx, want)
		}
	}
}

func TestBatchGCDCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	moduli := []*big.Int{big.NewInt(15), big.NewInt(21), big.NewInt(35)}
	if _, err := BatchGCD(ctx, moduli); err == nil {
		t.Error("no error from a cancelled context")
	}
}
