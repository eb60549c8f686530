package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/ra"
)

// readyTTL is how long a readiness answer is reused: /readyz is public, and each evaluation signs a probe with
// every CA key, so a flood of probes must not become a flood of HSM signatures.
const readyTTL = 2 * time.Second

// readyTimeout bounds one evaluation: a token that hangs makes the node not ready, not the probe hang.
const readyTimeout = 5 * time.Second

// readiness caches the last evaluation of the readiness checks.
type readiness struct {
	mu     sync.Mutex
	at     time.Time
	checks []ra.Check
}

// livez answers while the process serves HTTP: nothing else is checked (an orchestrator restarts a process
// that stops answering; a dependency that fails makes it not ready instead).
func (s *Server) livez(w http.ResponseWriter, _ *http.Request, _ ra.Principal) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "live"})
}

// readyz answers 200 when every readiness check passes (the database, every active CA's key through its
// backend, the CRL publisher where this process runs one) and 503 otherwise; the JSON body names each check
// and what failed.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ ra.Principal) {
	checks := s.ready(r.Context())
	status, code := "ready", http.StatusOK
	for _, c := range checks {
		if !c.OK {
			status, code = "not ready", http.StatusServiceUnavailable
		}
	}
	if code != http.StatusOK {
		s.log.WarnContext(r.Context(), "not ready", "checks", failed(checks))
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": checks})
}

func (s *Server) ready(ctx context.Context) []ra.Check {
	s.readiness.mu.Lock()
	defer s.readiness.mu.Unlock()
	if s.readiness.checks != nil && time.Since(s.readiness.at) < readyTTL {
		return s.readiness.checks
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyTimeout)
	defer cancel()
	checks := s.ra.Readiness(ctx)
	for _, c := range s.checks {
		checks = append(checks, c(ctx))
	}
	s.readiness.at, s.readiness.checks = time.Now(), checks
	return checks
}

func failed(checks []ra.Check) []string {
	var out []string
	for _, c := range checks {
		if !c.OK {
			out = append(out, c.Name+": "+c.Error)
		}
	}
	return out
}

// AddCheck adds a readiness check (see Deps.Checks). Call it before Serve.
func (s *Server) AddCheck(c func(context.Context) ra.Check) { s.checks = append(s.checks, c) }
