package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// The key filter: which SPKI hashes the certificates table may hold, so that the duplicate-key pre-check of an
// issuance (IssuanceFacts) answers "no certificate has this key" for a new key without reading the
// certificates' SPKI index. On a store of millions that index is larger than any page cache and every lookup
// of a new key (nearly every issuance) read a random page of it from the file.
//
// It is a blocked Bloom filter (Putze, Sanders and Singler, "Cache-, hash- and space-efficient Bloom
// filters", 2007): each key sets keyFilterProbes bits within one 512-bit block chosen by the key. The key is
// already a SHA-256 hash, so its bytes choose the block and the bits. A key somebody chose so that its bits
// are set (a collision) costs no more than the index lookup the filter would have spared; the filter only ever
// says "certainly absent" or "look it up".
//
// What it may miss: a certificate another process (an operator's command on the same file, or a second Store)
// inserts while this one runs. The writer notices such a commit when its next transaction begins (PRAGMA
// data_version, which moves only for other connections' commits): from then until a filter whose build began
// after it is ready, the filter is not trusted for the rule itself. The rule, a key certified for one subject
// only, is kept by tx.InsertCertificate under the write lock: it reads the certificates' SPKI index unless the
// filter, trusted, says no certificate holds the key (absentForWrite), which for a new key on a store of
// millions spares the writer a random page.
const (
	keyFilterBlockWords = 8                           // 512 bits: one cache line
	keyFilterProbes     = 7                           // bits set per key, 9 bits of the hash each
	keyFilterBitsPerKey = 12                          // for the keys it is sized for: half as many again as it holds
	keyFilterMinKeys    = 1 << 16                     // sized for at least this many keys
	keyFilterScanBatch  = 1 << 14                     // keys read per query while the filter is built
	keyFilterMaxBits    = 1 << 34                     // 2 GiB: beyond it the filter is not kept and every lookup reads
	keyFilterGrowAt     = keyFilterBitsPerKey * 3 / 4 // bits per key below which it is rebuilt (it holds twice what it was built with)
)

// keyBits is one filter of a given size.
type keyBits struct {
	words  []atomic.Uint64
	blocks uint64
	added  atomic.Int64
	// foreign is keyFilter.foreign when the build began: a filter is trusted for the rule only while no other
	// connection's commit has been seen since.
	foreign int64
}

func newKeyBits(keys int64) *keyBits {
	blocks := max((uint64(keys)*keyFilterBitsPerKey+keyFilterBlockWords*64-1)/(keyFilterBlockWords*64), 1)
	return &keyBits{words: make([]atomic.Uint64, blocks*keyFilterBlockWords), blocks: blocks}
}

// probe calls fn with the index of each word to test or set, and the bit in it.
func (f *keyBits) probe(h []byte, fn func(w int, bit uint64) bool) bool {
	block, _ := bits.Mul64(binary.LittleEndian.Uint64(h[0:8]), f.blocks) // uniform in [0, blocks)
	v := binary.LittleEndian.Uint64(h[8:16])
	base := int(block) * keyFilterBlockWords
	for i := 0; i < keyFilterProbes; i++ {
		pos := v & 511
		v >>= 9
		if !fn(base+int(pos>>6), 1<<(pos&63)) {
			return false
		}
	}
	return true
}

func (f *keyBits) add(h []byte) {
	f.probe(h, func(w int, bit uint64) bool {
		if f.words[w].Load()&bit == 0 {
			f.words[w].Or(bit)
		}
		return true
	})
	f.added.Add(1)
}

func (f *keyBits) mayHold(h []byte) bool {
	return f.probe(h, func(w int, bit uint64) bool { return f.words[w].Load()&bit != 0 })
}

// keyFilter is the store's filter: the one answering lookups (only a filter whose build finished, holding
// every certificate committed before its build began), and while one is built the next, which every insert
// also goes into.
type keyFilter struct {
	cur, next atomic.Pointer[keyBits]
	building  sync.Mutex // held by the goroutine building next
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
	db        *sql.DB
	// idle returns once no write transaction is open: one that added a key to cur before next existed has
	// committed by then, so the scan that fills next sees its certificate.
	idle    func(context.Context) error
	minKeys int64 // sized for at least this many keys (tests make it small)
	started sync.Once
	// firstDone closes once the first build has ended, in a filter or in firstErr.
	firstDone chan struct{}
	firstOnce sync.Once
	firstErr  error
	builds    atomic.Int64 // filters built, for tests
	failedAt  atomic.Int64 // when the last build failed (Unix seconds): the next waits a minute
	// foreign counts the commits of other connections the writer has seen (foreignCommit).
	foreign atomic.Int64
	spared  atomic.Int64 // inserts whose key check the filter answered, for tests
}

// newKeyFilter returns the filter of the certificates in db, built in the background the first time absent is
// asked (a command that never issues does not pay for it); until it is ready every lookup reads the index.
func newKeyFilter(db *sql.DB, idle func(context.Context) error, minKeys int64) *keyFilter {
	k := &keyFilter{db: db, idle: idle, minKeys: minKeys, firstDone: make(chan struct{})}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	return k
}

// start builds the first filter, sized for half as many again as the certificates the table holds (their rowids: certificates
// are never deleted).
func (k *keyFilter) start() {
	if err := k.begin(); err != nil {
		k.failedAt.Store(time.Now().Unix())
		k.firstEnded(err)
	}
}

