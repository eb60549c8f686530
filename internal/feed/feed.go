package feed

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// Source is what the feed reads: the store's change list and its commit signal.
type Source interface {
	AuditHead(ctx context.Context) (int64, []byte, error)
	WalkChanges(ctx context.Context, after int64, fn func(store.Change) error) error
	Watch(ctx context.Context) (<-chan struct{}, error)
}

// Feed delivers committed changes to subscribers. It is safe for concurrent use.
type Feed struct {
	src  Source
	log  *slog.Logger
	poke chan struct{}

	// subs is replaced, never changed, when a subscriber is added, so Wants reads it without waiting for a
	// delivery in progress.
	subs atomic.Pointer[[]subscription]

	mu     sync.Mutex // serialises deliveries and guards cursor
	cursor int64
}

type subscription struct {
	prefixes []string
	fn       func([]store.Change)
}

// New returns a feed whose cursor is the store's newest change: subscribers hear of changes committed after it.
func New(ctx context.Context, src Source, log *slog.Logger) (*Feed, error) {
	head, _, err := src.AuditHead(ctx)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Feed{src: src, log: log, poke: make(chan struct{}, 1), cursor: head}, nil
}

// Subscribe calls fn with the changes whose action starts with one of prefixes (every change if none is given),
// in sequence order, once per delivery round. fn runs on the feed's goroutine and must return quickly: it
// invalidates a cache or kicks a worker, it does not do the work.
func (f *Feed) Subscribe(fn func([]store.Change), prefixes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var subs []subscription
	if cur := f.subs.Load(); cur != nil {
		subs = append(subs, *cur...)
	}
	subs = append(subs, subscription{prefixes: prefixes, fn: fn})
	f.subs.Store(&subs)
}

func (f *Feed) subscriptions() []subscription {
	if s := f.subs.Load(); s != nil {
		return *s
	}
	return nil
}

// Wants reports whether a subscriber follows one of actions.
func (f *Feed) Wants(actions []string) bool {
	for _, s := range f.subscriptions() {
		for _, a := range actions {
			if s.wants(a) {
				return true
			}
		}
	}
	return false
}

// Poke asks for a delivery round now: a process calls it after its own commit, so its subscribers need not wait
// for the store's signal.
func (f *Feed) Poke() {
	select {
	case f.poke <- struct{}{}:
	default:
	}
}

// Cursor is the sequence number of the last change delivered.
func (f *Feed) Cursor() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cursor
}

// Sync delivers every change committed after the cursor, now, on the caller's goroutine.
func (f *Feed) Sync(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var batch []store.Change
	err := f.src.WalkChanges(ctx, f.cursor, func(c store.Change) error {
		batch = append(batch, c)
		if len(batch) == 1024 {
			f.deliver(batch)
			batch = batch[:0]
		}
		return nil
	})
	f.deliver(batch)
	return err
}

// deliver hands batch to every subscriber that wants part of it and advances the cursor; f.mu is held.
func (f *Feed) deliver(batch []store.Change) {
	if len(batch) == 0 {
		return
	}
	for _, s := range f.subscriptions() {
		var mine []store.Change
		for _, c := range batch {
			if s.wants(c.Action) {
				mine = append(mine, c)
			}
		}
		if len(mine) > 0 {
			s.fn(mine)
		}
	}
	f.cursor = batch[len(batch)-1].Seq
}

func (s subscription) wants(action string) bool {
	if len(s.prefixes) == 0 {
		return true
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(action, p) {
			return true
		}
	}
	return false
}

// retry is how long Run waits after a failed read before it tries again.
const retry = time.Second

// Run delivers changes as the store signals commits, and on Poke, until ctx ends.
func (f *Feed) Run(ctx context.Context) error {
	signal, err := f.src.Watch(ctx)
	if err != nil {
		return err
	}
	for {
		if err := f.Sync(ctx); err != nil && ctx.Err() == nil {
			f.log.WarnContext(ctx, "change feed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(retry):
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-signal:
			if !ok {
				return nil
			}
		case <-f.poke:
		}
	}
}
