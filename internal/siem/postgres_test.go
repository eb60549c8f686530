package siem

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/keyward/keyward/internal/store/postgres"
	"github.com/keyward/keyward/internal/store/storetest"
)

// TestForwardTwoNodesPostgres: two nodes sharing a PostgreSQL database forward to the same sink while events
// are appended; the cursor only moves forward, so the sink holds every event, in order but for re-sent runs.
func TestForwardTwoNodesPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	open := func() *postgres.Store {
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	tg, _ := ParseTarget("file:"+path, "")
	var mu sync.Mutex // the two nodes write one file here; a collector would take concurrent posts
	locked := lockedTarget{Target: tg, mu: &mu}
	nodes := []*Forwarder{
		{Target: locked, Read: a, Advance: advancer(a), Logger: quiet(), BatchEvents: 37},
		{Target: locked, Read: b, Advance: advancer(b), Logger: quiet(), BatchEvents: 53},
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10; i++ {
			appendEvents(t, a, 50)
		}
	}()
	for _, f := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if _, _, err := f.Once(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range nodes {
		for {
			n, _, err := f.Once(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	got := seqs(fh)
	seen := map[int64]bool{}
	for _, s := range got {
		seen[s] = true
	}
	for s := int64(1); s <= 500; s++ {
		if !seen[s] {
			t.Fatalf("event %d never delivered (%d lines)", s, len(got))
		}
	}
	if c, _ := a.AuditSinkCursor(ctx, tg.Name()); c.Seq != 500 {
		t.Fatalf("cursor %d, want 500", c.Seq)
	}
	t.Logf("500 events, %d lines delivered by two nodes", len(got))
}

type lockedTarget struct {
	Target
	mu *sync.Mutex
}

func (l lockedTarget) Deliver(ctx context.Context, batch []byte, first, last int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Target.Deliver(ctx, batch, first, last)
}
