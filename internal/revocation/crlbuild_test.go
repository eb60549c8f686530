package revocation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/store"
)

// checkRanges fails unless ranges cover every string once and in order: the first starts at "", each
// starts where the one before ends, the bounds increase, and the last is unbounded.
func checkRanges(t *testing.T, ranges []serialRange) {
	t.Helper()
	if len(ranges) == 0 || ranges[0].after != "" || ranges[len(ranges)-1].upTo != "" {
		t.Fatalf("ranges %q do not start at \"\" and end unbounded", ranges)
	}
	for i := 1; i < len(ranges); i++ {
		if ranges[i].after != ranges[i-1].upTo || ranges[i].after == "" || (i > 1 && ranges[i].after <= ranges[i-1].after) {
			t.Fatalf("range %d %q does not follow %q", i, ranges[i], ranges[i-1])
		}
	}
}

// rangeOf returns the index of the range holding s, and how many do.
func rangeOf(ranges []serialRange, s string) (int, int) {
	at, n := -1, 0
	for i, r := range ranges {
		if s > r.after && (r.upTo == "" || s <= r.upTo) {
			at, n = i, n+1
		}
	}
	return at, n
}

func TestSerialRanges(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(5, 6))
	random := func() string {
		b := make([]byte, 16)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		b[0] = b[0]&0x3f | 0x40 // as issuer.NewSerial makes them
		return fmt.Sprintf("%x", b)
	}
	var serials []string
	for range 20000 {
		serials = append(serials, random())
	}
	sort.Strings(serials)
	ranges := serialRanges(serials[0], serials[len(serials)-1], 32)
	checkRanges(t, ranges)
	if len(ranges) != 32 {
		t.Fatalf("%d ranges, want 32", len(ranges))
	}
	counts := make([]int, len(ranges))
	last := 0
	for _, s := range serials {
		i, n := rangeOf(ranges, s)
		if n != 1 || i < last {
			t.Fatalf("serial %s is in %d ranges (range %d after %d)", s, n, i, last)
		}
		counts[i]++
		last = i
	}
	// Random serials spread evenly: every range holds about 1/32 of them.
	for i, c := range counts {
		if c < 20000/32/2 || c > 20000/32*2 {
			t.Errorf("range %d holds %d of 20000 serials: %v", i, c, counts)
		}
	}
	// Serials the bounds do not foresee still fall in exactly one range.
	for _, s := range []string{"0", "3fff", "40", "4", "7fffffffffffffffffffffffffffffffff", "8", "ff", "ABCDEF", "~", "g", "4000000000000000000000000000000000000000"} {
		if _, n := rangeOf(ranges, s); n != 1 {
			t.Errorf("serial %q is in %d ranges", s, n)
		}
	}
	for _, tc := range []struct{ first, last string }{
		{"", ""}, {"4a", "4a"}, {"zz", "zzz"}, {"4a", "3b"}, {"01", "02"}, {"abc", "abd"}, {"0", "ffffffffffffffffffff"},
	} {
		r := serialRanges(tc.first, tc.last, 32)
		checkRanges(t, r)
		if len(r) > 32 {
			t.Errorf("%q..%q: %d ranges", tc.first, tc.last, len(r))
		}
	}
}

// FuzzSerialRanges: whatever the serials stored, the ranges cover every string once, in order.
func FuzzSerialRanges(f *testing.F) {
	f.Add("4000", "7fff", "5", 16)
	f.Add("", "", "", 2)
	f.Add("00000000000000000000", "00000000000000000001", "000000000000000000005", 8)
	f.Add("FFFF", "ffff", "G", 3)
	f.Fuzz(func(t *testing.T, first, last, probe string, n int) {
		if n < 0 || n > 1000 {
			return
		}
		r := serialRanges(first, last, n)
		checkRanges(t, r)
		if len(r) > max(n, 1) {
			t.Fatalf("%d ranges for n %d", len(r), n)
		}
		for _, s := range []string{first, last, probe} {
			if s == "" {
				continue
			}
			if _, k := rangeOf(r, s); k != 1 {
				t.Fatalf("%q is in %d ranges of %q", s, k, r)
			}
		}
	})
}

