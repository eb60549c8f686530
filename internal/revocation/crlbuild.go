package revocation

// This file builds the entries of a CRL in memory that does not grow with their number. A complete CRL lists
// every revoked certificate of a CA, millions of them for a large fleet: the store walk is split into ranges of
// serials that several workers read and encode at once, each into a spool of its own (in memory while small,
// then an unlinked temporary file), and the CRL's revokedCertificates is those spools' segments read back in
// the order of the ranges, so the bytes are those of one walk in serial order. The CA signs a digest computed
// as the segments are read back (ca.Issuer.SignCRLBody), and the signed CRL is stored in chunks read from them
// once more (ra.StoreCRLChunks).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/store"
)

const (
	// spoolMemory is how much of its entries a spool keeps in memory before it moves them to a file: a delta
	// CRL or a small CA's CRL never touches the disk.
	spoolMemory = 1 << 20
	// spoolFlush is how many octets of encoded entries a worker collects before it writes them to its spool.
	spoolFlush = 64 << 10
	// maxWalkers bounds the store walks a complete CRL runs at once: each holds a database connection while it
	// reads a page.
	maxWalkers = 4
	// rangesPerWalker is how many serial ranges each walker gets on average: a walker that finishes early
	// takes the next range, so an uneven spread of serials still keeps every walker busy.
	rangesPerWalker = 8
)

// spool holds the DER of the entries one worker encodes: in memory up to spoolMemory octets, then in a
// temporary file in dir, removed from the directory as soon as it is created (on systems that allow it) so
// that a crash leaves nothing behind.
type spool struct {
	dir  string
	mem  []byte
	f    *os.File
	name string // the file's name while it is still in the directory, removed by close
	size int64
}

func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && len(s.mem)+len(p) <= spoolMemory {
		s.mem = append(s.mem, p...)
		s.size += int64(len(p))
		return len(p), nil
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "keyward-crl-*.spool")
		if err != nil {
			return 0, fmt.Errorf("CRL spool (set the spool directory with a writable, disk-backed one): %w", err)
		}
		s.f = f
		if err := os.Remove(f.Name()); err != nil {
			s.name = f.Name()
		}
		if _, err := f.Write(s.mem); err != nil {
			return 0, fmt.Errorf("CRL spool %s: %w", f.Name(), err)
		}
		s.mem = nil
	}
	n, err := s.f.Write(p)
	s.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("CRL spool %s: %w", s.f.Name(), err)
	}
	return n, nil
}

// section reads octets [off, off+n) of the spool.
func (s *spool) section(off, n int64) io.Reader {
	if s.f == nil {
		return bytes.NewReader(s.mem[off : off+n])
	}
	return io.NewSectionReader(s.f, off, n)
}

func (s *spool) close() {
	if s.f != nil {
		_ = s.f.Close()
		if s.name != "" {
			_ = os.Remove(s.name)
		}
	}
	s.f, s.mem = nil, nil
}

// segment is the part of a spool that holds the entries of one range of serials.
type segment struct {
	sp        *spool
	off, size int64
}

// crlBody is the revokedCertificates of a CRL being built: its segments in order, and how many entries they
// hold. Close removes its spools.
type crlBody struct {
	spools  []*spool
	segs    []segment
	entries int
}

// body returns the ca.CRLBody that reads the segments in order.
func (b *crlBody) body() ca.CRLBody {
	var size int64
	for _, s := range b.segs {
		size += s.size
	}
	return ca.CRLBody{Size: size, Open: func() (io.Reader, error) {
		rs := make([]io.Reader, 0, len(b.segs))
		for _, s := range b.segs {
			if s.size > 0 {
				rs = append(rs, s.sp.section(s.off, s.size))
			}
		}
		return io.MultiReader(rs...), nil
	}}
}

func (b *crlBody) close() {
	for _, s := range b.spools {
		s.close()
	}
}

