package ra

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// Group commit: every decision's transaction (tx) joins a group that commits together, so that the durable
// commit (an fsync of the SQLite WAL with synchronous=FULL, a WAL flush on PostgreSQL) is paid once per group,
// not once per request. Each request runs in a savepoint of the group's transaction (store.Tx.Savepoint): it
// gets its own success or its own refusal, and nothing of a refused request is stored. A request is answered
// only after the group's transaction has committed.
//
// There is no committer goroutine: the first request to find no group committing leads. It takes what is
// queued (waiting up to Window for requests that are on their way, see expect), commits it, and hands the lead
// to the first request queued meanwhile, which commits the next group. Under load the queue fills while a group
// commits, so groups form without anyone waiting on a timer; a lone request commits at once.

// GroupCommit tunes group commit.
type GroupCommit struct {
	// Window is the longest the leader of a group waits for requests that have started (their checks and
	// signature) but not yet queued, before it commits: 0 means DefaultCommitWindow, negative commits what is
	// queued at once. It is cut to MaxCommitWindow. A lone request never waits: the leader waits only while
	// others are on their way.
	Window time.Duration
	// MaxSize bounds the requests of one group; default 256.
	MaxSize int
}

// DefaultCommitWindow and MaxCommitWindow bound GroupCommit.Window.
const (
	DefaultCommitWindow = time.Millisecond
	MaxCommitWindow     = 2 * time.Millisecond
	defaultGroupSize    = 256
)

type grouper struct {
	st     store.Store
	window atomic.Int64 // time.Duration
	max    int
	notify func([]string)
	logger *slog.Logger

	mu      sync.Mutex
	queue   []*groupOp
	leading bool
	// arrived is poked (without blocking) each time a request queues, for a leader waiting for more.
	arrived chan struct{}
	// coming counts requests that announced themselves (expect) and have not queued or given up yet.
	coming atomic.Int64

	// statistics, for benchmarks and tests
	groups, ops atomic.Int64
	// obs, once set, is the RA's observer (observe.go).
	obs *observer
}

// groupOp is one request's transaction function waiting for its group.
type groupOp struct {
	ctx     context.Context
	fn      func(store.Tx) error
	actions *[]string // the actions of the audit events fn appended, for the change feed; may be nil
	err     error
	done    chan struct{}
	lead    chan struct{}
}

func newGrouper(st store.Store, cfg GroupCommit, notify func([]string), logger *slog.Logger) *grouper {
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = defaultGroupSize
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultCommitWindow
	}
	g := &grouper{st: st, max: cfg.MaxSize, notify: notify, logger: logger, arrived: make(chan struct{}, 1)}
	g.window.Store(int64(min(max(cfg.Window, 0), MaxCommitWindow)))
	return g
}

// SetCommitWindow sets how long the leader of a commit group may wait for requests on their way (GroupCommit.
// Window): 0 not at all; at most MaxCommitWindow.
func (r *RA) SetCommitWindow(d time.Duration) error {
	if d < 0 || d > MaxCommitWindow {
		return FieldErrorf(KindBadRequest, "commit-window", "commit window %s is outside 0 to %s", d, MaxCommitWindow)
	}
	r.group.window.Store(int64(d))
	return nil
}

// ticket is a request announced to the grouper: the leader of a group may wait for it (up to the window). It
// is used up when the request queues, or by done when it ends without a transaction.
type ticket struct {
	g    *grouper
	used bool
}

// expect announces a request that will queue a transaction once its checks and signature are done. Call done
// on every path (a deferred call is right): it is a no-op once the ticket was used by the request's transaction.
func (g *grouper) expect() *ticket {
	g.coming.Add(1)
	return &ticket{g: g}
}

func (t *ticket) done() {
	if t != nil && !t.used {
		t.used = true
		t.g.coming.Add(-1)
	}
}

// run runs fn in the transaction of a group and returns its result once that group committed (or fn's own
// error; or the commit's error, which then is every request's of the group). tk, if not nil, is the ticket of
// the request, used up as it queues.
func (g *grouper) run(ctx context.Context, tk *ticket, fn func(store.Tx) error, actions *[]string) error {
	op := &groupOp{ctx: ctx, fn: fn, actions: actions, done: make(chan struct{}), lead: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, op)
	tk.done()
	leader := !g.leading
	g.leading = true
	g.mu.Unlock()
	if !leader {
		select {
		case g.arrived <- struct{}{}:
		default:
		}
		select {
		case <-op.done:
			return op.err
		case <-op.lead:
		}
	}
	g.lead(op)
	return op.err
}

// lead commits groups until self's is committed, then hands the lead to the first request queued meanwhile.
func (g *grouper) lead(self *groupOp) {
	for {
		g.gather()
		g.mu.Lock()
		n := min(len(g.queue), g.max)
		batch := make([]*groupOp, n)
		copy(batch, g.queue)
		g.queue = append(g.queue[:0], g.queue[n:]...)
		g.mu.Unlock()

		g.commit(batch)

		g.mu.Lock()
		selfDone := isClosed(self.done)
		switch {
		case len(g.queue) == 0:
			g.leading = false
			g.mu.Unlock()
			return
		case selfDone:
			next := g.queue[0]
			g.mu.Unlock()
			close(next.lead)
			return
		}
		g.mu.Unlock()
	}
}

// gather waits, at most the window, while requests are on their way and the group is not full.
func (g *grouper) gather() {
	window := time.Duration(g.window.Load())
	if window <= 0 || g.coming.Load() == 0 {
		return
	}
	timer := time.NewTimer(window)
	defer timer.Stop()
	for {
		g.mu.Lock()
		full := len(g.queue) >= g.max
		g.mu.Unlock()
		if full || g.coming.Load() == 0 {
			return
		}
		select {
		case <-g.arrived:
		case <-timer.C:
			return
		}
	}
}

// commit runs the batch's functions in one transaction, each in a savepoint, and answers each request.
func (g *grouper) commit(batch []*groupOp) {
	g.groups.Add(1)
	g.ops.Add(int64(len(batch)))
	// The transaction is the group's: one request's cancellation ends its own part only.
	ctx := context.WithoutCancel(batch[0].ctx)
	start := time.Now()
	err := g.st.Tx(ctx, func(tx store.Tx) error {
		for _, op := range batch {
			op.err = g.runOp(tx, op)
		}
		return nil
	})
	var actions []string
	for _, op := range batch {
		if err != nil && op.err == nil {
			op.err = err
		}
		if op.err == nil && op.actions != nil {
			actions = append(actions, *op.actions...)
		}
	}
	if g.obs != nil {
		if o := g.obs.get(); o != nil {
			o.Committed(len(batch), time.Since(start))
		}
	}
	if len(actions) > 0 && g.notify != nil {
		g.notify(actions)
	}
	for _, op := range batch {
		close(op.done)
	}
}

// runOp runs one request's function in a savepoint of tx. A panic in it is that request's failure, not the
// group's: its savepoint is rolled back and it gets an internal error.
func (g *grouper) runOp(tx store.Tx, op *groupOp) (err error) {
	defer func() {
		if p := recover(); p != nil {
			g.logger.ErrorContext(op.ctx, "panic while recording a request; its part of the group was rolled back", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = errorf(KindInternal, "internal error while recording the request; nothing of it was stored")
		}
	}()
	if err := op.ctx.Err(); err != nil {
		return err
	}
	return tx.Savepoint(op.ctx, func() error { return op.fn(tx) })
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// GroupStats reports the groups committed and the requests they held since the RA started.
func (r *RA) GroupStats() (groups, requests int64) {
	return r.group.groups.Load(), r.group.ops.Load()
}
