package hygiene

import (
	"math/big"

	"github.com/remyoudompheng/bigfft"
)

// Batch GCD's trees multiply and divide numbers of up to the size of all the moduli together (200 million bits
// for 100,000 RSA-2048 keys). math/big multiplies with Karatsuba, O(n^1.58), and divides through it, so the top
// levels of the trees dominated and the whole grew far faster than the number of moduli. Products here go
// through bigfft (Schönhage–Strassen, O(n log n log log n); math/big below its threshold), and a remainder
// through a reciprocal found by Newton's iteration and Barrett's reduction (HAC 14.42), both made of those
// products, so every level costs about the same and the trees are near-linear in the total size.

// mul returns x·y.
func mul(x, y *big.Int) *big.Int { return bigfft.Mul(x, y) }

// directBits is the size below which math/big's own division is used: measured, below about four million bits
// the reciprocal and the two products cost more than its recursive division.
const directBits = 1 << 22

// mod returns x mod m for x >= 0, m > 0.
func mod(x, m *big.Int) *big.Int {
	return modWith(x, m, directBits)
}

func modWith(x, m *big.Int, direct int) *big.Int {
	s := m.BitLen()
	if x.Cmp(m) < 0 {
		return new(big.Int).Set(x)
	}
	if s <= direct {
		return new(big.Int).Mod(x, m)
	}
	// Barrett's reduction, generalised to x < 2^(2s+d): with mu = floor(2^(2s+d) / m), the estimate
	// q = floor(floor(x / 2^(s-1)) * mu / 2^(s+1+d)) is at most 3 below floor(x / m) (each of the three floors loses
	// less than 1 of the quotient, as m >= 2^(s-1)).
	d := max(0, x.BitLen()-2*s)
	mu := reciprocal(new(big.Int).Lsh(m, uint(d)), direct) // floor(2^(2(s+d)) / (m 2^d)) = floor(2^(2s+d) / m)
	q := mul(new(big.Int).Rsh(x, uint(s-1)), mu)
	q.Rsh(q, uint(s+1+d))
	r := new(big.Int).Sub(x, mul(q, m))
	for range 4 {
		if r.Cmp(m) < 0 {
			return r
		}
		r.Sub(r, m)
	}
	// Unreachable by the bound above; kept exact all the same.
	return r.Mod(r, m)
}

// reciprocal returns floor(2^(2s) / m) for m > 0 of s bits.
func reciprocal(m *big.Int, direct int) *big.Int {
	s := m.BitLen()
	one := big.NewInt(1)
	if s <= direct {
		return new(big.Int).Quo(new(big.Int).Lsh(one, uint(2*s)), m)
	}
	// From the top h bits of m, a reciprocal good to about h bits, scaled to s; one Newton step,
	// r1 = 2 r0 - floor(m r0^2 / 2^(2s)), doubles the bits that are right, to within a few units; the remainder
	// 2^(2s) - m r1 then corrects it exactly with additions.
	h := s/2 + 2
	t := s - h
	r := reciprocal(new(big.Int).Rsh(m, uint(t)), direct)
	r.Lsh(r, uint(t))
	e := mul(m, mul(r, r))
	e.Rsh(e, uint(2*s))
	r.Lsh(r, 1).Sub(r, e)
	rest := new(big.Int).Lsh(one, uint(2*s))
	rest.Sub(rest, mul(m, r))
	for range 16 {
		switch {
		case rest.Sign() < 0:
			r.Sub(r, one)
			rest.Add(rest, m)
		case rest.Cmp(m) >= 0:
			r.Add(r, one)
			rest.Sub(rest, m)
		default:
			return r
		}
	}
	// The Newton step was further off than its bound: exact all the same, slowly.
	return new(big.Int).Quo(new(big.Int).Lsh(one, uint(2*s)), m)
}
