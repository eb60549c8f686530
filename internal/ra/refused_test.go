package ra_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
)

// TestFlushRefusals: one event per reason, counting every request, naming the busiest sources, with the sources
// tracked one by one bounded and every detail within audit.MaxDetail; a flush with nothing counted appends
// nothing.
func TestFlushRefusals(t *testing.T) {
	n := openNode(t)
	ctx := context.Background()
	head := func() int64 {
		h, _, err := n.Store.AuditHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	before := head()
	for i := 0; i < 3000; i++ {
		n.RA.CountRefusal(fmt.Sprintf("198.51.100.%d", i%2000), ra.RefusalNoClientCert)
	}
	for i := 0; i < 50; i++ {
		n.RA.CountRefusal("203.0.113.9", ra.RefusalNoClientCert)
		n.RA.CountRefusal(strings.Repeat("\x00", 500), ra.AuthUnknownToken)
	}
	count, err := n.RA.FlushRefusals(ctx)
	if err != nil || count != 2 || head() != before+2 {
		t.Fatalf("flush: %d events, %v; head %d → %d", count, err, before, head())
	}
	var evs []*audit.Event
	if err := n.Store.WalkAudit(ctx, before, func(e *audit.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	byReason := map[string]*audit.Event{}
	for _, e := range evs {
		byReason[e.Subject] = e
		if e.Action != audit.ActionAuthRefusals || e.Outcome != audit.OutcomeRefused || e.Actor != "unauthenticated" {
			t.Fatalf("event %+v", e)
		}
		for k, v := range e.Details {
			if len(v) > 2*audit.MaxDetail || strings.ContainsRune(v, 0) {
				t.Fatalf("%s detail %s: %d bytes %.60q", e.Subject, k, len(v), v)
			}
		}
	}
	d := byReason[ra.RefusalNoClientCert].Details
	if d["requests"] != "3050" || d["sources"] != "more than 1024" || d["top_sources_estimated"] != "true" ||
		!strings.HasPrefix(d["top_sources"], "203.0.113.9=") {
		t.Fatalf("no-client-certificate details %v", d)
	}
	if d := byReason[ra.AuthUnknownToken].Details; d["requests"] != "50" || !strings.Contains(d["top_sources"], `\x00`) {
		t.Fatalf("bad-token details %v", d)
	}
	if count, err := n.RA.FlushRefusals(ctx); err != nil || count != 0 || head() != before+2 {
		t.Fatalf("empty flush: %d events, %v", count, err)
	}
}
