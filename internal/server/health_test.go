package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/ra"
)

type readyBody struct {
	Status string     `json:"status"`
	Checks []ra.Check `json:"checks"`
}

func readyzOf(t *testing.T, ts *testServer) (int, readyBody) {
	t.Helper()
	code, body := ts.do(t, "GET", "/readyz", "", nil)
	var b readyBody
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return code, b
}

func checkNamed(b readyBody, name string) *ra.Check {
	for i := range b.Checks {
		if b.Checks[i].Name == name {
			return &b.Checks[i]
		}
	}
	return nil
}

// TestLivezReadyz: /livez answers while the process serves; /readyz checks the database and signs a probe with
// every active CA key it holds (the offline-capable roots pass with a note), and adds the checks the process
// registered. An issuing CA whose key vanished from its keystore, or a failing registered check, makes the node
// not ready (503), and the body names what failed. No credentials are needed for either.
func TestLivezReadyz(t *testing.T) {
	var publisherErr atomic.Pointer[error]
	ts := startDeps(t, nil, Deps{Checks: []func(context.Context) ra.Check{
		func(context.Context) ra.Check {
			var err error
			if p := publisherErr.Load(); p != nil {
				err = *p
			}
			return ra.NewCheck("crl-publisher", err)
		},
	}})
	if code, body := ts.do(t, "GET", "/livez", "", nil); code != http.StatusOK || !strings.Contains(string(body), `"live"`) {
		t.Fatalf("/livez: %d %s", code, body)
	}
	code, b := readyzOf(t, ts)
	if code != http.StatusOK || b.Status != "ready" {
		t.Fatalf("/readyz of a fresh node: %d %+v", code, b)
	}
	issuing := hierarchy.IssuingID("dev", "demo-implant")
	for _, name := range []string{"database", "ca-key:" + issuing, "crl-publisher"} {
		if c := checkNamed(b, name); c == nil || !c.OK {
			t.Fatalf("check %s: %+v in %+v", name, c, b)
		}
	}

	// The issuing CA's key is gone from the keystore behind Keyward's back (a token reset, a lost file).
	ctx := context.Background()
	row, err := ts.n.Store.GetCA(ctx, issuing)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.n.CA.Destroy(ctx, row.KeyURI); err != nil {
		t.Fatal(err)
	}
	failure := errors.New("last publication round failed: disk full")
	publisherErr.Store(&failure)
	ts.s.readiness.mu.Lock()
	ts.s.readiness.checks = nil // the cached answer expires
	ts.s.readiness.mu.Unlock()
	code, b = readyzOf(t, ts)
	if code != http.StatusServiceUnavailable || b.Status != "not ready" {
		t.Fatalf("/readyz with a lost CA key: %d %+v", code, b)
	}
	if c := checkNamed(b, "ca-key:"+issuing); c == nil || c.OK || c.Error == "" {
		t.Fatalf("the lost key's check: %+v", c)
	}
	if c := checkNamed(b, "crl-publisher"); c == nil || c.OK || !strings.Contains(c.Error, "disk full") {
		t.Fatalf("the publisher's check: %+v", c)
	}
	if c := checkNamed(b, "database"); c == nil || !c.OK {
		t.Fatalf("database check: %+v", c)
	}
	// Liveness does not depend on readiness.
	if code, _ := ts.do(t, "GET", "/livez", "", nil); code != http.StatusOK {
		t.Fatalf("/livez of a node that is not ready: %d", code)
	}
}
