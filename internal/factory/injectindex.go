package factory

// The injection index (<batch>.kwi, next to the batch file) makes 'keyward factory inject' cost the same at
// every batch size: without it, each injection reads the whole batch file to learn whether the device serial was
// used and where credential `next` is. The index is only an accelerator. The batch file stays the record (export
// and reconciliation never read the index), every answer the index gives is confirmed against the batch file,
// and an index that is missing, stale or damaged is rebuilt from the batch file with one scan.
//
//	header (128 bytes)
//	  0  magic "KWINDEX1"
//	  8  SHA-256 of the batch file's header frame (binds the index to one batch)
//	 40  count        credentials in the batch
//	 48  credStart    offset of credential 0 (the end of the header frame)
//	 56  credEnd      offset after the last credential
//	 64  injections   injection frames the index holds
//	 72  batchLen     length of the batch file it reflects
//	 80  lastOff      offset of the last injection frame (0 if none)
//	 88  slots        size of the hash table, a power of two >= 2*count
//	 96  salt         16 random bytes keying the slot hash
//	112  lastSum      SHA-256 of the last injection frame's payload, first 12 bytes (zero if none)
//	124  CRC-32C of bytes 0..123
//	offsets (count x 8 bytes): offset of credential i, so credential `next` is one read
//	hash table (slots x 16 bytes), open addressing with linear probing, keyed by SHA-256(salt | device serial):
//	  0  offset of the injection frame (0: empty)   8  tag (4 bytes of the hash; 0 when empty)
//	 12  CRC-32C of salt | slot number | bytes 0..11
//
// All integers are big-endian. Inject updates the index after the injection frame is fsynced to the batch file
// (the commit point); a crash in between leaves an index whose batchLen is not the batch file's length, which
// the next call rebuilds.
//
// Why the index can be trusted without reading the batch file:
//   - A hit (the serial was used) is confirmed by reading that injection frame from the batch file, so a
//     collision or a damaged slot cannot refuse a new device.
//   - A miss must not be a lost slot, or a device could get a second credential. Each slot carries a checksum
//     over its position and the index's salt, so a zeroed or torn slot, or one from another index, fails it,
//     and a lookup checks every slot it reads. Writes of the previous calls were fsynced before this call
//     began, so only the last call's slot can be missing after a power loss even though its header write
//     reached the disk; opening the index therefore also looks up the last injection frame's serial and
//     requires its slot (the tail check).
//   - A credential is read at its recorded offset and must be a whole credential frame with the expected index.

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"
)

const (
	indexMagic      = "KWINDEX1"
	indexHeaderSize = 128
	slotSize        = 16
	// probeBlock slots are read at once: with linear probing at a load of at most one half, a probe
	// sequence is almost always within one read.
	probeBlock = 16
	minSlots   = 16
	// headHint is read at offset 0 of the batch file to get the magic and header frame in one read.
	headHint = 1024
	// injHint covers an injection frame (a device serial of at most 64 characters and a time).
	injHint = 256
)

// errIndexInvalid: the index cannot be used as it is and is rebuilt from the batch file.
var errIndexInvalid = errors.New("injection index unusable")

// IndexPath names the injection index of the batch file at batch.
func IndexPath(batch string) string { return batch + ".kwi" }

// ioFile is the part of *os.File the index uses; tests wrap it to count bytes read.
type ioFile interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// countingFile counts the bytes read through it, so tests and benchmarks can show what one injection reads.
type countingFile struct {
	f    *os.File
	read *int64
}

func (c countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.f.ReadAt(p, off)
	*c.read += int64(n)
	return n, err
}
func (c countingFile) WriteAt(p []byte, off int64) (int, error) { return c.f.WriteAt(p, off) }
func (c countingFile) Sync() error                              { return c.f.Sync() }

// batchHead is what the index needs to know of the (locked) batch file.
type batchHead struct {
	f      ioFile
	path   string
	size   int64
	hdr    BatchHeader
	hdrSum [32]byte // SHA-256 of the header frame
	hdrEnd int64
}

