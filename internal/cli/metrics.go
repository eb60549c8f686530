package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/keyward/keyward/internal/metrics"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/store"
)

// newMetrics returns the metrics of a serving node ('keyward serve', 'keyward factory serve'): the RA's
// decisions, every signature by a guarded key, and the scrape-time state of the store (CA expiry, audit head
// and checkpoint, certificates in their profile's renewal window, pools).
func newMetrics(n *node.Node) *metrics.Metrics {
	m := metrics.New()
	n.RA.SetObserver(m)
	n.CA.SetSignObserver(m.Signed)
	var pools func() []store.PoolStats
	if p, ok := n.Store.(store.Pooled); ok {
		pools = p.PoolStats
	}
	st := m.NewState(n.Store, pools, n.Now)
	windows := map[string]time.Duration{}
	for name, p := range n.Profiles {
		// The renewal window as the RA opens it: the profile's fraction of the validity, back from notAfter.
		windows[name] = time.Duration(p.RenewalWindow * float64(p.Validity))
	}
	st.SetRenewalWindows(windows)
	m.Register(st)
	return m
}

// serveMetrics serves /metrics alone over plain HTTP on addr (--metrics-listen) until ctx ends or the returned
// stop is called.
func serveMetrics(ctx context.Context, g *globals, m *metrics.Metrics, addr string) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageError{fmt.Errorf("--metrics-listen %s: %w", addr, err)}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	fmt.Fprintf(g.env.Stderr, "keyward: serving metrics on http://%s/metrics\n", ln.Addr())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.logger().ErrorContext(ctx, "metrics listener", "err", err)
		}
	}()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-done
	}
	return stop, nil
}
