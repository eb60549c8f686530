package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// AuditOptions configure the audit log benchmark.
type AuditOptions struct {
	Events     int           // events in the log whose verification is timed
	Batch      int           // events per transaction while building it
	Checkpoint int           // sign a checkpoint every this many events while building it (0: 100,000)
	Issue      int           // certificates per issuance run (with and without recorded state); 0 skips them
	DB         string        // "" for SQLite in a fresh directory; a postgres:// URL of an empty database
	Dir        string        // working directory; default a new temporary one, removed afterwards
	Progress   io.Writer     // progress lines, or nil
	IssueCheck time.Duration // checkpoint interval during the issuance run with the log (0: 1s)
}

// AuditResult is what the audit log benchmark measured.
type AuditResult struct {
	Store      string `json:"store"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// Building the log: synthetic events carrying state details like an issuance's, appended in transactions
	// of Batch, a checkpoint signed every Checkpoint events (its time included).
	Events           int64   `json:"events"`
	Batch            int     `json:"batch"`
	AppendSeconds    float64 `json:"append_seconds"`
	AppendsPerSecond float64 `json:"appends_per_second"`
	Checkpoints      int     `json:"checkpoints"`
	CheckpointMillis float64 `json:"checkpoint_ms_avg"` // signing and storing one, from the previous frontier
	// 'audit verify' of the whole log: chain, tree, checkpoints, state replay and table comparison.
	VerifySeconds float64 `json:"verify_seconds"`
	VerifyEvents  int64   `json:"verify_events"`
	// Issuance through the RA (bench issue) in the same run, with the log (state recorded, checkpoints every
	// IssueCheck) and without the recorded state, and how much lower the first is.
	IssueN                 int     `json:"issue_n,omitempty"` // per run; two runs of each, best kept
	IssueWithLogPerSecond  float64 `json:"issue_with_log_per_second,omitempty"`
	IssueWithoutPerSecond  float64 `json:"issue_without_state_per_second,omitempty"`
	IssueCostPercent       float64 `json:"issue_cost_percent,omitempty"` // (without - with) / without * 100
	IssueWithLogAuditValid bool    `json:"issue_with_log_verified,omitempty"`
}

// Audit builds an audit log of opts.Events events in a fresh store, signing checkpoints as it goes, times
// 'audit verify' of it, and then runs the issuance benchmark with and without the recorded state.
func Audit(ctx context.Context, opts AuditOptions) (*AuditResult, error) {
	if opts.Events <= 0 {
		return nil, errors.New("bench: --events must be positive")
	}
	if opts.DB != "" && opts.Issue > 0 {
		// Each issuance run initialises a store of its own, and a database URL names one.
		return nil, errors.New("bench: the issuance comparison needs a fresh store per run: with --db give --issue 0, and compare 'keyward bench issue' runs")
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Checkpoint <= 0 {
		opts.Checkpoint = 100000
	}
	if opts.IssueCheck <= 0 {
		opts.IssueCheck = time.Second
	}
	dir, cleanup, err := workDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	progress := progressTo(opts.Progress)
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(dir, "data"), DB: opts.DB, Warn: io.Discard}, Actor: "bench"})
	if err != nil {
		return nil, err
	}
	closeNode := sync.OnceValue(n.Close)
	defer func() { _ = closeNode() }()
	res := &AuditResult{Store: storeName(opts.DB), GOMAXPROCS: runtime.GOMAXPROCS(0), Batch: opts.Batch}
	sys := ra.System("bench")
	if _, err := n.RA.Checkpoint(ctx, sys, nil); err != nil { // the audit key, not timed
		return nil, err
	}

	// Each synthetic event records a row it inserts in the same transaction (an operator token: the smallest
	// row whose state the log carries), so that 'audit verify' compares as many rows with the log as there
	// are events, as it does for a log of issuances.
	progress("appending %d events, %d per transaction, a checkpoint every %d", opts.Events, opts.Batch, opts.Checkpoint)
	var cpTime time.Duration
	start := time.Now()
	for i := 0; i < opts.Events; {
		err := n.Store.Tx(ctx, func(tx store.Tx) error {
			for j := 0; j < opts.Batch && i+j < opts.Events; j++ {
				id := strconv.Itoa(i + j)
				hash := sha256.Sum256([]byte("bench-" + id))
				tok := &store.Token{ID: "bench-" + id, Name: "bench-" + id, Role: ra.RoleAuditor, Hash: hash[:], CreatedAt: time.Now()}
				if err := tx.InsertToken(ctx, tok); err != nil {
					return err
				}
				k, v := audit.StateDetail(audit.StateToken, tok.ID, ra.TokenFields(tok))
				e := &audit.Event{Time: time.Now(), Actor: "bench", Action: "bench.append", Subject: id, Outcome: audit.OutcomeSuccess,
					Details: map[string]string{"profile": "implant-identity", "issuer": "dev/demo-implant", "role": "admin", k: v}}
				if err := tx.AppendAudit(ctx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		before := i
		i = min(i+opts.Batch, opts.Events)
		if i/opts.Checkpoint != before/opts.Checkpoint || i == opts.Events {
			t := time.Now()
			if _, err := n.RA.Checkpoint(ctx, sys, nil); err != nil {
				return nil, err
			}
			cpTime += time.Since(t)
			res.Checkpoints++
			progress("  %d events", i)
		}
	}
	elapsed := time.Since(start)
	res.Events = int64(opts.Events)
	res.AppendSeconds = elapsed.Seconds()
	res.AppendsPerSecond = float64(opts.Events) / res.AppendSeconds
	res.CheckpointMillis = float64(cpTime.Milliseconds()) / float64(max(res.Checkpoints, 1))

	progress("verifying the audit log")
	start = time.Now()
	rep, err := n.RA.VerifyAudit(ctx, sys, ra.AuditVerifyOptions{})
	if err != nil {
		return nil, fmt.Errorf("bench: audit verify: %w", err)
	}
	res.VerifySeconds = time.Since(start).Seconds()
	res.VerifyEvents = rep.Events
	if err := closeNode(); err != nil {
		return nil, err
	}

	if opts.Issue > 0 {
		// ABBA order, best of two each: the two runs share a machine with whatever else runs on it, and the
		// first run of a process pays for warming up.
		res.IssueN = opts.Issue
		var with, without float64
		for i, omit := range []bool{true, false, false, true} {
			what := "with the log (state recorded, a checkpoint every " + opts.IssueCheck.String() + ")"
			if omit {
				what = "without the recorded state"
			}
			progress("issuing %d certificates %s (run %d of 4)", opts.Issue, what, i+1)
			o := IssueOptions{N: opts.Issue, DB: opts.DB, OmitAuditState: omit, LimitTime: 100 * time.Millisecond}
			if !omit {
				o.CheckpointEvery = opts.IssueCheck
			}
			r, err := Issue(ctx, o)
			if err != nil {
				return nil, err
			}
			if omit {
				without = max(without, r.PerSecond)
			} else {
				with = max(with, r.PerSecond)
				res.IssueWithLogAuditValid = r.AuditVerified
			}
		}
		res.IssueWithLogPerSecond, res.IssueWithoutPerSecond = with, without
		res.IssueCostPercent = (without - with) / without * 100
	}
	return res, nil
}

// checkpointEvery signs an audit checkpoint every d until the returned function is called, which returns the
// first failure. d <= 0 does nothing.
func checkpointEvery(ctx context.Context, n *node.Node, d time.Duration) func() error {
	if d <= 0 {
		return func() error { return nil }
	}
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				errc <- nil
				return
			case <-t.C:
				if _, err := n.RA.Checkpoint(ctx, ra.System("bench"), nil); err != nil && ctx.Err() == nil {
					errc <- err
					return
				}
			}
		}
	}()
	return func() error { cancel(); return <-errc }
}
