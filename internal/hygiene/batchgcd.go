package hygiene

import (
	"context"
	"math/big"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
)

// SharedFactor is a modulus that shares a prime with at least one other modulus of the set.
type SharedFactor struct {
	Index  int      // the modulus, as an index into the input
	Factor *big.Int // a non-trivial factor of it (a prime when the moduli are RSA moduli)
	With   []int    // for a modulus whose every factor is shared: the moduli it shares one with; else nil
}

// BatchGCD finds every modulus that shares a factor with another one of moduli, by Bernstein's batch GCD
// (product tree, then remainder tree of the squares: z_i = (N_1 ... N_n) mod N_i^2, g_i = gcd(z_i / N_i, N_i)),
// in time near-linear in the total size of the moduli instead of the n^2 pairwise GCDs. A weak device random
// number generator that repeats a prime across two keys makes both keys factorable by anyone who has both public
// keys; this is how such keys are found (Heninger et al., "Mining Your Ps and Qs", USENIX Security 2012).
//
// Moduli must be positive; the result is in index order. The same modulus twice (a duplicate key, which the scan
// reports as such) shows here as two moduli whose every factor is shared.
func BatchGCD(ctx context.Context, moduli []*big.Int) ([]SharedFactor, error) {
	n := len(moduli)
	if n < 2 {
		return nil, nil
	}
	// levels[0] are the moduli; levels[k][i] = levels[k-1][2i] * levels[k-1][2i+1] (an odd one carried up).
	levels := [][]*big.Int{moduli}
	for len(levels[len(levels)-1]) > 1 {
		prev := levels[len(levels)-1]
		next := make([]*big.Int, (len(prev)+1)/2)
		if err := parallel(ctx, len(next), func(i int) {
			if 2*i+1 < len(prev) {
				next[i] = mul(prev[2*i], prev[2*i+1])
			} else {
				next[i] = prev[2*i]
			}
		}); err != nil {
			return nil, err
		}
		levels = append(levels, next)
	}
	// Down the tree: each node's remainder is its parent's modulo the node squared.
	rem := levels[len(levels)-1]
	for k := len(levels) - 2; k >= 0; k-- {
		nodes := levels[k]
		next := make([]*big.Int, len(nodes))
		if err := parallel(ctx, len(nodes), func(i int) {
			next[i] = mod(rem[i/2], mul(nodes[i], nodes[i]))
		}); err != nil {
			return nil, err
		}
		rem = next
		levels[k+1] = nil // the level above is no longer needed
	}
	g := make([]*big.Int, n)
	if err := parallel(ctx, n, func(i int) {
		q := new(big.Int).Quo(rem[i], moduli[i])
		g[i] = new(big.Int).GCD(nil, nil, q, moduli[i])
	}); err != nil {
		return nil, err
	}
	var out []SharedFactor
	var flagged, whole []int
	for i, gi := range g {
		if gi.BitLen() > 1 { // g_i > 1: a factor shared with another modulus
			flagged = append(flagged, i)
			if gi.Cmp(moduli[i]) == 0 {
				whole = append(whole, i)
			}
			out = append(out, SharedFactor{Index: i, Factor: gi})
		}
	}
	// A modulus whose every factor is shared (p with one modulus, q with another; or the same modulus twice) has
	// g_i = N_i, which factors nothing: its GCD with each other flagged modulus (few in any real fleet) does.
	for _, w := range whole {
		sf := &out[sortSearch(out, w)]
		for _, j := range flagged {
			if j == w {
				continue
			}
			f := new(big.Int).GCD(nil, nil, moduli[w], moduli[j])
			if f.BitLen() <= 1 {
				continue
			}
			sf.With = append(sf.With, j)
			if f.Cmp(moduli[w]) < 0 && sf.Factor.Cmp(moduli[w]) == 0 {
				sf.Factor = f // a proper factor
			}
		}
	}
	return out, nil
}

// sortSearch returns the position of index i in s, which is in index order and holds it.
func sortSearch(s []SharedFactor, i int) int {
	return sort.Search(len(s), func(k int) bool { return s[k].Index >= i })
}

// parallel runs f(0..n-1) on every core, stopping early when ctx ends.
func parallel(ctx context.Context, n int, f func(int)) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				f(int(i))
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}
