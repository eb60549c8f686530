package factory

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/keyward/keyward/internal/ra"
)

// Injected is the credential handed to a device by Inject.
type Injected struct {
	BatchID      string `json:"batch_id"`
	Index        int64  `json:"index"`
	DeviceSerial string `json:"device_serial"`
	CommonName   string `json:"common_name"`
	CertSerial   string `json:"cert_serial"`
	CertDER      []byte `json:"certificate"`
	Custody      string `json:"custody"`
	// KeyURI names the device key in the site HSM (CustodyPKCS11).
	KeyURI string `json:"key_uri,omitempty"`
	// WrappedKey is the device key sealed under its per-device transport key (CustodyWrapped), or, for
	// CustodyPKCS11 with InjectOptions.Wrap, wrapped by the site HSM under the transport key named by KeyWrap.
	WrappedKey []byte `json:"wrapped_key,omitempty"`
	// KeyWrap says how a PKCS#11 key was wrapped: the mechanism and the transport key's URI.
	KeyWrap string `json:"key_wrap,omitempty"`
	// KeyReleased reports that the site HSM's copy of the key was destroyed after the wrapped export;
	// ReleaseError says why it was not.
	KeyReleased  bool   `json:"key_released,omitempty"`
	ReleaseError string `json:"release_error,omitempty"`
	// Symmetric are the device's symmetric keys (a batch made with --symmetric): sealed under the per-device
	// transport key (CustodyWrapped), or, for CustodyPKCS11 with InjectOptions.WrapSymmetric, derived and
	// wrapped by the site HSM under the transport key.
	Symmetric []InjectedSymmetric `json:"symmetric,omitempty"`
}

// InjectedSymmetric is a symmetric device key handed to a device, wrapped.
type InjectedSymmetric struct {
	Purpose    string `json:"purpose"`
	KDKVersion int    `json:"kdk_version"`
	WrappedKey []byte `json:"wrapped_key,omitempty"`
	KeyWrap    string `json:"key_wrap,omitempty"` // how, for CustodyPKCS11
}

// InjectOptions change what Inject hands out.
type InjectOptions struct {
	// Wrap, if set, exports the chosen credential's key from the site HSM for the device: it returns the
	// wrapped key and a description of the wrapping. It runs before the binding is recorded, so a failure
	// records nothing and the credential stays unused.
	Wrap func(keyURI string) (wrapped []byte, how string, err error)
	// Release, if set, runs after the binding is recorded and Wrap exported the key: the site HSM's copy is
	// then destroyed, so the device is the key's only holder and the HSM holds only unused credentials. A
	// failure is reported in Injected.ReleaseError (the binding stands; the key is destroyed at the batch's
	// final reconciliation at the latest).
	Release func(keyURI string) error
	// WrapSymmetric, if set, derives and wraps the chosen credential's symmetric keys for the device (a
	// PKCS#11 batch made with --symmetric), before the binding is recorded.
	WrapSymmetric func(h *BatchHeader, c *Credential) ([]InjectedSymmetric, error)
}

// Inject hands the next unused credential of the complete batch file at path to the device with serial
// deviceSerial and appends the binding, fsynced, before returning it. It refuses a device serial that already
// got a credential from this batch and a batch whose credentials are all used. An exclusive lock on the file
// keeps two injectors apart.
//
// Inject reads and writes a few kilobytes whatever the batch size, through the injection index next to the batch
// file (IndexPath). The first call, and any call that finds the index missing, stale or damaged, rebuilds it
// with one scan of the batch file.
func Inject(path, deviceSerial string, now time.Time) (*Injected, error) {
	return inject(path, deviceSerial, now, InjectOptions{}, &injectStats{})
}

// InjectWith is Inject with options.
func InjectWith(path, deviceSerial string, now time.Time, opts InjectOptions) (*Injected, error) {
	return inject(path, deviceSerial, now, opts, &injectStats{})
}

// injectStats reports what one Inject call did, for tests and benchmarks.
type injectStats struct {
	bytesRead int64  // from the batch file and the index
	rebuilt   string // why the index was rebuilt; "" if it was used as found
}

