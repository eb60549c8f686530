package console

import (
	"context"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/internal/ra"
)

// TestRatesFromAuditTrail: issuances are counted per hour from the audit trail of a real store; those older than
// the window are skipped by the binary search (and not counted), later ones are read incrementally.
func TestRatesFromAuditTrail(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Date(2031, 3, 14, 15, 9, 26, 0, time.UTC).Add(-40 * 24 * time.Hour)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(to time.Time) { mu.Lock(); now = to; mu.Unlock() }
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "data"), Warn: io.Discard, Now: clock}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	admin := ra.Principal{ID: "test", Role: ra.RoleAdmin}
	serial := 0
	issue := func(k int) {
		for range k {
			serial++
			cn := "DEMO-" + string(rune('0'+serial/10)) + string(rune('0'+serial%10)) + "000000"
			if _, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: pkitest.CSR(t, pkitest.Key(t), cn)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	issue(3) // 40 days ago: outside the window
	end := time.Date(2031, 3, 14, 15, 9, 26, 0, time.UTC)
	advance(end.Add(-26 * time.Hour))
	issue(2) // in the window, not in the last 24 hours
	advance(end.Add(-2 * time.Hour))
	issue(1)
	advance(end)
	cc := newChartCache(n.Store)
	snap, err := cc.rates(ctx, end)
	if err != nil {
		t.Fatal(err)
	}
	if snap.totals.Issued != 1 {
		t.Fatalf("issued in the last 24 hours: %d, want 1", snap.totals.Issued)
	}
	var inWindow int64
	for _, b := range snap.hours {
		inWindow += b[seriesIssued]
	}
	if inWindow != 3 {
		t.Fatalf("issued in the 30-day window: %d, want 3", inWindow)
	}
	if got := snap.hours[end.Add(-26*time.Hour).Unix()/3600][seriesIssued]; got != 2 {
		t.Fatalf("hour of the two issuances: %d", got)
	}
	first, err := cc.firstSince(ctx, end.Add(-rateWindow))
	if err != nil {
		t.Fatal(err)
	}
	var firstTime time.Time
	_ = n.Store.WalkAudit(ctx, first-1, func(e *audit.Event) error { firstTime = e.Time; return errStop })
	if firstTime.Before(end.Add(-rateWindow)) {
		t.Fatalf("binary search found event %d at %s, before the window", first, firstTime)
	}
	var prevTime time.Time
	_ = n.Store.WalkAudit(ctx, first-2, func(e *audit.Event) error { prevTime = e.Time; return errStop })
	if first < 2 || !prevTime.Before(end.Add(-rateWindow)) {
		t.Fatalf("binary search found event %d, but the one before it (%s) is in the window too", first, prevTime)
	}
	issue(2)
	snap, err = cc.rates(ctx, end)
	if err != nil || snap.totals.Issued != 3 {
		t.Fatalf("after two more: %d %v", snap.totals.Issued, err)
	}
}
