package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// testWalkChanges: the change list is the successful audit events, in sequence order, from after the given
// sequence number; refusals are not changes.
func testWalkChanges(t *testing.T, s Backend) {
	ctx := context.Background()
	ev := func(action, subject, outcome string) *audit.Event {
		return &audit.Event{Time: t0, Actor: "test", Action: action, Subject: subject, Outcome: outcome}
	}
	tx(t, s, func(tx store.Tx) error {
		for _, e := range []*audit.Event{
			ev("key.destroy", "soft:1", audit.OutcomeSuccess),
			ev("cert.issue", "-", audit.OutcomeRefused),
			ev("ca.create", "dev/root", audit.OutcomeSuccess),
		} {
			if err := tx.AppendAudit(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
	var got []store.Change
	if err := s.WalkChanges(ctx, 0, func(c store.Change) error { got = append(got, c); return nil }); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "changes", got, []store.Change{{Seq: 1, Action: "key.destroy", Subject: "soft:1"}, {Seq: 3, Action: "ca.create", Subject: "dev/root"}})
	got = nil
	if err := s.WalkChanges(ctx, 1, func(c store.Change) error { got = append(got, c); return nil }); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "changes after 1", got, []store.Change{{Seq: 3, Action: "ca.create", Subject: "dev/root"}})
	appendN(t, s, 2500, 500)
	n := 0
	if err := s.WalkChanges(ctx, 3, func(store.Change) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "changes over several pages", n, 2500)
}

// testWatch: a commit signals the watch channel, and ending the context closes it.
func testWatch(t *testing.T, s Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Drain what the watcher may signal on its own (a PostgreSQL watcher signals on its fallback timer).
	drain := func() {
		for {
			select {
			case <-ch:
			default:
				return
			}
		}
	}
	drain()
	tx(t, s, func(tx store.Tx) error {
		return tx.AppendAudit(context.Background(), &audit.Event{Time: t0, Actor: "test", Action: "key.destroy", Subject: "soft:1", Outcome: audit.OutcomeSuccess})
	})
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal within 10 s of a commit")
	}
	cancel()
	for range ch {
	}
}