// begin starts a first build (or another after one failed).
func (k *keyFilter) begin() error {
	var rows int64
	if err := k.db.QueryRowContext(k.ctx, `SELECT coalesce(max(rowid), 0) FROM certificates`).Scan(&rows); err != nil {
		return fmt.Errorf("key filter: %w", err)
	}
	if uint64(max(rows*3/2, k.minKeys))*keyFilterBitsPerKey > keyFilterMaxBits {
		return fmt.Errorf("key filter: %d certificates need more than %d bits", rows, uint64(keyFilterMaxBits))
	}
	k.rebuild(rows)
	return nil
}

func (k *keyFilter) firstEnded(err error) {
	k.firstOnce.Do(func() {
		k.firstErr = err
		close(k.firstDone)
	})
}

// warm starts the first build if nothing has, and returns once it has ended.
func (k *keyFilter) warm(ctx context.Context) error {
	k.started.Do(k.start)
	select {
	case <-k.firstDone:
		return k.firstErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rebuild starts building a filter sized for half as many again as keys (at least minKeys) unless one is being built, and
// reports whether it started one.
func (k *keyFilter) rebuild(keys int64) bool {
	if now := time.Now().Unix(); now-k.failedAt.Load() < 60 || !k.building.TryLock() {
		return false
	}
	size := max(keys*3/2, k.minKeys)
	if uint64(size)*keyFilterBitsPerKey > keyFilterMaxBits {
		k.building.Unlock()
		return false
	}
	nb := newKeyBits(size)
	k.next.Store(nb) // from here on every insert also goes into nb
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		stale := k.build(nb)
		k.building.Unlock()
		if stale { // another connection committed while it was built: build one that has its certificates
			k.rebuild(nb.added.Load())
		}
	}()
	return true
}

// build fills nb after the writer is idle and makes it the filter in use; it reports whether another
// connection's commit was seen meanwhile.
func (k *keyFilter) build(nb *keyBits) (stale bool) {
	err := k.idle(k.ctx)
	if err == nil {
		nb.foreign = k.foreign.Load()
		err = k.fill(nb)
	}
	if err != nil {
		k.failedAt.Store(time.Now().Unix())
		k.next.CompareAndSwap(nb, nil)
		k.firstEnded(err)
		return false
	}
	k.cur.Store(nb)
	k.next.CompareAndSwap(nb, nil)
	k.builds.Add(1)
	k.firstEnded(nil)
	return nb.foreign != k.foreign.Load()
}

// fill adds every SPKI hash of the certificates table to f, reading the covering index in key order a batch
// per query, so that no read transaction is held open for the whole scan (it would keep the WAL from being
// started over).
func (k *keyFilter) fill(f *keyBits) error {
	after := []byte{}
	for {
		rows, err := k.db.QueryContext(k.ctx, `SELECT spki_sha256 FROM certificates WHERE spki_sha256 > ? ORDER BY spki_sha256 LIMIT ?`, after, keyFilterScanBatch)
		if err != nil {
			return fmt.Errorf("key filter: %w", err)
		}
		n := 0
		var h sql.RawBytes
		for rows.Next() {
			if err := rows.Scan(&h); err != nil {
				_ = rows.Close()
				return fmt.Errorf("key filter: %w", err)
			}
			if len(h) == sha256.Size {
				f.add(h)
			}
			after = append(after[:0], h...)
			n++
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("key filter: %w", err)
		}
		if n < keyFilterScanBatch {
			return nil
		}
	}
}

// add records that a certificate for key h is being inserted; it is called before the insert commits.
func (k *keyFilter) add(h []byte) {
	if len(h) != sha256.Size {
		return
	}
	cur := k.cur.Load()
	if cur != nil {
		cur.add(h)
	}
	if nb := k.next.Load(); nb != nil && nb != cur {
		nb.add(h)
	}
	if cur != nil && uint64(cur.added.Load())*keyFilterGrowAt > uint64(len(cur.words))*64 {
		k.rebuild(cur.added.Load())
	}
}

// absent reports whether the certificates table certainly holds no certificate for key h (committed before
// the filter was built or inserted through this store since).
func (k *keyFilter) absent(h []byte) bool {
	cur := k.cur.Load()
	if cur == nil {
		k.started.Do(k.start)
		if f := k.failedAt.Load(); f != 0 && time.Now().Unix()-f >= 60 && k.next.Load() == nil {
			if err := k.begin(); err != nil { // the last build failed a while ago: try again
				k.failedAt.Store(time.Now().Unix())
			}
		}
		return false
	}
	return len(h) == sha256.Size && !cur.mayHold(h)
}

// absentForWrite reports whether, by a filter built since the last commit of another connection the writer
// saw, no certificate holds key h. The caller holds the write lock and has called foreignCommit for any such
// commit since its previous transaction.
func (k *keyFilter) absentForWrite(h []byte) bool {
	cur := k.cur.Load()
	if cur == nil || cur.foreign != k.foreign.Load() || len(h) != sha256.Size || cur.mayHold(h) {
		return false
	}
	k.spared.Add(1)
	return true
}

// foreignCommit records that another connection committed since the writer's last transaction: the filter is
// rebuilt before it is trusted for the rule again.
func (k *keyFilter) foreignCommit() {
	k.foreign.Add(1)
	if cur := k.cur.Load(); cur != nil {
		k.rebuild(cur.added.Load())
	}
}

// stats reports the filter in use (none: zero), 8 bytes a word.
func (k *keyFilter) stats() store.WarmStats {
	cur := k.cur.Load()
	if cur == nil {
		return store.WarmStats{}
	}
	return store.WarmStats{Bytes: int64(len(cur.words)) * 8, Keys: cur.added.Load()}
}

func (k *keyFilter) close() {
	k.cancel()
	k.wg.Wait()
}
