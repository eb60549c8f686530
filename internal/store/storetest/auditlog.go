package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// testCheckpoints stores checkpoints out of order and reads them back by size, with their frontier intact, and
// refuses a second checkpoint of one size.
func testCheckpoints(t *testing.T, s Backend) {
	ctx := context.Background()
	if _, err := s.LatestCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestCheckpoint of an empty store: %v, want ErrNotFound", err)
	}
	tree := audit.NewTree()
	var cps []*store.Checkpoint
	for i := 1; i <= 7; i++ {
		tree.Append(&audit.Event{Seq: int64(i), Actor: "a", Action: "x", Subject: "s", Outcome: audit.OutcomeSuccess})
		cps = append(cps, &store.Checkpoint{Size: int64(i), Root: tree.Root(), Frontier: tree.Frontier(),
			Note: []byte("note " + string(rune('0'+i)) + "\n"), CreatedAt: time.Unix(1700000000+int64(i), 0).UTC()})
	}
	for _, i := range []int{3, 0, 6, 1} {
		if err := s.Tx(ctx, func(tx store.Tx) error { return tx.InsertCheckpoint(ctx, cps[i]) }); err != nil {
			t.Fatalf("InsertCheckpoint %d: %v", cps[i].Size, err)
		}
	}
	err := s.Tx(ctx, func(tx store.Tx) error { return tx.InsertCheckpoint(ctx, cps[3]) })
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second checkpoint of size 4: %v, want ErrExists", err)
	}
	latest, err := s.LatestCheckpoint(ctx)
	if err != nil || latest.Size != 7 {
		t.Fatalf("LatestCheckpoint: %+v, %v; want size 7", latest, err)
	}
	var sizes []int64
	err = s.WalkCheckpoints(ctx, func(c *store.Checkpoint) error {
		sizes = append(sizes, c.Size)
		want := cps[c.Size-1]
		if !bytes.Equal(c.Root, want.Root) || !bytes.Equal(c.Note, want.Note) || !c.CreatedAt.Equal(want.CreatedAt) {
			t.Errorf("checkpoint %d read back as %+v, want %+v", c.Size, c, want)
		}
		resumed, err := audit.ResumeTree(uint64(c.Size), c.Frontier)
		if err != nil {
			t.Fatalf("resume tree of checkpoint %d: %v", c.Size, err)
		}
		if !bytes.Equal(resumed.Root(), want.Root) {
			t.Errorf("checkpoint %d: the frontier read back does not give its root", c.Size)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{1, 2, 4, 7}; !equalInts(sizes, want) {
		t.Fatalf("WalkCheckpoints sizes %v, want %v", sizes, want)
	}
}

// testCheckpointRollback: a checkpoint belongs to its transaction.
func testCheckpointRollback(t *testing.T, s Backend) {
	ctx := context.Background()
	boom := errors.New("boom")
	err := s.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertCheckpoint(ctx, &store.Checkpoint{Size: 1, Root: make([]byte, 32), Note: []byte("n"), CreatedAt: time.Now()}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if _, err := s.LatestCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a rolled-back checkpoint was kept: %v", err)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// testAuditLogIdentity: one identity per installation.
func testAuditLogIdentity(t *testing.T, s Backend) {
	ctx := context.Background()
	if _, err := s.GetAuditLog(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetAuditLog of an empty store: %v, want ErrNotFound", err)
	}
	l := &store.AuditLog{Origin: "keyward.test/log", KeyURI: "soft:audit", CreatedAt: time.Unix(1700000000, 0).UTC()}
	if err := s.Tx(ctx, func(tx store.Tx) error { return tx.InsertAuditLog(ctx, l) }); err != nil {
		t.Fatal(err)
	}
	other := &store.AuditLog{Origin: "keyward.test/other", KeyURI: "soft:other", CreatedAt: time.Now()}
	if err := s.Tx(ctx, func(tx store.Tx) error { return tx.InsertAuditLog(ctx, other) }); !errors.Is(err, store.ErrExists) {
		t.Fatalf("a second audit log identity: %v, want ErrExists", err)
	}
	got, err := s.GetAuditLog(ctx)
	if err != nil || got.Origin != l.Origin || got.KeyURI != l.KeyURI || !got.CreatedAt.Equal(l.CreatedAt) {
		t.Fatalf("GetAuditLog: %+v, %v; want %+v", got, err, l)
	}
}
