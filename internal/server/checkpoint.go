package server

// Audit log checkpoints: the server signs one at least every interval while events are appended, serves the
// newest on the public listener at /audit/checkpoint (c2sp.org/tlog-checkpoint, text/plain), and with a
// checkpoint directory also writes each one there, outside the database, so that a copy held elsewhere
// exposes a later rewrite ('keyward audit verify --checkpoint DIR/latest').

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// CheckpointLatest is the name of the newest checkpoint in a checkpoint directory; each one is also kept as
// checkpoint-<size>.
const CheckpointLatest = "latest"

// Checkpointer signs audit checkpoints on a schedule.
type Checkpointer struct {
	RA       *ra.RA
	Interval time.Duration
	// Dir, if set, receives each new checkpoint as checkpoint-<size> and latest.
	Dir string
	Log *slog.Logger

	seen int64 // the largest checkpoint size written to Dir or made here
}

// Run makes a checkpoint now and then every Interval while events were appended since the last, until ctx
// ends. A failure is logged and retried at the next tick; a log smaller than a checkpoint already seen (the
// database was truncated or restored from an older copy) is logged as an error and never overwrites Dir.
func (c *Checkpointer) Run(ctx context.Context) {
	if c.Dir != "" {
		if err := os.MkdirAll(c.Dir, 0o755); err != nil {
			c.Log.ErrorContext(ctx, "audit checkpoint directory", "dir", c.Dir, "err", err)
		}
		c.seen = latestSize(c.Dir)
	}
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		if err := c.Once(ctx); err != nil && ctx.Err() == nil {
			c.Log.ErrorContext(ctx, "audit checkpoint", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once makes a checkpoint if events were appended since the newest, and writes it to Dir.
func (c *Checkpointer) Once(ctx context.Context) error {
	cp, err := c.RA.Checkpoint(ctx, ra.System("server:checkpoint"), nil)
	if err != nil {
		return err
	}
	if cp.Size < c.seen {
		return fmt.Errorf("the audit log's newest checkpoint has %d events, older than the checkpoint of %d events already seen in %s: "+
			"the database was truncated or restored from an older copy; run 'keyward audit verify --checkpoint %s'",
			cp.Size, c.seen, c.Dir, filepath.Join(c.Dir, CheckpointLatest))
	}
	if cp.Size == c.seen || c.Dir == "" {
		c.seen = cp.Size
		return nil
	}
	if err := writeAtomic(filepath.Join(c.Dir, "checkpoint-"+strconv.FormatInt(cp.Size, 10)), cp.Note); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(c.Dir, CheckpointLatest), cp.Note); err != nil {
		return err
	}
	c.seen = cp.Size
	return nil
}

// latestSize is the size of the largest checkpoint-<size> file in dir, 0 if none.
func latestSize(dir string) int64 {
	entries, _ := os.ReadDir(dir)
	var best int64
	for _, e := range entries {
		if n, err := strconv.ParseInt(strings.TrimPrefix(e.Name(), "checkpoint-"), 10, 64); err == nil && strings.HasPrefix(e.Name(), "checkpoint-") && n > best {
			best = n
		}
	}
	return best
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// auditCheckpoint serves the newest signed checkpoint of the audit log.
func (p *Public) auditCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := p.svc.Reader().LatestCheckpoint(r.Context())
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.Error(w, "no audit checkpoint has been signed yet", http.StatusNotFound)
		return
	case err != nil:
		p.log.WarnContext(r.Context(), "audit checkpoint", "err", err)
		http.Error(w, "audit checkpoint unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=30")
	_, _ = w.Write(cp.Note)
}
