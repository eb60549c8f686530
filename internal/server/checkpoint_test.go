package server

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/auditproof"
)

// TestAuditCheckpointServed: before the first checkpoint /audit/checkpoint is 404; the checkpointer signs one,
// writes it to its directory, serves it, signs the next only after new events, and refuses to go back to a
// smaller log than one its directory has seen.
func TestAuditCheckpointServed(t *testing.T) {
	ctx := context.Background()
	e := startRevocation(t)
	get := func() (int, string) {
		resp, err := http.Get(e.base + "/audit/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(); code != http.StatusNotFound {
		t.Fatalf("before any checkpoint: %d, want 404", code)
	}
	dir := filepath.Join(t.TempDir(), "checkpoints")
	c := &Checkpointer{RA: e.n.RA, Interval: time.Hour, Dir: dir, Log: e.n.Logger}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.Once(ctx); err != nil {
		t.Fatal(err)
	}
	vkey, err := e.n.RA.AuditVerifierKey(ctx, ra.System("test"))
	if err != nil {
		t.Fatal(err)
	}
	code, body := get()
	if code != http.StatusOK {
		t.Fatalf("GET /audit/checkpoint: %d %s", code, body)
	}
	served, err := auditproof.Open([]byte(body), vkey)
	if err != nil {
		t.Fatalf("served checkpoint: %v", err)
	}
	latest, err := os.ReadFile(filepath.Join(dir, CheckpointLatest))
	if err != nil || string(latest) != body {
		t.Fatalf("%s/latest: %v, differs from the served one", dir, err)
	}
	// No new event: no new file.
	if err := c.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("%d files after a round with no new event, want 2 (checkpoint-%d and latest)", len(entries), served.Size)
	}
	issueGateway(t, e.n, "GW-NEXT-0001")
	if err := c.Once(ctx); err != nil {
		t.Fatal(err)
	}
	_, body = get()
	next, err := auditproof.Open([]byte(body), vkey)
	if err != nil || next.Size <= served.Size {
		t.Fatalf("after an issuance: %+v, %v; want a checkpoint larger than %d", next, err, served.Size)
	}
	// A directory that has seen a larger log than the database holds: refused, nothing written.
	fresh := &Checkpointer{RA: e.n.RA, Interval: time.Hour, Dir: dir, Log: e.n.Logger, seen: int64(next.Size) + 100}
	if err := fresh.Once(ctx); err == nil || !strings.Contains(err.Error(), "older than the checkpoint") {
		t.Fatalf("a log smaller than one seen: %v", err)
	}
}
