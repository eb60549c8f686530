package feed_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/feed"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

func appendEvent(t *testing.T, s store.Store, action, subject, outcome string) {
	t.Helper()
	err := s.Tx(context.Background(), func(tx store.Tx) error {
		return tx.AppendAudit(context.Background(), &audit.Event{Time: time.Now(), Actor: "test", Action: action, Subject: subject, Outcome: outcome})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFeedDeliversCommittedChanges: a subscriber hears, in order, exactly the successful changes committed
// after the feed started whose action has its prefix, whether this store or a second store on the same file
// (another process) committed them.
func TestFeedDeliversCommittedChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyward.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	appendEvent(t, s, audit.ActionKeyDestroy, "before-start", audit.OutcomeSuccess)
	f, err := feed.New(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var keys, all []string
	f.Subscribe(func(chs []store.Change) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range chs {
			keys = append(keys, c.Subject)
		}
	}, audit.PrefixKey, audit.PrefixCA)
	f.Subscribe(func(chs []store.Change) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range chs {
			all = append(all, c.Subject)
		}
	})
	go f.Run(ctx)
	appendEvent(t, s, audit.ActionKeyDestroy, "k1", audit.OutcomeSuccess)
	appendEvent(t, other, audit.ActionCertIssue, "refused", audit.OutcomeRefused)
	appendEvent(t, other, audit.ActionStationAdd, "st1", audit.OutcomeSuccess)
	appendEvent(t, other, audit.ActionCACreate, "ca1", audit.OutcomeSuccess)
	wantKeys, wantAll := []string{"k1", "ca1"}, []string{"k1", "st1", "ca1"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := slices.Equal(keys, wantKeys) && slices.Equal(all, wantAll)
		gotKeys, gotAll := slices.Clone(keys), slices.Clone(all)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: key/CA subscriber heard %v (want %v), all-changes subscriber %v (want %v)", gotKeys, wantKeys, gotAll, wantAll)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c := f.Cursor(); c != 5 {
		t.Fatalf("cursor %d, want 5", c)
	}
}