func inject(path, deviceSerial string, now time.Time, opts InjectOptions, st *injectStats) (*Injected, error) {
	if err := ra.CheckHardwareSerial(deviceSerial); err != nil {
		return nil, err
	}
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, notFound(err)
	}
	defer file.Close()
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, fmt.Errorf("%w: %s is being injected from by another process: %v", ErrConflict, path, err)
	}
	fi, err := file.Stat()
	if err != nil {
		return nil, err
	}
	f := countingFile{file, &st.bytesRead}
	size := fi.Size()

	// The index path: constant reads. Any doubt about the index sends the call to the rebuild below.
	var ix *injectIndex
	defer func() { ix.close() }()
	b, err := readBatchHead(f, path, size)
	var p *injectPlan
	if err == nil {
		if ix, err = openIndex(b, &st.bytesRead); err == nil {
			p, err = ix.plan(b, deviceSerial)
		}
	}
	if err != nil {
		st.rebuilt = rebuildReason(err)
		ix.close()
		var refusal error
		ix, refusal = rebuildIndex(f, path, size, deviceSerial, &st.bytesRead)
		if refusal != nil {
			return nil, refusal
		}
		// A fresh index that fails its own checks means the batch file changed under the lock.
		if b, err = readBatchHead(f, path, size); err == nil {
			if err = ix.check(b); err == nil {
				p, err = ix.plan(b, deviceSerial)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: the injection index disagrees with the batch file right after it was rebuilt (%v); is another program writing the batch file?", ErrCorrupt, path, err)
		}
	}
	h := b.hdr
	switch {
	case p.prev != nil:
		return nil, fmt.Errorf("%w: device %q got credential %d of batch %s already, at %s; a device gets one credential", ErrConflict, deviceSerial, p.prev.Index, h.BatchID, p.prev.At.Format(time.RFC3339))
	case p.cred == nil:
		return nil, fmt.Errorf("%w: all %d credentials of batch %s (%s) are injected; start a new batch", ErrConflict, h.Count, h.BatchID, path)
	}
	next := p.cred.Index
	var wrapped []byte
	var how string
	if opts.Wrap != nil {
		if h.Custody != CustodyPKCS11 || p.cred.KeyURI == "" {
			return nil, badRequest("batch %s keeps its keys %s; only keys in a site HSM are wrapped at injection", h.BatchID, h.Custody)
		}
		if wrapped, how, err = opts.Wrap(p.cred.KeyURI); err != nil {
			return nil, fmt.Errorf("wrap the key of credential %d (%s) for device %q: %w; nothing was recorded", next, p.cred.DeviceCN, deviceSerial, err)
		}
	}
	sym := make([]InjectedSymmetric, 0, len(p.cred.Symmetric))
	for _, s := range p.cred.Symmetric {
		sym = append(sym, InjectedSymmetric{Purpose: s.Purpose, KDKVersion: s.KDKVersion, WrappedKey: s.WrappedKey})
	}
	if opts.WrapSymmetric != nil && len(p.cred.Symmetric) > 0 {
		if h.Custody != CustodyPKCS11 {
			return nil, badRequest("batch %s seals its symmetric keys %s already; only a site HSM derives them at injection", h.BatchID, h.Custody)
		}
		if sym, err = opts.WrapSymmetric(&h, p.cred); err != nil {
			return nil, fmt.Errorf("derive the symmetric keys of credential %d (%s) for device %q: %w; nothing was recorded", next, p.cred.DeviceCN, deviceSerial, err)
		}
	}
	if len(sym) == 0 {
		sym = nil
	}
	buf, err := appendFrame(nil, frameInjection, &Injection{Index: next, DeviceSerial: deviceSerial, At: now.UTC()})
	if err != nil {
		return nil, err
	}
	if _, err := file.WriteAt(buf, size); err != nil {
		return nil, fmt.Errorf("record injection in %s: %w", path, err)
	}
	if err := file.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", path, err)
	}
	// The injection is committed. An index that cannot follow is removed; if even that fails, its recorded
	// length no longer matches the batch file and the next call rebuilds it.
	if err := ix.record(p.free, p.tag, size, size+int64(len(buf)), buf[5:len(buf)-4]); err != nil {
		ix.close()
		ix = nil
		_ = os.Remove(IndexPath(path))
	}
	c := p.cred
	in := &Injected{BatchID: h.BatchID, Index: next, DeviceSerial: deviceSerial, CommonName: c.DeviceCN, CertSerial: c.CertSerial,
		CertDER: c.CertDER, Custody: h.Custody, KeyURI: c.KeyURI, WrappedKey: c.WrappedKey, Symmetric: sym}
	if wrapped != nil {
		in.WrappedKey, in.KeyWrap = wrapped, how
		if opts.Release != nil {
			if err := opts.Release(c.KeyURI); err != nil {
				in.ReleaseError = err.Error()
			} else {
				in.KeyReleased = true
			}
		}
	}
	return in, nil
}