// readBatchHead reads the magic and header frame of the batch file f of size bytes.
func readBatchHead(f ioFile, path string, size int64) (*batchHead, error) {
	magic := make([]byte, len(batchMagic))
	if _, err := f.ReadAt(magic, 0); err != nil || string(magic) != batchMagic {
		return nil, fmt.Errorf("%s: %w: not a Keyward batch file (no %q magic)", path, ErrCorrupt, batchMagic)
	}
	typ, body, end, err := readFrameAt(f, int64(len(batchMagic)), size, headHint, path)
	if err != nil {
		return nil, err
	}
	b := &batchHead{f: f, path: path, size: size, hdrEnd: end}
	if typ != frameHeader {
		return nil, fmt.Errorf("%s: %w: the first frame is not the header", path, ErrCorrupt)
	}
	if err := json.Unmarshal(body, &b.hdr); err != nil || b.hdr.Version != 1 {
		return nil, fmt.Errorf("%s: %w: unreadable header (version %d, %v)", path, ErrCorrupt, b.hdr.Version, err)
	}
	b.hdrSum = frameSum(body)
	return b, nil
}

// frameSum binds an index to a batch header: SHA-256 of the header frame's payload.
func frameSum(body []byte) [32]byte { return sha256.Sum256(body) }

// indexHeader is the fixed header of an index file.
type indexHeader struct {
	batchSum   [32]byte
	count      int64
	credStart  int64
	credEnd    int64
	injections int64
	batchLen   int64
	lastOff    int64
	slots      int64
	salt       [16]byte
	lastSum    [12]byte
}

// injectionSum identifies the last injection frame, so a batch file replaced by another of the same length
// (a copy from another station, say) does not pass for the one the index was built from.
func injectionSum(body []byte) (s [12]byte) {
	sum := sha256.Sum256(body)
	copy(s[:], sum[:])
	return s
}

func (h *indexHeader) marshal() []byte {
	b := make([]byte, indexHeaderSize)
	copy(b, indexMagic)
	copy(b[8:40], h.batchSum[:])
	for i, v := range []int64{h.count, h.credStart, h.credEnd, h.injections, h.batchLen, h.lastOff, h.slots} {
		binary.BigEndian.PutUint64(b[40+8*i:], uint64(v))
	}
	copy(b[96:112], h.salt[:])
	copy(b[112:124], h.lastSum[:])
	binary.BigEndian.PutUint32(b[124:], crc32.Checksum(b[:124], crcTable))
	return b
}

// parseIndexHeader decodes an index header; it checks only the header's own form and checksum.
func parseIndexHeader(b []byte) (*indexHeader, error) {
	if len(b) < indexHeaderSize || string(b[:8]) != indexMagic {
		return nil, fmt.Errorf("%w: no %q magic", errIndexInvalid, indexMagic)
	}
	if crc32.Checksum(b[:124], crcTable) != binary.BigEndian.Uint32(b[124:]) {
		return nil, fmt.Errorf("%w: header fails its checksum", errIndexInvalid)
	}
	h := &indexHeader{}
	copy(h.batchSum[:], b[8:40])
	for i, p := range []*int64{&h.count, &h.credStart, &h.credEnd, &h.injections, &h.batchLen, &h.lastOff, &h.slots} {
		v := binary.BigEndian.Uint64(b[40+8*i:])
		if v > 1<<62 {
			return nil, fmt.Errorf("%w: header field at byte %d is %d", errIndexInvalid, 40+8*i, v)
		}
		*p = int64(v)
	}
	copy(h.salt[:], b[96:112])
	copy(h.lastSum[:], b[112:124])
	return h, nil
}

// slotsFor sizes the hash table for count credentials: a load of at most one half keeps probes short.
func slotsFor(count int64) int64 {
	n := int64(minSlots)
	for n < 2*count {
		n <<= 1
	}
	return n
}

// injectIndex is an open index file, checked against its batch file.
type injectIndex struct {
	file *os.File
	f    ioFile
	path string
	h    indexHeader
}

func (ix *injectIndex) close() {
	if ix != nil && ix.file != nil {
		_ = ix.file.Close()
	}
}

func (ix *injectIndex) invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", errIndexInvalid, ix.path, fmt.Sprintf(format, args...))
}

