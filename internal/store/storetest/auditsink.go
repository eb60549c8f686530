package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// RunAuditSink runs the conformance suite of store.AuditSinkStore and store.AuditSinkTx. open must return a new,
// empty, migrated store for each call, as for Run.
func RunAuditSink(t *testing.T, open func(t *testing.T) Backend) {
	runCases(t, open, []testCase{
		{"CursorForwardOnly", testAuditSinkForward},
		{"CursorConcurrent", testAuditSinkConcurrent},
		{"CursorRollsBack", testAuditSinkRollback},
	})
}

func advance(ctx context.Context, s store.Store, name string, seq int64, at time.Time) error {
	return s.Tx(ctx, func(tx store.Tx) error { return tx.AdvanceAuditSink(ctx, name, seq, at) })
}

func testAuditSinkForward(t *testing.T, s Backend) {
	ctx := context.Background()
	c, err := s.AuditSinkCursor(ctx, "file:/var/log/a.jsonl")
	if err != nil || c.Seq != 0 || c.Name != "file:/var/log/a.jsonl" || !c.UpdatedAt.IsZero() {
		t.Fatalf("new sink: %+v %v, want cursor 0", c, err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	for _, step := range []struct {
		seq, want int64
	}{{10, 10}, {25, 25}, {7, 25}, {25, 25}, {26, 26}} {
		if err := advance(ctx, s, "file:/var/log/a.jsonl", step.seq, at.Add(time.Duration(step.seq)*time.Second)); err != nil {
			t.Fatal(err)
		}
		c, err := s.AuditSinkCursor(ctx, "file:/var/log/a.jsonl")
		if err != nil || c.Seq != step.want {
			t.Fatalf("after advancing to %d: %+v %v, want %d", step.seq, c, err, step.want)
		}
		if !c.UpdatedAt.Equal(at.Add(time.Duration(step.want) * time.Second)) {
			t.Fatalf("after advancing to %d: updated %v, want the time of the advance to %d", step.seq, c.UpdatedAt, step.want)
		}
	}
	if err := advance(ctx, s, "https://siem.example/in", 3, at); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListAuditSinks(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "file:/var/log/a.jsonl" || list[0].Seq != 26 || list[1].Seq != 3 {
		t.Fatalf("list: %+v %v", list, err)
	}
}

// testAuditSinkConcurrent: nodes advancing one sink concurrently leave it at the highest sequence any reached.
func testAuditSinkConcurrent(t *testing.T, s Backend) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(1); i <= 10; i++ {
				errs <- advance(ctx, s, "sink", i*10-int64(w), time.Now())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c, err := s.AuditSinkCursor(ctx, "sink"); err != nil || c.Seq != 100 {
		t.Fatalf("cursor %+v %v, want 100", c, err)
	}
}

func testAuditSinkRollback(t *testing.T, s Backend) {
	ctx := context.Background()
	if err := advance(ctx, s, "sink", 5, time.Now()); err != nil {
		t.Fatal(err)
	}
	err := s.Tx(ctx, func(tx store.Tx) error {
		if err := tx.AdvanceAuditSink(ctx, "sink", 9, time.Now()); err != nil {
			return err
		}
		return context.Canceled
	})
	if err == nil {
		t.Fatal("transaction did not fail")
	}
	if c, err := s.AuditSinkCursor(ctx, "sink"); err != nil || c.Seq != 5 {
		t.Fatalf("cursor %+v %v after a rolled-back advance, want 5", c, err)
	}
}
