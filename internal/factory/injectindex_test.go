package factory

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/ra"
)

// realBatch writes a complete batch of count credentials with the dev software custody, as 'keyward factory
// batch' does, and returns its path.
func realBatch(t testing.TB, count int64) string {
	t.Helper()
	n, f := newNode(t)
	siteCA(t, f, n.Soft, "site-a", count)
	out := filepath.Join(t.TempDir(), "batch.kwb")
	req := softBatch(out, count)
	req.Checkpoint = 1024
	if _, err := f.Batch(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	return out
}

// syntheticBatch writes a batch file of count credentials (whole frames with random stand-ins for certificates
// and keys; Inject does not parse them), of which the first `complete` are written, followed by one injection
// per device serial. It is what the fuzz target and Show's tests need without a CA.
func syntheticBatch(t testing.TB, path string, count, complete int64, devices ...string) {
	t.Helper()
	buf, err := appendFrame([]byte(batchMagic), frameHeader, &BatchHeader{Version: 1, BatchID: "synthetic", Environment: "dev",
		Count: count, FirstSerial: "DEMO-00000001", Custody: CustodyWrapped})
	if err != nil {
		t.Fatal(err)
	}
	r, rerr := ra.ParseSerialRange("DEMO-00000001", count)
	for i := range complete {
		cn := fmt.Sprintf("DEMO-%d", i)
		if rerr == nil {
			cn = r.At(i)
		}
		serial, der, key := make([]byte, 16), make([]byte, 300), make([]byte, 166)
		rand.Read(serial)
		rand.Read(der)
		rand.Read(key)
		buf, err = appendFrame(buf, frameCredential, &Credential{Index: i, DeviceCN: cn, CertSerial: hex.EncodeToString(serial), CertDER: der, WrappedKey: key})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, d := range devices {
		appendInjection(t, path, int64(i), d)
	}
}

// appendInjection appends an injection frame the way Inject did before the index existed (and the way a crash
// after the commit point leaves the batch file): the index is not told.
func appendInjection(t testing.TB, path string, index int64, device string) {
	t.Helper()
	buf, err := appendFrame(nil, frameInjection, &Injection{Index: index, DeviceSerial: device, At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(buf); err != nil {
		t.Fatal(err)
	}
}

// rewriteLastInjection gives the last injection frame of the batch file at path to device to instead of from,
// keeping the file's length: a batch file with another history that only the index's digest of the last frame
// tells apart.
func rewriteLastInjection(t testing.TB, path, from, to string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil || len(from) != len(to) {
		t.Fatal(err)
	}
	var last int64
	if _, err := scanAt(bytes.NewReader(data), int64(len(data)), path, nil, func(_ *Injection, off int64) error { last = off; return nil }); err != nil {
		t.Fatal(err)
	}
	frame := data[last:]
	body := frame[5 : len(frame)-4]
	i := bytes.Index(body, []byte(`"device_serial":"`+from+`"`))
	if i < 0 {
		t.Fatalf("the last injection is not %s's", from)
	}
	copy(body[i+len(`"device_serial":"`):], to)
	binary.BigEndian.PutUint32(frame[len(frame)-4:], crcOf(frame[:len(frame)-4]))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// copyBatchFiles copies the batch file at src (and its index, if any) into a new directory.
func copyBatchFiles(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "batch.kwb")
	for _, p := range [][2]string{{src, dst}, {IndexPath(src), IndexPath(dst)}} {
		data, err := os.ReadFile(p[0])
		if errors.Is(err, os.ErrNotExist) && p[0] != src {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// credentials reads every credential of the batch file, the answer an index must agree with.
func batchCredentials(t testing.TB, path string) []Credential {
	t.Helper()
	var out []Credential
	if err := ReadCredentials(path, func(c *Credential) error { out = append(out, *c); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// openTestIndex opens the index of the batch file at path as Inject would.
func openTestIndex(t testing.TB, path string) *injectIndex {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	b, err := readBatchHead(f, path, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ix, err := openIndex(b, &n)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// slotOf finds the slot holding device's injection.
func slotOf(t testing.TB, path, device string) uint64 {
	t.Helper()
	ix := openTestIndex(t, path)
	defer ix.close()
	f, _ := os.Open(path)
	defer f.Close()
	st, _ := f.Stat()
	b, _ := readBatchHead(f, path, st.Size())
	var slot uint64
	_, found, err := ix.probe(device, func(s uint64, off int64) (bool, error) {
		in, _, _, err := ix.readInjection(b, off)
		slot = s
		return err == nil && in.DeviceSerial == device, err
	})
	if err != nil || !found {
		t.Fatalf("no slot for %s: %v", device, err)
	}
	return slot
}

// patchIndex overwrites the index of the batch file at path at offset off.
func patchIndex(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(IndexPath(path), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// injectStep is one call of Inject and what it must do.
type injectStep struct {
	device  string
	index   int64  // the credential handed out, when err is nil
	err     error  // the refusal's class
	msg     string // ... and a part of its message
	rebuild string // a part of the reason the index is rebuilt; "" when it must be used as found
}

func runInjectSteps(t *testing.T, path string, steps []injectStep) {
	t.Helper()
	creds := batchCredentials(t, path)
	for i, s := range steps {
		var st injectStats
		got, err := inject(path, s.device, time.Now(), InjectOptions{}, &st)
		switch {
		case s.err != nil && (!errors.Is(err, s.err) || !strings.Contains(err.Error(), s.msg)):
			t.Errorf("step %d (%s): got %v; want %v containing %q", i, s.device, err, s.err, s.msg)
		case s.err == nil && err != nil:
			t.Errorf("step %d (%s): %v", i, s.device, err)
		case s.err == nil && (got.Index != s.index || got.CertSerial != creds[s.index].CertSerial || got.CommonName != creds[s.index].DeviceCN):
			t.Errorf("step %d (%s): handed out %d (%s, %s); want credential %d (%s, %s)", i, s.device, got.Index, got.CommonName, got.CertSerial, s.index, creds[s.index].DeviceCN, creds[s.index].CertSerial)
		}
		if (s.rebuild == "") != (st.rebuilt == "") || !strings.Contains(st.rebuilt, s.rebuild) {
			t.Errorf("step %d (%s): index rebuilt because %q; want %q", i, s.device, st.rebuilt, s.rebuild)
		}
	}
}

func TestInjectIndex(t *testing.T) {
	pristine := realBatch(t, 6)
	gets := func(d string, i int64) injectStep { return injectStep{device: d, index: i} }
	used := func(d string, i int64) injectStep {
		return injectStep{device: d, err: ErrConflict, msg: fmt.Sprintf("got credential %d", i)}
	}
	rebuilt := func(s injectStep, why string) injectStep { s.rebuild = why; return s }
	cases := []struct {
		name   string
		before []injectStep
		mess   func(t *testing.T, path string) // what happens to the files between the two runs
		after  []injectStep
	}{
		{name: "past the end",
			before: []injectStep{rebuilt(gets("HW-0", 0), "missing"), gets("HW-1", 1), gets("HW-2", 2), gets("HW-3", 3), gets("HW-4", 4), gets("HW-5", 5)},
			after:  []injectStep{{device: "HW-6", err: ErrConflict, msg: "all 6 credentials"}, used("HW-5", 5)}},
		{name: "past the end, index deleted",
			before: []injectStep{rebuilt(gets("HW-0", 0), "missing"), gets("HW-1", 1), gets("HW-2", 2), gets("HW-3", 3), gets("HW-4", 4), gets("HW-5", 5)},
			mess:   func(t *testing.T, p string) { os.Remove(IndexPath(p)) },
			after:  []injectStep{rebuilt(injectStep{device: "HW-6", err: ErrConflict, msg: "all 6 credentials"}, "missing"), {device: "HW-7", err: ErrConflict, msg: "all 6 credentials"}}},
		{name: "same device twice",
			before: []injectStep{rebuilt(gets("HW-1", 0), "missing"), gets("HW-2", 1), used("HW-1", 0), used("HW-2", 1), gets("HW-3", 2)}},
		{name: "same device twice, index deleted",
			before: []injectStep{rebuilt(gets("HW-1", 0), "missing"), gets("HW-2", 1)},
			mess:   func(t *testing.T, p string) { os.Remove(IndexPath(p)) },
			after:  []injectStep{rebuilt(used("HW-1", 0), "missing"), used("HW-2", 1), gets("HW-3", 2)}},
		{name: "stale: injection appended by the old code path",
			before: []injectStep{rebuilt(gets("HW-1", 0), "missing")},
			mess:   func(t *testing.T, p string) { appendInjection(t, p, 1, "HW-2") },
			after:  []injectStep{rebuilt(used("HW-2", 1), "stale"), used("HW-1", 0), gets("HW-3", 2)}},
		{name: "crash after the commit point, before the index update",
			before: []injectStep{rebuilt(gets("HW-1", 0), "missing"), gets("HW-2", 1)},
			mess:   func(t *testing.T, p string) { appendInjection(t, p, 2, "HW-3") },
			after:  []injectStep{rebuilt(gets("HW-4", 3), "stale"), used("HW-3", 2), gets("HW-5", 4)}},
		{name: "index truncated to nothing",
			before: []injectStep{rebuilt(gets("HW-1", 0), "missing")},
			mess:   func(t *testing.T, p string) { os.Truncate(IndexPath(p), 0) },
			after:  []injectStep{rebuilt(used("HW-1", 0), "read the header"), gets("HW-2", 1)}},
		{name: "index truncated in the table",
			before: []injectStep{rebuilt(gets("HW-1", 0), "missing")},
			mess: func(t *testing.T, p string) {
				st, _ := os.Stat(IndexPath(p))
				os.Truncate(IndexPath(p), st.Size()-slotSize)
			},
			after: []injectStep{rebuilt(used("HW-1", 0), "bytes with"), gets("HW-2", 1)}},
		{name: "power loss: header on disk, last slot not",
			before: []injectStep{rebuilt(gets("HW-1", 0), "missing"), gets("HW-2", 1)},
			mess: func(t *testing.T, p string) {
				ix := openTestIndex(t, p)
				defer ix.close()
				s := slotOf(t, p, "HW-2")
				patchIndex(t, p, ix.tableOff()+int64(s)*slotSize, ix.encodeSlot(s, 0, 0)) // a valid empty slot
			},
			after: []injectStep{rebuilt(used("HW-2", 1), "has no slot"), used("HW-1", 0), gets("HW-3", 2)}},
		{name: "index of another batch",
			before: []injectStep{rebuilt(gets("HW-1", 0), "missing")},
			mess: func(t *testing.T, p string) {
				other := filepath.Join(t.TempDir(), "other.kwb")
				syntheticBatch(t, other, 6, 6)
				if _, err := Inject(other, "HW-9", time.Now()); err != nil {
					t.Fatal(err)
				}
				data, _ := os.ReadFile(IndexPath(other))
				os.WriteFile(IndexPath(p), data, 0o600)
			},
			after: []injectStep{rebuilt(used("HW-1", 0), "another batch"), gets("HW-9", 1)}},
		{name: "batch file replaced by another history of the same length",
			before: []injectStep{rebuilt(gets("HW-1", 0), "missing"), gets("HW-2", 1)},
			mess:   func(t *testing.T, p string) { rewriteLastInjection(t, p, "HW-2", "HW-9") },
			after:  []injectStep{rebuilt(gets("HW-2", 2), "was the batch file replaced"), used("HW-9", 1), used("HW-1", 0)}},
		{name: "torn tail after injections",
			before: []injectStep{rebuilt(gets("HW-1", 0), "missing")},
			mess: func(t *testing.T, p string) {
				f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
				f.Write([]byte{frameInjection, 0, 0, 0, 60, '{'})
				f.Close()
			},
			// The refusals keep their order: a used device first, then the torn tail.
			after: []injectStep{rebuilt(used("HW-1", 0), "stale"), rebuilt(injectStep{device: "HW-2", err: ErrCorrupt, msg: "torn frame"}, "stale")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := copyBatchFiles(t, pristine)
			runInjectSteps(t, path, tc.before)
			if tc.mess != nil {
				tc.mess(t, path)
			}
			runInjectSteps(t, path, tc.after)
			// The batch file alone says what happened: export and reconciliation read nothing else.
			if info, err := Show(path); err != nil || info.UniqueSerials != 6 {
				t.Errorf("show: %+v, %v", info, err)
			}
		})
	}
}

func TestInjectIncompleteBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "batch.kwb")
	syntheticBatch(t, path, 4, 2)
	for range 2 {
		if _, err := Inject(path, "HW-1", time.Now()); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "holds 2 of its 4") {
			t.Errorf("inject from an incomplete batch: %v", err)
		}
		if _, err := os.Stat(IndexPath(path)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("an incomplete batch got an index: %v", err)
		}
	}
	// A header claiming more credentials than the file can hold is refused without sizing an index for it.
	syntheticBatch(t, path, 1<<40, 2)
	if _, err := Inject(path, "HW-1", time.Now()); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "holds 2 of its 1099511627776") {
		t.Errorf("inject from a batch claiming 2^40 credentials: %v", err)
	}
}

// TestInjectIndexDamage damages an index that holds injections and checks that it is never trusted: a used
// device is still refused and a new one gets exactly the next credential.
func TestInjectIndexDamage(t *testing.T) {
	pristine := filepath.Join(t.TempDir(), "batch.kwb")
	syntheticBatch(t, pristine, 64, 64)
	for i := range 20 {
		if _, err := Inject(pristine, fmt.Sprintf("HW-%d", i), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	ix := openTestIndex(t, pristine)
	tableOff, slots := ix.tableOff(), ix.h.slots
	ix.close()
	flip := func(off int64) func(t *testing.T, p string) {
		return func(t *testing.T, p string) {
			data, _ := os.ReadFile(IndexPath(p))
			data[off] ^= 0x40
			os.WriteFile(IndexPath(p), data, 0o600)
		}
	}
	cases := []struct {
		name    string
		damage  func(t *testing.T, p string)
		rebuild string // a part of the reason; "" where the damage is in a part the calls do not read
		at      int    // the injectStep that finds the damage
	}{
		{"header: magic", flip(0), "magic", 0},
		{"header: batch binding", flip(20), "checksum", 0},
		{"header: injections", flip(64 + 7), "checksum", 0},
		{"header: salt", flip(100), "checksum", 0},
		{"header: last frame digest, checksum fixed", func(t *testing.T, p string) {
			data, _ := os.ReadFile(IndexPath(p))
			data[115] ^= 1
			binary.BigEndian.PutUint32(data[124:], crcOf(data[:124]))
			os.WriteFile(IndexPath(p), data, 0o600)
		}, "was the batch file replaced", 0},
		{"header: injections, checksum fixed", func(t *testing.T, p string) {
			data, _ := os.ReadFile(IndexPath(p))
			binary.BigEndian.PutUint64(data[64:], 19) // one fewer: the next credential would be handed out twice
			binary.BigEndian.PutUint32(data[124:], crcOf(data[:124]))
			os.WriteFile(IndexPath(p), data, 0o600)
		}, "not one of its 19 injection frames", 0},
		{"offset of the next credential", flip(indexHeaderSize + 8*20 + 6), "credential 20", 2}, // refusals read no credential
		{"offset of the next credential points at another credential", func(t *testing.T, p string) {
			data, _ := os.ReadFile(IndexPath(p))
			// Entries 20 and 21 name the whole frame of credential 21.
			copy(data[indexHeaderSize+8*20:], data[indexHeaderSize+8*21:indexHeaderSize+8*23])
			os.WriteFile(IndexPath(p), data, 0o600)
		}, "is not credential 20", 2},
		{"offset of a used credential", flip(indexHeaderSize + 8*3 + 6), "", 0},
		{"slot of a used device", func(t *testing.T, p string) {
			flip(tableOff+int64(slotOf(t, p, "HW-7"))*slotSize+3)(t, p)
		}, "checksum", 0},
		{"slot table zeroed", func(t *testing.T, p string) {
			patchIndex(t, p, tableOff, make([]byte, slots*slotSize))
		}, "checksum", 0},
		{"slot table swapped with another index's", func(t *testing.T, p string) {
			other := copyBatchFiles(t, p)
			os.Remove(IndexPath(other))
			if _, err := Inject(other, "HW-7", time.Now()); !errors.Is(err, ErrConflict) { // rebuilds with a new salt
				t.Fatal(err)
			}
			data, _ := os.ReadFile(IndexPath(other))
			patchIndex(t, p, tableOff, data[tableOff:])
		}, "checksum", 0},
		{"garbage of the right size", func(t *testing.T, p string) {
			st, _ := os.Stat(IndexPath(p))
			data := make([]byte, st.Size())
			rand.Read(data)
			os.WriteFile(IndexPath(p), data, 0o600)
		}, "magic", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := copyBatchFiles(t, pristine)
			tc.damage(t, path)
			steps := []injectStep{
				{device: "HW-7", err: ErrConflict, msg: "got credential 7"},
				{device: "HW-19", err: ErrConflict, msg: "got credential 19"},
				{device: "HW-20", index: 20},
				{device: "HW-7", err: ErrConflict, msg: "got credential 7"},
				{device: "HW-21", index: 21},
			}
			if tc.rebuild == "" {
				// Damage outside what a call reads is not noticed, and does no harm.
				steps = steps[2:]
			} else {
				steps[tc.at].rebuild = tc.rebuild
			}
			runInjectSteps(t, path, steps)
		})
	}
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, crcTable) }

// TestInjectConcurrent runs injectors side by side on one batch: the lock keeps them apart, no credential is
// handed out twice and a device serial gets at most one.
func TestInjectConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "batch.kwb")
	const workers, each = 6, 10
	syntheticBatch(t, path, workers*each+1, workers*each+1)
	var mu sync.Mutex
	handed := map[int64]string{}
	same := 0
	var locked atomic.Int64
	try := func(device string) (*Injected, error) {
		for {
			got, err := Inject(path, device, time.Now())
			if err == nil || !strings.Contains(err.Error(), "being injected from by another process") {
				return got, err
			}
			locked.Add(1)
			time.Sleep(time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if i == each/2 {
					got, err := try("SAME")
					mu.Lock()
					switch {
					case err == nil:
						same++
						handed[got.Index] += "SAME "
					case !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "already"):
						t.Errorf("SAME: %v", err)
					}
					mu.Unlock()
				}
				device := fmt.Sprintf("W%d-%d", w, i)
				got, err := try(device)
				if err != nil {
					if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "all 61 credentials") {
						t.Errorf("%s: %v", device, err)
					}
					continue
				}
				mu.Lock()
				handed[got.Index] += device + " "
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d calls found the batch locked by another injector", locked.Load())
	if same != 1 {
		t.Errorf("device SAME got %d credentials", same)
	}
	for i, d := range handed {
		if strings.Count(d, " ") != 1 {
			t.Errorf("credential %d handed to %s", i, d)
		}
	}
	info, err := Show(path)
	if err != nil || info.Injected != int64(len(handed)) || info.Injected != workers*each+1 {
		t.Errorf("show: %+v, %v; %d handed out", info, err, len(handed))
	}
}

// TestInjectConstantReads checks that, with the index in place, an injection reads the same few kilobytes from a
// batch of 20,000 credentials as from one of 64: bytes read, not time, so the test is not at the mercy of the
// machine.
func TestInjectConstantReads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a batch of 20,000 credentials")
	}
	const perCall = 6 << 10 // index header, batch header, tail check, probe, offsets, one credential
	var worst [2]int64
	for k, count := range []int64{64, 20000} {
		path := realBatch(t, count)
		st, _ := os.Stat(path)
		var first injectStats
		if _, err := inject(path, "HW-first", time.Now(), InjectOptions{}, &first); err != nil {
			t.Fatal(err)
		}
		if first.rebuilt != "missing" || first.bytesRead < st.Size() {
			t.Errorf("%d credentials: the first injection rebuilt the index (%q) reading %d bytes of %d", count, first.rebuilt, first.bytesRead, st.Size())
		}
		for i := range 40 {
			var s injectStats
			if _, err := inject(path, fmt.Sprintf("HW-%d", i), time.Now(), InjectOptions{}, &s); err != nil {
				t.Fatal(err)
			}
			if s.rebuilt != "" || s.bytesRead > perCall {
				t.Errorf("%d credentials, injection %d: read %d bytes (at most %d), rebuilt %q", count, i, s.bytesRead, perCall, s.rebuilt)
			}
			worst[k] = max(worst[k], s.bytesRead)
			var r injectStats // a refusal costs as little
			if _, err := inject(path, fmt.Sprintf("HW-%d", i/2), time.Now(), InjectOptions{}, &r); !errors.Is(err, ErrConflict) || r.rebuilt != "" || r.bytesRead > perCall {
				t.Errorf("%d credentials, repeated device: %v, read %d bytes, rebuilt %q", count, err, r.bytesRead, r.rebuilt)
			}
		}
		t.Logf("%d credentials (%d bytes): rebuild read %d bytes; an injection at most %d", count, st.Size(), first.bytesRead, worst[k])
	}
	// Frames differ by a few bytes (JSON of random serials); the per-call reads must not grow with the count.
	if worst[1] > worst[0]+256 {
		t.Errorf("an injection reads %d bytes from 20,000 credentials and %d from 64", worst[1], worst[0])
	}
}

// TestScanAtOffsets checks the offsets the index is built from against the frames at those offsets.
func TestScanAtOffsets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "batch.kwb")
	syntheticBatch(t, path, 5, 5, "A", "BB", "CCC")
	f, _ := os.Open(path)
	defer f.Close()
	st, _ := f.Stat()
	var frames int
	check := func(off int64, want byte, index int64) error {
		frames++
		typ, body, _, err := readFrameAt(f, off, st.Size(), 0, path)
		if err != nil || typ != want || !bytes.Contains(body, fmt.Appendf(nil, `"index":%d,`, index)) {
			return fmt.Errorf("frame %c %d at %d: %c %s %v", want, index, off, typ, body, err)
		}
		return nil
	}
	res, err := scanAt(f, st.Size(), path, func(c *Credential, off int64) error { return check(off, frameCredential, c.Index) },
		func(in *Injection, off int64) error { return check(off, frameInjection, in.Index) })
	if err != nil || frames != 8 || res.End != st.Size() {
		t.Fatalf("scan: %+v, %v, %d frames", res, err, frames)
	}
}

// TestShowCounts checks Show's bounded-memory counts against sets held in memory, spilling sorted runs of
// certificate serials to disk after a few hundred bytes.
func TestShowCounts(t *testing.T) {
	type edit func(cs []Credential)
	cases := []struct {
		name  string
		count int64
		edit  edit
	}{
		{"as written", 200, nil},
		{"duplicate certificate serials", 200, func(cs []Credential) { cs[7].CertSerial = cs[150].CertSerial; cs[8].CertSerial = cs[150].CertSerial }},
		{"name of another credential", 200, func(cs []Credential) { cs[3].DeviceCN = cs[100].DeviceCN }},
		{"names swapped", 200, func(cs []Credential) { cs[3].DeviceCN, cs[4].DeviceCN = cs[4].DeviceCN, cs[3].DeviceCN }},
		{"names off the rule", 200, func(cs []Credential) { cs[1].DeviceCN, cs[2].DeviceCN, cs[9].DeviceCN = "X", "X", "DEMO-99999999" }},
		{"name of a credential beyond the file", 200, func(cs []Credential) { cs[5].DeviceCN = "DEMO-00000400" }},
		{"one credential", 1, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "batch.kwb")
			syntheticBatch(t, path, tc.count, tc.count)
			cs := batchCredentials(t, path)
			if tc.edit != nil {
				tc.edit(cs)
				buf, _ := appendFrame([]byte(batchMagic), frameHeader, &BatchHeader{Version: 1, BatchID: "synthetic", Count: tc.count, FirstSerial: "DEMO-00000001"})
				for i := range cs {
					buf, _ = appendFrame(buf, frameCredential, &cs[i])
				}
				os.WriteFile(path, buf, 0o600)
			}
			serials, names := map[string]bool{}, map[string]bool{}
			for _, c := range cs {
				serials[c.CertSerial], names[c.DeviceCN] = true, true
			}
			for _, budget := range []int{showBudget, 500} {
				info, err := show(path, budget)
				if err != nil {
					t.Fatal(err)
				}
				if info.UniqueSerials != int64(len(serials)) || info.UniqueCommonNames != int64(len(names)) || info.UniqueIndexes != tc.count {
					t.Errorf("budget %d: %d serials, %d names, %d indexes; want %d, %d, %d", budget, info.UniqueSerials, info.UniqueCommonNames, info.UniqueIndexes, len(serials), len(names), tc.count)
				}
			}
		})
	}
}

// FuzzReadIndex feeds arbitrary bytes as the index of a batch with injections. Whatever the index holds, a
// used device must be refused and a new one must get exactly the next credential.
func FuzzReadIndex(f *testing.F) {
	dir := f.TempDir()
	pristine := filepath.Join(dir, "batch.kwb")
	syntheticBatch(f, pristine, 8, 8, "HW-0", "HW-1")
	if _, err := Inject(pristine, "HW-2", time.Now()); err != nil {
		f.Fatal(err)
	}
	valid, err := os.ReadFile(IndexPath(pristine))
	if err != nil {
		f.Fatal(err)
	}
	batch, _ := os.ReadFile(pristine)
	creds := batchCredentials(f, pristine)
	f.Add(valid)
	f.Add(valid[:indexHeaderSize])
	f.Add(valid[:len(valid)-1])
	f.Add([]byte{})
	for _, off := range []int{0, 50, 70, 130, len(valid) - 20} {
		d := bytes.Clone(valid)
		d[off] ^= 1
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, index []byte) {
		path := filepath.Join(t.TempDir(), "batch.kwb")
		if err := os.WriteFile(path, batch, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(IndexPath(path), index, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Inject(path, "HW-1", time.Now()); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "got credential 1") {
			t.Fatalf("used device: %v", err)
		}
		got, err := Inject(path, "HW-new", time.Now())
		if err != nil || got.Index != 3 || got.CertSerial != creds[3].CertSerial {
			t.Fatalf("new device: %+v, %v; want credential 3", got, err)
		}
	})
}

// TestBatchResumeLocked: a resume of a batch file another process holds (an injector, or another batch run) is
// refused before anything is read or cut.
func TestBatchResumeLocked(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	siteCA(t, f, n.Soft, "site-a", 1000)
	out := filepath.Join(t.TempDir(), "batch.kwb")
	req := softBatch(out, 64)
	req.StopAfter = 16
	if _, err := f.Batch(ctx, req); !errors.Is(err, ErrStopped) {
		t.Fatal(err)
	}
	holder, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(holder.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(out)
	req.StopAfter = 0
	if _, err := f.Batch(ctx, req); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("resume of a locked batch file: %v", err)
	}
	if after, _ := os.Stat(out); after.Size() != before.Size() {
		t.Fatalf("the refused resume changed the file: %d -> %d bytes", before.Size(), after.Size())
	}
	holder.Close()
	if sum, err := f.Batch(ctx, req); err != nil || sum.Resumed != 16 {
		t.Fatalf("resume after the lock is released: %+v, %v", sum, err)
	}
}