func (ix *injectIndex) tableOff() int64 { return indexHeaderSize + 8*ix.h.count }
func (ix *injectIndex) fileSize() int64 { return ix.tableOff() + slotSize*ix.h.slots }

// hash gives the first slot of serial's probe sequence and its tag.
func (ix *injectIndex) hash(serial string) (uint64, uint32) {
	sum := sha256.Sum256(append(ix.h.salt[:], serial...))
	return binary.BigEndian.Uint64(sum[:8]) & uint64(ix.h.slots-1), binary.BigEndian.Uint32(sum[8:12])
}

func (ix *injectIndex) slotCRC(slot uint64, b []byte) uint32 {
	var pos [8]byte
	binary.BigEndian.PutUint64(pos[:], slot)
	c := crc32.Update(crc32.Checksum(ix.h.salt[:], crcTable), crcTable, pos[:])
	return crc32.Update(c, crcTable, b[:12])
}

func (ix *injectIndex) encodeSlot(slot uint64, off int64, tag uint32) []byte {
	b := make([]byte, slotSize)
	binary.BigEndian.PutUint64(b, uint64(off))
	binary.BigEndian.PutUint32(b[8:], tag)
	binary.BigEndian.PutUint32(b[12:], ix.slotCRC(slot, b))
	return b
}

// probe walks serial's probe sequence, calling visit for each occupied slot whose tag matches until visit
// returns true, and returns the first empty slot, where serial would be inserted. Every slot read must pass its
// checksum: a lost slot would otherwise read as empty.
func (ix *injectIndex) probe(serial string, visit func(slot uint64, off int64) (bool, error)) (free uint64, found bool, err error) {
	start, tag := ix.hash(serial)
	slots := uint64(ix.h.slots)
	buf := make([]byte, probeBlock*slotSize)
	for done := uint64(0); done < slots; {
		pos := (start + done) & (slots - 1)
		n := min(probeBlock, slots-pos, slots-done)
		blk := buf[:n*slotSize]
		if _, err := ix.f.ReadAt(blk, ix.tableOff()+int64(pos)*slotSize); err != nil {
			return 0, false, ix.invalid("read slot %d: %v", pos, err)
		}
		for k := range n {
			s, b := pos+k, blk[k*slotSize:(k+1)*slotSize]
			if ix.slotCRC(s, b) != binary.BigEndian.Uint32(b[12:]) {
				return 0, false, ix.invalid("slot %d fails its checksum", s)
			}
			off, t := int64(binary.BigEndian.Uint64(b)), binary.BigEndian.Uint32(b[8:])
			switch {
			case off == 0 && t != 0:
				return 0, false, ix.invalid("empty slot %d has a tag", s)
			case off == 0:
				return s, false, nil
			case off < ix.h.credEnd || off >= ix.h.batchLen:
				return 0, false, ix.invalid("slot %d points at offset %d, outside the injections (%d to %d)", s, off, ix.h.credEnd, ix.h.batchLen)
			case t == tag:
				stop, err := visit(s, off)
				if err != nil {
					return 0, false, err
				}
				if stop {
					return s, true, nil
				}
			}
		}
		done += n
	}
	return 0, false, ix.invalid("hash table of %d slots has no empty slot", slots)
}

// readInjection reads the injection frame at off of the batch file, which the index says is one of its
// injections, and returns it with its end and digest.
func (ix *injectIndex) readInjection(b *batchHead, off int64) (*Injection, int64, [12]byte, error) {
	typ, body, end, err := readFrameAt(b.f, off, ix.h.batchLen, injHint, b.path)
	if err != nil {
		return nil, 0, [12]byte{}, ix.invalid("offset %d: %v", off, err)
	}
	var in Injection
	if typ != frameInjection || json.Unmarshal(body, &in) != nil || in.Index < 0 || in.Index >= ix.h.injections {
		return nil, 0, [12]byte{}, ix.invalid("offset %d of %s is not one of its %d injection frames", off, b.path, ix.h.injections)
	}
	return &in, end, injectionSum(body), nil
}