// injectPlan is what the index says an injection does: refuse (prev), or hand out cred and record it in slot
// free.
type injectPlan struct {
	prev *Injection  // the injection deviceSerial got already
	cred *Credential // the next credential; nil if all are injected
	free uint64
	tag  uint32
}

func (ix *injectIndex) plan(b *batchHead, deviceSerial string) (*injectPlan, error) {
	prev, free, tag, err := ix.find(b, deviceSerial)
	if err != nil || prev != nil {
		return &injectPlan{prev: prev}, err
	}
	p := &injectPlan{free: free, tag: tag}
	if ix.h.injections < ix.h.count {
		if p.cred, err = ix.credential(b, ix.h.injections); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// rebuildReason says why the index was not used.
func rebuildReason(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "missing"
	}
	return err.Error()
}

// BatchInfo is what 'keyward factory batch show' reports.
type BatchInfo struct {
	Path              string      `json:"path"`
	Header            BatchHeader `json:"header"`
	Count             int64       `json:"count"`
	Credentials       int64       `json:"credentials"`
	Complete          bool        `json:"complete"`
	UniqueIndexes     int64       `json:"unique_indexes"`
	UniqueSerials     int64       `json:"unique_serials"` // certificate serials
	UniqueCommonNames int64       `json:"unique_common_names"`
	Injected          int64       `json:"injected"`
	TornTail          bool        `json:"torn_tail"`
	Bytes             int64       `json:"bytes"`
}

// Show reads the batch file at path. Its memory does not grow with the count: a batch names credential i after
// its header's first serial plus i, so common names on that rule are distinct by construction and only names off
// it are kept; certificate serials are counted with an external sort (see distinctCounter).
func Show(path string) (*BatchInfo, error) {
	return show(path, showBudget)
}

// showBudget bounds the memory Show holds for certificate serials; beyond it, sorted runs go to a temporary file.
const showBudget = 64 << 20

func show(path string, budget int) (*BatchInfo, error) {
	names := &nameCounter{offRule: map[string]struct{}{}, offIdx: map[int64]struct{}{}}
	if f, err := os.Open(path); err == nil {
		if st, err := f.Stat(); err == nil {
			if b, err := readBatchHead(f, path, st.Size()); err == nil {
				if r, err := ra.ParseSerialRange(b.hdr.FirstSerial, b.hdr.Count); err == nil {
					names.rule = &r
				}
			}
		}
		_ = f.Close()
	}
	serials := &distinctCounter{budget: budget}
	defer serials.close()
	var indexes int64
	res, err := scanFile(path, func(c *Credential, _ []byte) error {
		names.add(c.Index, c.DeviceCN)
		indexes++ // scan enforces index == position, so every index is new
		return serials.add(c.CertSerial)
	}, nil)
	if err != nil {
		return nil, err
	}
	uniqueSerials, err := serials.count()
	if err != nil {
		return nil, fmt.Errorf("%s: count distinct certificate serials: %w", path, err)
	}
	info := &BatchInfo{Path: path, Header: res.Header, Count: res.Header.Count, Credentials: res.Credentials,
		Complete: res.Credentials == res.Header.Count, UniqueIndexes: indexes, UniqueSerials: uniqueSerials,
		UniqueCommonNames: names.count(res.Credentials), Injected: res.Injections, TornTail: res.TornTail}
	if st, err := os.Stat(path); err == nil {
		info.Bytes = st.Size()
	}
	return info, nil
}

// nameCounter counts distinct common names. Credential i named by the serial rule (rule.at(i)) has a name no
// other rule-named credential has, so those are only counted; the rest are kept, which for a batch file that
// 'keyward factory batch' wrote is none.
type nameCounter struct {
	rule    *ra.SerialRange
	onRule  int64
	offRule map[string]struct{} // distinct names off the rule
	offIdx  map[int64]struct{}  // indexes whose name is off the rule
}

func (n *nameCounter) add(i int64, cn string) {
	if n.rule != nil && n.rule.At(i) == cn {
		n.onRule++
		return
	}
	n.offRule[cn] = struct{}{}
	n.offIdx[i] = struct{}{}
}

// count gives the distinct names among credentials 0..credentials-1: a name off the rule is new unless it is
// the rule's name of a credential j that carries it.
func (n *nameCounter) count(credentials int64) int64 {
	total := n.onRule
	for cn := range n.offRule {
		if n.rule != nil {
			if j, ok := n.rule.Index(cn); ok && j < credentials {
				if _, off := n.offIdx[j]; !off {
					continue
				}
			}
		}
		total++
	}
	return total
}

// distinctCounter counts distinct strings in bounded memory: up to budget bytes are sorted in memory; beyond
// that, each sorted, deduplicated run is written to an unlinked temporary file, and count merges the runs.
type distinctCounter struct {
	budget int
	buf    []string
	used   int
	spill  *os.File
	runs   []int64 // offset where each run ends
}

func (d *distinctCounter) add(s string) error {
	d.buf = append(d.buf, s)
	d.used += len(s) + 32 // the string, its header in buf, and slack for buf's growth
	if d.used >= d.budget {
		return d.flush()
	}
	return nil
}

func (d *distinctCounter) flush() error {
	slices.Sort(d.buf)
	d.buf = slices.Compact(d.buf)
	if d.spill == nil {
		f, err := os.CreateTemp("", "keyward-show-*")
		if err != nil {
			return fmt.Errorf("temporary file for sorted runs: %w (set TMPDIR to a writable directory)", err)
		}
		_ = os.Remove(f.Name()) // the file lives until it is closed, and never outlives the process
		d.spill = f
	}
	start := int64(0)
	if len(d.runs) > 0 {
		start = d.runs[len(d.runs)-1]
	}
	w := bufio.NewWriterSize(io.NewOffsetWriter(d.spill, start), 1<<16)
	n := start
	for _, s := range d.buf {
		l, err := w.Write(binary.AppendUvarint(nil, uint64(len(s))))
		if err != nil {
			return err
		}
		if _, err := w.WriteString(s); err != nil {
			return err
		}
		n += int64(l + len(s))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	d.runs = append(d.runs, n)
	clear(d.buf)
	d.buf, d.used = d.buf[:0], 0
	return nil
}

func (d *distinctCounter) count() (int64, error) {
	if d.spill == nil {
		slices.Sort(d.buf)
		return int64(len(slices.Compact(d.buf))), nil
	}
	if len(d.buf) > 0 {
		if err := d.flush(); err != nil {
			return 0, err
		}
	}
	h := &runHeap{}
	start := int64(0)
	for _, end := range d.runs {
		r := &runReader{r: bufio.NewReaderSize(io.NewSectionReader(d.spill, start, end-start), 32<<10)}
		start = end
		if ok, err := r.next(); err != nil {
			return 0, err
		} else if ok {
			*h = append(*h, r)
		}
	}
	heap.Init(h)
	var n int64
	var last string
	for h.Len() > 0 {
		r := (*h)[0]
		if n == 0 || r.cur != last {
			n++
			last = r.cur
		}
		ok, err := r.next()
		if err != nil {
			return 0, err
		}
		if ok {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	return n, nil
}

func (d *distinctCounter) close() {
	if d.spill != nil {
		_ = d.spill.Close()
	}
}

// runReader reads one sorted run of length-prefixed strings.
type runReader struct {
	r   *bufio.Reader
	cur string
}

func (r *runReader) next() (bool, error) {
	l, err := binary.ReadUvarint(r.r)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil || l > maxFrame {
		return false, fmt.Errorf("sorted run: bad length %d (%v)", l, err)
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return false, fmt.Errorf("sorted run: %w", err)
	}
	r.cur = string(b)
	return true, nil
}

// runHeap orders runs by their current string.
type runHeap []*runReader

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return h[i].cur < h[j].cur }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// ReadCredentials calls fn for every whole credential of the batch file at path, in index order.
func ReadCredentials(path string, fn func(*Credential) error) error {
	_, err := scanFile(path, func(c *Credential, _ []byte) error { return fn(c) }, nil)
	return err
}
