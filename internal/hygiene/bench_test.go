package hygiene

import (
	"context"
	"fmt"
	"math/big"
	"testing"
)

// sievedPrimes returns n primes just below 2^32, from a sieve of Eratosthenes over the odd numbers of the range,
// in about a second for millions.
func sievedPrimes(n int) []uint64 {
	span := uint64(n)*25 + 1024 // prime density near 2^32 is 1/22.2
	lo := (uint64(1)<<32 - span) &^ 1
	composite := make([]bool, span/2)
	for p := uint64(3); p*p < lo+span; p += 2 {
		start := (lo + p - 1) / p * p
		if start%2 == 0 {
			start += p
		}
		for m := start; m < lo+span; m += 2 * p {
			composite[(m-lo-1)/2] = true
		}
	}
	out := make([]uint64, 0, n)
	for i := range composite {
		if !composite[i] {
			if out = append(out, lo+1+2*uint64(i)); len(out) == n {
				return out
			}
		}
	}
	panic("sievedPrimes: span too small")
}

// syntheticModuli returns n 2,048-bit moduli, each the product of 64 distinct 32-bit primes, no prime in two of
// them except the one planted: moduli[n/3] and moduli[2n/3] share their first prime. The trees' cost depends only
// on the moduli's sizes, not on how they factor, so these cost what as many RSA-2048 moduli cost; 200,000 real
// 1,024-bit primes would take many minutes to generate.
func syntheticModuli(n int) ([]*big.Int, uint64) {
	primes := sievedPrimes(64 * n)
	a, b := n/3, 2*n/3
	primes[64*b] = primes[64*a]
	moduli := make([]*big.Int, n)
	for i := range moduli {
		m := big.NewInt(1)
		for _, p := range primes[64*i : 64*i+64] {
			m.Mul(m, new(big.Int).SetUint64(p))
		}
		moduli[i] = m
	}
	return moduli, primes[64*a]
}

func TestSyntheticModuli(t *testing.T) {
	moduli, shared := syntheticModuli(3000)
	if bits := moduli[0].BitLen(); bits < 2040 || bits > 2048 {
		t.Fatalf("modulus of %d bits", bits)
	}
	got, err := BatchGCD(context.Background(), moduli)
	if err != nil {
		t.Fatal(err)
	}
	want := new(big.Int).SetUint64(shared)
	if len(got) != 2 || got[0].Index != 1000 || got[1].Index != 2000 || got[0].Factor.Cmp(want) != 0 || got[1].Factor.Cmp(want) != 0 {
		t.Fatalf("found %+v, want moduli 1000 and 2000 sharing %d", got, shared)
	}
}

// BenchmarkBatchGCD: batch GCD over 100,000 (and 10,000; 1,000 for a quick smoke run) moduli of RSA-2048's size
// with one planted shared prime, which must be found (the two moduli and the prime itself); reports moduli/s.
// The moduli are not RSA keys: each is the product of 64 distinct 32-bit primes (syntheticModuli), because
// 200,000 real 1,024-bit primes take far longer to generate than the benchmark runs. Batch GCD never factors
// anything but the shared prime; its product and remainder trees cost what the moduli's sizes make them cost,
// so these 2,048-bit numbers cost what as many RSA-2048 moduli do.
func BenchmarkBatchGCD(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			moduli, shared := syntheticModuli(n)
			want := new(big.Int).SetUint64(shared)
			b.ResetTimer()
			for b.Loop() {
				got, err := BatchGCD(context.Background(), moduli)
				if err != nil || len(got) != 2 || got[0].Index != n/3 || got[1].Index != 2*n/3 || got[0].Factor.Cmp(want) != 0 {
					b.Fatalf("found %+v, %v; want moduli %d and %d sharing %d", got, err, n/3, 2*n/3, shared)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "moduli/s")
		})
	}
}