// find looks deviceSerial up: the injection recorded for it (confirmed in the batch file), or nil and the slot
// and tag for recording it.
func (ix *injectIndex) find(b *batchHead, deviceSerial string) (prev *Injection, free uint64, tag uint32, err error) {
	free, _, err = ix.probe(deviceSerial, func(_ uint64, off int64) (bool, error) {
		in, _, _, err := ix.readInjection(b, off)
		if err != nil {
			return false, err
		}
		if in.DeviceSerial == deviceSerial {
			prev = in
			return true, nil
		}
		return false, nil // a tag collision
	})
	if err != nil || prev != nil {
		return prev, 0, 0, err
	}
	_, tag = ix.hash(deviceSerial)
	return nil, free, tag, nil
}

// credential reads credential i from the batch file at the offset the index records.
func (ix *injectIndex) credential(b *batchHead, i int64) (*Credential, error) {
	var raw [16]byte
	ent := raw[:min(16, 8*(ix.h.count-i))]
	if _, err := ix.f.ReadAt(ent, indexHeaderSize+8*i); err != nil {
		return nil, ix.invalid("read the offset of credential %d: %v", i, err)
	}
	off, end := int64(binary.BigEndian.Uint64(ent)), ix.h.credEnd
	if len(ent) == 16 {
		end = int64(binary.BigEndian.Uint64(ent[8:]))
	}
	if off < ix.h.credStart || end > ix.h.credEnd || end <= off {
		return nil, ix.invalid("credential %d at offsets %d to %d, outside the credentials (%d to %d)", i, off, end, ix.h.credStart, ix.h.credEnd)
	}
	typ, body, fend, err := readFrameAt(b.f, off, end, int(end-off), b.path)
	if err != nil {
		return nil, ix.invalid("credential %d: %v", i, err)
	}
	var c Credential
	if typ != frameCredential || fend != end || json.Unmarshal(body, &c) != nil || c.Index != i {
		return nil, ix.invalid("offset %d of %s is not credential %d", off, b.path, i)
	}
	return &c, nil
}

// openIndex opens the index of the batch file described by b and checks that it reflects exactly that file.
// Any error wraps errIndexInvalid (or os.ErrNotExist) and means: rebuild.
func openIndex(b *batchHead, read *int64) (*injectIndex, error) {
	path := IndexPath(b.path)
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	ix := &injectIndex{file: file, f: countingFile{file, read}, path: path}
	if err := ix.check(b); err != nil {
		_ = file.Close()
		return nil, err
	}
	return ix, nil
}

// check validates the index header against the batch file and does the tail check.
func (ix *injectIndex) check(b *batchHead) error {
	st, err := ix.file.Stat()
	if err != nil {
		return ix.invalid("%v", err)
	}
	raw := make([]byte, indexHeaderSize)
	if _, err := ix.f.ReadAt(raw, 0); err != nil {
		return ix.invalid("read the header: %v", err)
	}
	h, err := parseIndexHeader(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", ix.path, err)
	}
	ix.h = *h
	switch {
	case h.batchSum != b.hdrSum:
		return ix.invalid("made for another batch header")
	case h.count != b.hdr.Count || h.credStart != b.hdrEnd:
		return ix.invalid("records %d credentials from offset %d; the batch header says %d from offset %d", h.count, h.credStart, b.hdr.Count, b.hdrEnd)
	case h.count > b.size/9: // a frame is at least 9 bytes; keeps slotsFor and the sizes below from overflowing
		return ix.invalid("count %d cannot fit in %d bytes", h.count, b.size)
	case h.slots != slotsFor(h.count) || st.Size() != ix.fileSize():
		return ix.invalid("%d bytes with %d slots; want %d bytes with %d slots", st.Size(), h.slots, indexHeaderSize+8*h.count+slotSize*slotsFor(h.count), slotsFor(h.count))
	case h.batchLen != b.size:
		return ix.invalid("stale: reflects %d bytes and %d injections; the batch file has %d bytes", h.batchLen, h.injections, b.size)
	case h.credEnd < h.credStart || h.credEnd > h.batchLen || h.injections > h.count:
		return ix.invalid("credentials end at %d, %d injections; inconsistent with %d bytes", h.credEnd, h.injections, h.batchLen)
	case h.injections == 0 && (h.lastOff != 0 || h.batchLen != h.credEnd || h.lastSum != [12]byte{}):
		return ix.invalid("no injections, yet the file goes on from %d to %d", h.credEnd, h.batchLen)
	case h.injections == 0:
		return nil
	case h.lastOff < h.credEnd || h.lastOff >= h.batchLen:
		return ix.invalid("last injection at %d, outside %d to %d", h.lastOff, h.credEnd, h.batchLen)
	}
	// The tail check: the last frame of the batch file is the last injection and the table holds its slot.
	last, end, sum, err := ix.readInjection(b, h.lastOff)
	if err != nil {
		return err
	}
	if end != h.batchLen || last.Index != h.injections-1 {
		return ix.invalid("the frame at %d is injection %d ending at %d; want injection %d ending at %d", h.lastOff, last.Index, end, h.injections-1, h.batchLen)
	}
	if sum != h.lastSum {
		return ix.invalid("the last injection frame (%d, device %q) is not the one the index recorded; was the batch file replaced?", last.Index, last.DeviceSerial)
	}
	_, found, err := ix.probe(last.DeviceSerial, func(_ uint64, off int64) (bool, error) { return off == h.lastOff, nil })
	if err != nil {
		return err
	}
	if !found {
		return ix.invalid("the last injection (%d, device %q) has no slot", last.Index, last.DeviceSerial)
	}
	return nil
}

