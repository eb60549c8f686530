package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// TestCheckpointer: with commits no longer checkpointing, the checkpointer copies the WAL into the database
// while writers and readers go on, has the writer start it over once it is large (after catching up on its own
// connection), the chain stays intact, and Close stops it.
func TestCheckpointer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keyward.db")
	s, err := open(ctx, path, 5*time.Millisecond, 200)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	wg.Add(1)
	go func() { // a reader throughout
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := s.AuditHead(ctx); err != nil {
				readErr <- err
				return
			}
		}
	}()
	const n = 1500
	for i := 0; i < n; i++ {
		err := s.Tx(ctx, func(tx store.Tx) error {
			return tx.AppendAudit(ctx, &audit.Event{Time: time.Now(), Actor: "test", Action: "test.write", Subject: fmt.Sprint(i),
				Outcome: audit.OutcomeSuccess, Details: map[string]string{"pad": fmt.Sprintf("%0200d", i)}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-readErr:
		t.Fatalf("reader: %v", err)
	default:
	}
	if s.checkpoints.Load() == 0 || s.restarts.Load() == 0 {
		t.Fatalf("the checkpointer ran %d times and had the writer start the WAL over %d times", s.checkpoints.Load(), s.restarts.Load())
	}
	// Before each pass on the writer's connection the checkpointer caught up on its own.
	if s.catchUps.Load() < s.restarts.Load() {
		t.Fatalf("%d passes on the writer's connection after %d catch-up passes; want one at least before each", s.restarts.Load(), s.catchUps.Load())
	}
	// Everything written is in the database file once a checkpoint has run after the last commit, and the WAL
	// was started over under the load: it holds far fewer frames than the transactions written.
	var busy, log, done int
	for try := 0; try < 1000; try++ { // the checkpointer may be running one itself: SQLITE_BUSY, try again
		if err = s.cp.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err != nil || busy == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil || busy != 0 || log != done || log >= n {
		t.Fatalf("final checkpoint: busy %d, %d frames, %d copied, %v; want every frame copied and fewer than %d", busy, log, done, err, n)
	}
	if got, err := store.VerifyAudit(ctx, s); err != nil || got != n {
		t.Fatalf("VerifyAudit: %d, %v", got, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop the checkpointer")
	}
	// The database file alone holds the log (no WAL needed): reopen read-only without the WAL's help.
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var count int
	if err := db.QueryRow(`SELECT count(*) FROM audit_events`).Scan(&count); err != nil || count != n {
		t.Fatalf("events after reopening: %d, %v", count, err)
	}
}

// TestDurableCommits: the writer connection runs WAL with synchronous=FULL, so a committed transaction is fsynced
// before Commit returns (a certificate Keyward answered with survives a power loss), and commits never
// checkpoint (the checkpointer does).
func TestDurableCommits(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "keyward.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "wal_autocheckpoint": "0"} {
		var got string
		if err := s.w.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s on the writer, want %s", pragma, got, want)
		}
	}
}