// TestSpool: a spool keeps its first megabyte in memory, then moves to a file that is not left in the
// directory, and reads back any section of what was written.
func TestSpool(t *testing.T) {
	dir := t.TempDir()
	sp := &spool{dir: dir}
	defer sp.close()
	var want []byte
	rng := mrand.New(mrand.NewPCG(7, 8))
	var offs []int64
	for len(want) < 3*spoolMemory {
		p := make([]byte, rng.IntN(100<<10))
		for i := range p {
			p[i] = byte(rng.UintN(256))
		}
		offs = append(offs, int64(len(want)))
		if _, err := sp.Write(p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
		if sp.size != int64(len(want)) || (sp.f == nil) != (len(want) <= spoolMemory) {
			t.Fatalf("after %d octets: size %d, file %v", len(want), sp.size, sp.f != nil)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 && sp.name == "" {
		t.Fatalf("the spool file is still in its directory: %v", left)
	}
	offs = append(offs, int64(len(want)))
	for i := 0; i+1 < len(offs); i++ {
		for _, j := range []int{i + 1, len(offs) - 1} {
			got, err := io.ReadAll(sp.section(offs[i], offs[j]-offs[i]))
			if err != nil || !bytes.Equal(got, want[offs[i]:offs[j]]) {
				t.Fatalf("section [%d, %d): %d octets, %v", offs[i], offs[j], len(got), err)
			}
		}
	}
	sp.close()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("files left after close: %v", left)
	}
	if _, err := (&spool{dir: dir + "/missing"}).Write(make([]byte, spoolMemory+1)); err == nil || !strings.Contains(err.Error(), "spool") {
		t.Fatalf("a spool in a missing directory: %v", err)
	}
}

// chunkStore is a store.Reader holding one CRL stored in chunks.
type chunkStore struct {
	store.Reader
	der []byte
}

func (c chunkStore) ReadCRLChunk(_ context.Context, issuerID string, delta bool, number int64, seq int) ([]byte, error) {
	if issuerID != "dev/a" || delta || number != 7 || seq < 0 || seq >= store.CRLChunks(int64(len(c.der))) {
		return nil, fmt.Errorf("chunk %d: %w", seq, store.ErrNotFound)
	}
	return c.der[seq*store.CRLChunkSize : min(len(c.der), (seq+1)*store.CRLChunkSize)], nil
}

// FuzzCRLReader: reads and seeks (as http.ServeContent makes them for range requests) on a CRL stored in
// chunks return what a bytes.Reader over the whole CRL returns.
func FuzzCRLReader(f *testing.F) {
	f.Add(int64(2*store.CRLChunkSize+17), []byte{0, 10, 1, 200, 2, 5, 0, 255})
	f.Add(int64(store.CRLChunkSize), []byte{2, 0, 1, 1, 0, 3})
	f.Fuzz(func(t *testing.T, size int64, ops []byte) {
		if size <= store.CRLChunkSize || size > 3*store.CRLChunkSize || len(ops) > 64 {
			return
		}
		der := make([]byte, size)
		for i := range der {
			der[i] = byte(i * 31)
		}
		s := &Service{rs: chunkStore{der: der}}
		r := s.OpenCRL(context.Background(), &store.PublishedCRL{IssuerID: "dev/a", Number: 7, Size: size})
		ref := bytes.NewReader(der)
		for i := 0; i+1 < len(ops); i += 2 {
			arg := int64(ops[i+1]) * (size / 200)
			switch ops[i] % 3 {
			case 0: // read (a read may stop at the end of a chunk: io.ReadFull reads on)
				p, q := make([]byte, arg%(70<<10)+1), make([]byte, arg%(70<<10)+1)
				n, err := io.ReadFull(r, p)
				m, rerr := io.ReadFull(ref, q)
				if n != m || !errors.Is(err, rerr) || !bytes.Equal(p[:n], q[:m]) {
					t.Fatalf("read: %d %v, want %d %v", n, err, m, rerr)
				}
			case 1: // seek from the start
				n, err := r.Seek(arg, io.SeekStart)
				m, _ := ref.Seek(arg, io.SeekStart)
				if n != m || err != nil {
					t.Fatalf("seek to %d: %d %v, want %d", arg, n, err, m)
				}
			case 2: // seek from the end, as for a suffix range
				n, err := r.Seek(-arg, io.SeekEnd)
				m, rerr := ref.Seek(-arg, io.SeekEnd)
				if (err == nil) != (rerr == nil) || (err == nil && n != m) {
					t.Fatalf("seek to end-%d: %d %v, want %d %v", arg, n, err, m, rerr)
				}
			}
		}
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		all, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(all, der) {
			t.Fatalf("whole CRL: %d octets, %v", len(all), err)
		}
	})
}