// record adds the injection frame just committed at [off, end) of the batch file, with payload body, to the
// index, in slot free. The slot goes first and the header last, and one fsync covers both: the tail check of the
// next call catches a header that reached the disk without its slot.
func (ix *injectIndex) record(free uint64, tag uint32, off, end int64, body []byte) error {
	if _, err := ix.f.WriteAt(ix.encodeSlot(free, off, tag), ix.tableOff()+int64(free)*slotSize); err != nil {
		return err
	}
	ix.h.injections++
	ix.h.batchLen, ix.h.lastOff, ix.h.lastSum = end, off, injectionSum(body)
	// No fsync: the batch file's fsynced injection frame is the commit, and whatever part of this update a
	// crash loses, openIndex finds the index disagreeing with the batch file (length, last frame, its slot,
	// checksums) and the next call rebuilds it. One fsync per injection instead of two.
	_, err := ix.f.WriteAt(ix.h.marshal(), 0)
	return err
}

// rebuildIndex scans the batch file b (size bytes) once, writing a new index to a temporary file. It returns the
// refusals of a scan in the order Inject always gave them: an incomplete batch; deviceSerial injected already;
// every credential injected; a torn tail. The index is installed unless the batch is incomplete or torn: the
// refusals for a used device serial or a used-up batch come with an index, so repeating them is cheap.
func rebuildIndex(f ioFile, path string, size int64, deviceSerial string, read *int64) (*injectIndex, error) {
	b, headErr := readBatchHead(f, path, size)
	if headErr != nil {
		// scan gives the same refusal for a bad start of file as every other reader of batch files.
		if _, err := scanAt(f, size, path, nil, nil); err != nil {
			return nil, err
		}
		return nil, headErr
	}
	count := b.hdr.Count
	if count < 0 || count > size/9 {
		// Not that many frames fit: the scan refuses the batch as incomplete or corrupt without an index.
		res, err := scanAt(f, size, path, nil, nil)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s holds %d of its %d credentials; finish it with 'keyward factory batch' before injecting", ErrConflict, path, res.Credentials, count)
	}
	ipath := IndexPath(path)
	tmpPath := ipath + ".tmp"
	// Only one rebuild runs at a time (the batch file's lock is held), so a fixed name suffices and a leftover
	// of a crashed rebuild is simply overwritten.
	file, err := os.OpenFile(tmpPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create the injection index %s: %w; the directory of the batch file must be writable", tmpPath, err)
	}
	ix := &injectIndex{file: file, f: countingFile{file, read}, path: ipath}
	keep := false
	defer func() {
		if !keep {
			_ = file.Close()
			_ = os.Remove(tmpPath)
		}
	}()
	ix.h = indexHeader{batchSum: b.hdrSum, count: count, credStart: b.hdrEnd, credEnd: b.hdrEnd, slots: slotsFor(count)}
	if _, err := rand.Read(ix.h.salt[:]); err != nil {
		return nil, err
	}
	offsets := bufio.NewWriterSize(io.NewOffsetWriter(file, indexHeaderSize), 1<<16)
	// The table is written when the first injection shows up, or at the end: only then does the scan know that
	// count credential frames, and so count*9 bytes, really exist; the header's count alone is not trusted.
	tableReady := false
	writeTable := func() error {
		if err := offsets.Flush(); err != nil {
			return err
		}
		w := bufio.NewWriterSize(io.NewOffsetWriter(file, ix.tableOff()), 1<<16)
		for s := range uint64(ix.h.slots) {
			if _, err := w.Write(ix.encodeSlot(s, 0, 0)); err != nil {
				return err
			}
		}
		tableReady = true
		return w.Flush()
	}
	var prev *Injection
	var ent [8]byte
	res, err := scanAt(f, size, path, func(c *Credential, off int64) error {
		binary.BigEndian.PutUint64(ent[:], uint64(off))
		_, err := offsets.Write(ent[:])
		return err
	}, func(in *Injection, off int64) error {
		if !tableReady {
			ix.h.credEnd = off
			if err := writeTable(); err != nil {
				return err
			}
		}
		if in.DeviceSerial == deviceSerial {
			prev = in
		}
		ix.h.batchLen = off + 1 // probe bounds; the real length is set after the scan
		ix.h.injections = in.Index + 1
		ix.h.lastOff = off
		free, _, err := ix.probe(in.DeviceSerial, func(uint64, int64) (bool, error) { return false, nil })
		if err != nil {
			return err
		}
		_, tag := ix.hash(in.DeviceSerial)
		_, err = ix.f.WriteAt(ix.encodeSlot(free, off, tag), ix.tableOff()+int64(free)*slotSize)
		return err
	})
	if err != nil {
		return nil, err
	}
	if res.Credentials < res.Header.Count {
		return nil, fmt.Errorf("%w: %s holds %d of its %d credentials; finish it with 'keyward factory batch' before injecting", ErrConflict, path, res.Credentials, res.Header.Count)
	}
	var refusal error
	switch {
	case prev != nil:
		refusal = fmt.Errorf("%w: device %q got credential %d of batch %s already, at %s; a device gets one credential", ErrConflict, deviceSerial, prev.Index, res.Header.BatchID, prev.At.Format(time.RFC3339))
	case res.Injections >= res.Header.Count:
		refusal = fmt.Errorf("%w: all %d credentials of batch %s (%s) are injected; start a new batch", ErrConflict, res.Header.Count, res.Header.BatchID, path)
	case res.TornTail:
		refusal = fmt.Errorf("%w: %s ends with a torn frame after offset %d; run 'keyward factory batch show' and restore it from a copy", ErrCorrupt, path, res.End)
	}
	if res.TornTail {
		// An index of a file with a torn tail would never match its length; the tail must be repaired first.
		return nil, refusal
	}
	if !tableReady {
		ix.h.credEnd = res.End
		if err := writeTable(); err != nil {
			return nil, fmt.Errorf("write the injection index %s: %w", tmpPath, err)
		}
	}
	ix.h.batchLen = res.End
	if res.Injections > 0 {
		_, body, _, err := readFrameAt(f, ix.h.lastOff, res.End, injHint, path)
		if err != nil {
			return nil, err
		}
		ix.h.lastSum = injectionSum(body)
	}
	if err := ix.installAs(ipath); err != nil {
		return nil, fmt.Errorf("install the injection index %s: %w; the directory of the batch file must be writable", ipath, err)
	}
	keep = true
	return ix, refusal
}

// installAs writes the header, syncs the new index and renames it to path, so a reader sees the old index or
// the whole new one.
func (ix *injectIndex) installAs(path string) error {
	if _, err := ix.f.WriteAt(ix.h.marshal(), 0); err != nil {
		return err
	}
	if err := ix.f.Sync(); err != nil {
		return err
	}
	if err := os.Rename(ix.file.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
