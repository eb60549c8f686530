package ra_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// clock is a settable clock for the RA.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openNodeAt(t *testing.T, c *clock) *node.Node {
	t.Helper()
	n, _, err := node.Init(context.Background(), node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "d"), Warn: io.Discard, Now: c.now}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestTokenLifecycle creates tokens with the default expiry, an explicit one and none, lists them with their
// states, and revokes one: each state is refused with its own message, and the audit trail records each change.
func TestTokenLifecycle(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	n := openNodeAt(t, c)
	// Followed, as a server does: cached tokens must still be refused once expired or revoked.
	n.RA.Changed(nil)

	def, err := n.RA.CreateToken(ctx, admin, ra.TokenRequest{Name: "alice", Role: ra.RoleCAOfficer})
	if err != nil {
		t.Fatal(err)
	}
	short, err := n.RA.CreateToken(ctx, admin, ra.TokenRequest{Name: "bob", Role: ra.RoleAuditor, ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	forever, err := n.RA.CreateToken(ctx, admin, ra.TokenRequest{Name: "robot", Role: ra.RoleAdmin, NeverExpires: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{def, short, forever} {
		if _, err := n.RA.Authenticate(ctx, tok); err != nil {
			t.Fatalf("fresh token: %v", err)
		}
	}
	if _, err := n.RA.CreateToken(ctx, admin, ra.TokenRequest{Name: "alice", Role: ra.RoleAuditor}); ra.KindOf(err) != ra.KindConflict {
		t.Fatalf("second token named alice: %v, want a conflict", err)
	}
	for _, bad := range []ra.TokenRequest{
		{Name: "x", Role: ra.RoleAdmin, ValidFor: time.Hour, NeverExpires: true},
		{Name: "x", Role: ra.RoleAdmin, ValidFor: time.Second},
		{Name: "a:b", Role: ra.RoleAdmin},
		{Name: "x", Role: "witness"},
	} {
		if _, err := n.RA.CreateToken(ctx, admin, bad); ra.KindOf(err) != ra.KindBadRequest {
			t.Errorf("CreateToken(%+v): %v, want a bad request", bad, err)
		}
	}

	c.add(2 * time.Hour) // bob's token expires; alice's (90 days) does not
	if _, err := n.RA.Authenticate(ctx, short); !errors.Is(err, ra.ErrExpiredToken) {
		t.Fatalf("expired token: %v", err)
	}
	if _, err := n.RA.RevokeToken(ctx, admin, "alice", "laptop stolen"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.Authenticate(ctx, def); !errors.Is(err, ra.ErrRevokedToken) {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := n.RA.RevokeToken(ctx, admin, "alice", "again"); ra.KindOf(err) != ra.KindConflict {
		t.Fatalf("revoke twice: %v, want a conflict", err)
	}
	if _, err := n.RA.RevokeToken(ctx, admin, "nobody", "x"); ra.KindOf(err) != ra.KindNotFound {
		t.Fatalf("revoke unknown: %v, want not found", err)
	}
	if _, err := n.RA.RevokeToken(ctx, ra.Principal{ID: "operator:aud", Role: ra.RoleAuditor}, "robot", "x"); ra.KindOf(err) != ra.KindForbidden {
		t.Fatalf("auditor revokes: %v, want forbidden", err)
	}
	if _, err := n.RA.Authenticate(ctx, forever); err != nil {
		t.Fatalf("token without expiry: %v", err)
	}

	toks, err := n.RA.ListTokens(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, tk := range toks {
		states[tk.Name] = ra.TokenState(tk, n.RA.Now())
		if tk.Name == "alice" && (tk.ExpiresAt == nil || tk.ExpiresAt.Sub(tk.CreatedAt) != ra.DefaultTokenValidity) {
			t.Errorf("alice's token expires at %v, want %s after creation", tk.ExpiresAt, ra.DefaultTokenValidity)
		}
		if tk.Name == "robot" && tk.ExpiresAt != nil {
			t.Errorf("robot's token expires at %v, want never", tk.ExpiresAt)
		}
		if tk.LastUsedAt == nil && tk.Name != "admin" {
			t.Errorf("%s: no last use recorded", tk.Name)
		}
	}
	want := map[string]string{"admin": ra.TokenActive, "alice": ra.TokenRevoked, "bob": ra.TokenExpired, "robot": ra.TokenActive}
	for name, st := range want {
		if states[name] != st {
			t.Errorf("token %s: state %q, want %q (all: %v)", name, states[name], st, states)
		}
	}

	// The audit trail: creations, the revocation with its reason, refusals; never a token.
	var revoke *audit.Event
	err = n.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
		for _, tok := range []string{def, short, forever} {
			for k, v := range e.Details {
				if strings.Contains(v, tok) || strings.Contains(k, tok) {
					t.Errorf("event %d holds a token", e.Seq)
				}
			}
		}
		if e.Action == audit.ActionTokenRevoke && e.Outcome == audit.OutcomeSuccess {
			revoke = e
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if revoke == nil || revoke.Details["reason"] != "laptop stolen" || revoke.Details["name"] != "alice" || revoke.Actor != admin.ID {
		t.Fatalf("revocation event: %+v", revoke)
	}
}

// TestAuthRefusalAudited: a refused request leaves an audited refusal naming source, route and reason, and the
// token's name when a known token was refused.
func TestAuthRefusalAudited(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	n := openNodeAt(t, c)
	tok, err := n.RA.CreateToken(ctx, admin, ra.TokenRequest{Name: "carol", Role: ra.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.RA.RevokeToken(ctx, admin, "carol", "left"); err != nil {
		t.Fatal(err)
	}
	_, err = n.RA.Authenticate(ctx, tok)
	// In a local CLI process: audited at once.
	n.RA.RefuseAuth(ctx, ra.AuthRefusal{Source: "cli:alice", Method: "CLI", Route: "firmware release approve", Err: err, Local: true})
	e := lastAudit(t, n.Store)
	if e.Action != audit.ActionAuthRefuse || e.Outcome != audit.OutcomeRefused || e.Details["refusal"] != ra.AuthRevokedToken ||
		e.Details["token"] != "carol" || e.Details["source"] != "cli:alice" || e.Subject != "CLI firmware release approve" {
		t.Fatalf("refusal event: %+v", e)
	}
	// Over the network: counted, then one aggregated event per reason naming source and token.
	for i := 0; i < 3; i++ {
		n.RA.RefuseAuth(ctx, ra.AuthRefusal{Source: "192.0.2.7", Method: "GET", Route: "/api/v1/cas", Err: err})
	}
	if e2 := lastAudit(t, n.Store); e2.Seq != e.Seq {
		t.Fatalf("a network refusal was audited alone: %+v", e2)
	}
	if _, err := n.RA.FlushRefusals(ctx); err != nil {
		t.Fatal(err)
	}
	e = lastAudit(t, n.Store)
	if e.Action != audit.ActionAuthRefusals || e.Subject != ra.AuthRevokedToken || e.Details["requests"] != "3" ||
		e.Details["top_sources"] != "192.0.2.7 token:carol=3" {
		t.Fatalf("aggregated refusal event: %+v", e)
	}
}

func lastAudit(t *testing.T, s store.Reader) *audit.Event {
	t.Helper()
	var last *audit.Event
	if err := s.WalkAudit(context.Background(), 0, func(e *audit.Event) error { last = e; return nil }); err != nil {
		t.Fatal(err)
	}
	return last
}
