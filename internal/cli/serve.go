package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/server"
)

func serveCmd(g *globals) *cobra.Command {
	var listen string
	var names []string
	var grace time.Duration
	var pub publicOptions
	var rateLimit string
	var sink auditSinkOptions
	var cps checkpointOptions
	var commitWindow time.Duration
	var metricsListen string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the Keyward server (HTTPS, TLS 1.3 only); initialises an empty data directory first",
		Long: `Run the server. On a first start with an empty data directory it runs 'keyward init' (dev hierarchy,
software keystore, SQLite). The API is HTTPS with TLS 1.3 only; clients trust DATA/tls/ca.pem and authenticate
with an operator token (DATA/admin.token) as 'Authorization: Bearer <token>'. SIGTERM or SIGINT shuts down
gracefully.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			g.service = true
			rate, err := server.ParseRate(rateLimit)
			if err != nil {
				return usageError{fmt.Errorf("--rate-limit: %w", err)}
			}
			if err := sink.parse(); err != nil {
				return usageError{err}
			}
			if commitWindow < 0 || commitWindow > ra.MaxCommitWindow {
				return usageError{fmt.Errorf("--commit-window %s: must be between 0 and %s", commitWindow, ra.MaxCommitWindow)}
			}
			var n *node.Node
			if _, statErr := os.Stat(filepath.Join(g.data, node.ConfigFile)); errors.Is(statErr, os.ErrNotExist) {
				fmt.Fprintf(g.env.Stderr, "keyward: %s is empty: initialising the embedded dev defaults\n", g.data)
				var res *node.InitResult
				n, res, err = node.Init(ctx, node.InitOptions{Options: g.options(), Actor: "server:init"})
				if err == nil && res.TokenFile != "" {
					fmt.Fprintf(g.env.Stderr, "keyward: admin operator token written to %s\n", res.TokenFile)
				}
			} else {
				n, err = g.open(ctx)
				if err == nil && n.Site != nil {
					_ = n.Close()
					return usageError{fmt.Errorf("%s is the data directory of factory site %s: run 'keyward factory serve' there", g.data, n.Site.Site)}
				}
				if err == nil {
					_, err = n.EnsureAdminToken(ctx, "server")
				}
			}
			if err != nil {
				return err
			}
			defer n.Close()
			if err := n.RA.SetCommitWindow(commitWindow); err != nil {
				return usageError{err}
			}
			if err := n.Follow(ctx); err != nil {
				return err
			}
			cert, _, err := n.ServerTLS(ctx, tlsNames(names, listen))
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return usageError{fmt.Errorf("--listen %s: %w", listen, err)}
			}
			fmt.Fprintf(g.env.Stderr, "keyward: serving https://%s (TLS 1.3; trust %s)\n", ln.Addr(), filepath.Join(g.data, node.TLSDir, "ca.pem"))
			m := newMetrics(n)
			api := server.New(server.Deps{RA: n.RA, RateLimit: rate, Metrics: m})
			if metricsListen != "" {
				stopMetrics, err := serveMetrics(ctx, g, m, metricsListen)
				if err != nil {
					return err
				}
				defer stopMetrics()
			}
			stopSink, err := sink.start(ctx, g, n)
			if err != nil {
				return err
			}
			defer stopSink()
			stop := cps.start(ctx, g, n)
			defer stop()
			return serveWithPublic(ctx, g, n, api, ln, cert, grace, pub, m)
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:8443", "HTTPS listen address")
	c.Flags().StringSliceVar(&names, "tls-name", nil, "DNS names and IP addresses for the server certificate (default: localhost, 127.0.0.1, ::1 and the listen host)")
	c.Flags().StringVar(&metricsListen, "metrics-listen", "", "also serve /metrics (Prometheus text format) without authentication over plain HTTP on this address, e.g. 127.0.0.1:9464; /metrics on the API listener needs an admin or auditor token")
	c.Flags().DurationVar(&commitWindow, "commit-window", ra.DefaultCommitWindow, "group commit: how long the first of concurrent requests waits for the others to join its transaction (0 to "+ra.MaxCommitWindow.String()+"); each request still gets its own answer, only after its group is durable")
	c.Flags().DurationVar(&grace, "shutdown-grace", 15*time.Second, "how long requests in flight may finish after SIGTERM")
	c.Flags().StringVar(&rateLimit, "rate-limit", server.DefaultRate.String(), "refused requests (401, 403) one source address may make, as N/s, N/m or N/h, or off; past it the source gets 429 with Retry-After")
	addPublicFlags(c, &pub)
	addAuditSinkFlags(c, &sink)
	c.Flags().DurationVar(&cps.interval, "checkpoint-interval", time.Minute, "how often to sign an audit checkpoint while events are appended")
	c.Flags().StringVar(&cps.dir, "checkpoint-dir", "", "also write each audit checkpoint to this directory (checkpoint-<size> and latest)")
	return c
}

type checkpointOptions struct {
	interval time.Duration
	dir      string
}

// start runs the audit checkpointer until the returned function is called or ctx ends.
func (o checkpointOptions) start(ctx context.Context, g *globals, n *node.Node) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c := &server.Checkpointer{RA: n.RA, Interval: max(o.interval, time.Second), Dir: o.dir, Log: n.Logger}
	if o.dir != "" {
		fmt.Fprintf(g.env.Stderr, "keyward: writing audit checkpoints to %s\n", o.dir)
	}
	go func() { defer close(done); c.Run(ctx) }()
	return func() { cancel(); <-done }
}

// tlsNames are the server certificate's names: --tls-name, or by default the loopback names and the listen host.
func tlsNames(names []string, listen string) []string {
	if len(names) > 0 {
		return names
	}
	names = []string{"localhost", "127.0.0.1", "::1"}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
		names = appendUnique(names, host)
	}
	return names
}

func appendUnique(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}