// encoder encodes entries into a spool, a buffer at a time.
type encoder struct {
	enc ca.CRLEntries
	sp  *spool
	now time.Time
}

// add encodes e (revoked at now if the store has no date).
func (w *encoder) add(e *store.RevocationEntry) error {
	if err := addCRLEntry(&w.enc, e, w.now); err != nil {
		return err
	}
	if w.enc.Buffered() >= spoolFlush {
		_, err := w.enc.WriteTo(w.sp)
		return err
	}
	return nil
}

// segment writes what is buffered and returns the segment of the spool written since offset start.
func (w *encoder) segment(start int64) (segment, error) {
	if _, err := w.enc.WriteTo(w.sp); err != nil {
		return segment{}, err
	}
	return segment{sp: w.sp, off: start, size: w.sp.size - start}, nil
}

// encodeRevoked encodes the entries of the complete CRL of caID: every revoked certificate not expired before
// now, in serial order, read in ranges by up to maxWalkers workers at once.
func (s *Service) encodeRevoked(ctx context.Context, caID string, now time.Time, dir string) (*crlBody, error) {
	first, last, err := s.rs.RevokedSerialRange(ctx, caID)
	if err != nil {
		return nil, err
	}
	walkers := min(maxWalkers, max(2, runtime.GOMAXPROCS(0)))
	ranges := serialRanges(first, last, walkers*rangesPerWalker)
	walkers = min(walkers, len(ranges))
	b := &crlBody{segs: make([]segment, len(ranges))}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		next    atomic.Int64
		entries atomic.Int64
		wg      sync.WaitGroup
	)
	for range walkers {
		w := &encoder{sp: &spool{dir: dir}, now: now}
		b.spools = append(b.spools, w.sp)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := int(next.Add(1) - 1); r < len(ranges); r = int(next.Add(1) - 1) {
				start, n := w.sp.size, w.enc.Len()
				q := store.RevokedQuery{IssuerID: caID, NotAfterFrom: now, After: ranges[r].after, UpTo: ranges[r].upTo}
				err := s.rs.WalkRevoked(ctx, q, w.add)
				if err == nil {
					b.segs[r], err = w.segment(start)
				}
				if err != nil {
					cancel(err)
					return
				}
				entries.Add(int64(w.enc.Len() - n))
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		b.close()
		return nil, err
	}
	b.entries = int(entries.Load())
	return b, nil
}

// encodeWalk encodes the entries that walk yields, in its order, into one spool.
func encodeWalk(now time.Time, dir string, walk func(add func(*store.RevocationEntry) error) error) (*crlBody, error) {
	w := &encoder{sp: &spool{dir: dir}, now: now}
	b := &crlBody{spools: []*spool{w.sp}}
	err := walk(w.add)
	var seg segment
	if err == nil {
		seg, err = w.segment(0)
	}
	if err != nil {
		b.close()
		return nil, err
	}
	b.segs, b.entries = []segment{seg}, w.enc.Len()
	return b, nil
}

// appendEntries adds entries after those of the body, in their order.
func (b *crlBody) appendEntries(now time.Time, dir string, entries []*store.RevocationEntry) error {
	if len(entries) == 0 {
		return nil
	}
	more, err := encodeWalk(now, dir, func(add func(*store.RevocationEntry) error) error {
		for _, e := range entries {
			if err := add(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.spools = append(b.spools, more.spools...)
	b.segs = append(b.segs, more.segs...)
	b.entries += more.entries
	return nil
}

// serialRange is the serials after < serial <= upTo ("" unbounded), compared octet by octet as the store
// orders them.
type serialRange struct{ after, upTo string }

// serialRanges splits the serials between first and last, as the store orders them, into about n ranges that
// together cover every string once: the first starts at "", the last has no upper bound, so a serial the
// bounds do not foresee (another length, upper case) still falls in exactly one. The bounds are spread
// evenly between the leading hexadecimal digits of first and last: random serials spread evenly over their
// values, and issuer.NewSerial's over their issuance times, which lead them; serials that are not hexadecimal
// get one range, which is correct, only not parallel.
func serialRanges(first, last string, n int) []serialRange {
	const digits = 15 // 60 bits: room for n steps between any two distinct prefixes
	lo, okLo := hexPrefix(first, digits)
	hi, okHi := hexPrefix(last, digits)
	if !okLo || !okHi || hi <= lo || n < 2 {
		return []serialRange{{}}
	}
	var bounds []string
	for i := 1; i < n; i++ {
		v := lo + (hi-lo)/uint64(n)*uint64(i)
		b := fmt.Sprintf("%0*x", digits, v)
		if len(bounds) == 0 || b > bounds[len(bounds)-1] {
			bounds = append(bounds, b)
		}
	}
	ranges := make([]serialRange, 0, len(bounds)+1)
	after := ""
	for _, b := range bounds {
		ranges = append(ranges, serialRange{after: after, upTo: b})
		after = b
	}
	return append(ranges, serialRange{after: after})
}

// hexPrefix reads the first digits of s as a hexadecimal number, padding a shorter s with zeros.
func hexPrefix(s string, digits int) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	p := s[:min(len(s), digits)] + strings.Repeat("0", max(0, digits-len(s)))
	v, err := strconv.ParseUint(p, 16, 64)
	return v, err == nil
}

// CRLReader reads a published CRL, whole or stored in chunks, one chunk in memory at a time. It is an
// io.ReadSeeker, as http.ServeContent wants. A chunked CRL pruned while it is being read (three newer ones
// published meanwhile) fails the read with an error wrapping store.ErrNotFound.
type CRLReader struct {
	ctx   context.Context
	rs    store.Reader
	row   *store.PublishedCRL
	off   int64
	seq   int // the chunk in chunk, -1 for none
	chunk []byte
}

// OpenCRL returns a reader of the DER of the published CRL row.
func (s *Service) OpenCRL(ctx context.Context, row *store.PublishedCRL) *CRLReader {
	return &CRLReader{ctx: ctx, rs: s.rs, row: row, seq: -1}
}

// Size is the length of the DER CRL.
func (r *CRLReader) Size() int64 {
	if r.row.Size == 0 {
		return int64(len(r.row.DER))
	}
	return r.row.Size
}

// Read implements io.Reader.
func (r *CRLReader) Read(p []byte) (int, error) {
	if r.off >= r.Size() {
		return 0, io.EOF
	}
	if !r.row.Chunked() {
		n := copy(p, r.row.DER[r.off:])
		r.off += int64(n)
		return n, nil
	}
	seq := int(r.off / store.CRLChunkSize)
	if seq != r.seq {
		chunk, err := r.rs.ReadCRLChunk(r.ctx, r.row.IssuerID, r.row.Delta, r.row.Number, seq)
		if err != nil {
			return 0, err
		}
		if want := min(store.CRLChunkSize, r.Size()-int64(seq)*store.CRLChunkSize); int64(len(chunk)) != want {
			return 0, fmt.Errorf("chunk %d of CRL %d of %s is %d octets, want %d", seq, r.row.Number, r.row.IssuerID, len(chunk), want)
		}
		r.seq, r.chunk = seq, chunk
	}
	n := copy(p, r.chunk[r.off-int64(seq)*store.CRLChunkSize:])
	r.off += int64(n)
	return n, nil
}

// Seek implements io.Seeker.
func (r *CRLReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.Size()
	default:
		return r.off, errors.New("CRL reader: invalid whence")
	}
	if offset < 0 {
		return r.off, errors.New("CRL reader: negative position")
	}
	r.off = offset
	return offset, nil
}

// WriteCRL writes the DER of the published CRL row to w.
func (s *Service) WriteCRL(ctx context.Context, row *store.PublishedCRL, w io.Writer) error {
	_, err := io.Copy(w, s.OpenCRL(ctx, row))
	return err
}
