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

	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/store"
)

// serveOptions are the settings of 'keyward serve': each is a flag, a KEYWARD_* variable and a key of the
// serve: section of keyward.yaml (config.go).
type serveOptions struct {
	listen        string
	names         []string
	grace         time.Duration
	pub           publicOptions
	rateLimit     string
	sink          auditSinkOptions
	cps           checkpointOptions
	commitWindow  time.Duration
	metricsListen string
	tlsValidity   time.Duration

	// Parsed by validate.
	rate server.Rate
}

func addServeFlags(c *cobra.Command, o *serveOptions) {
	c.Flags().StringVar(&o.listen, "listen", "127.0.0.1:8443", "HTTPS listen address")
	c.Flags().StringSliceVar(&o.names, "tls-name", nil, "DNS names and IP addresses for the server certificate (default: localhost, 127.0.0.1, ::1 and the listen host)")
	c.Flags().DurationVar(&o.tlsValidity, "tls-validity", ra.ServerCertValidity, "validity of the server certificate; it is renewed, without a restart, at two thirds of it (at least "+ra.MinServerCertValidity.String()+")")
	c.Flags().StringVar(&o.metricsListen, "metrics-listen", "", "also serve /metrics (Prometheus text format) without authentication over plain HTTP on this address, e.g. 127.0.0.1:9464; /metrics on the API listener needs an admin or auditor token")
	c.Flags().DurationVar(&o.commitWindow, "commit-window", ra.DefaultCommitWindow, "group commit: how long the first of concurrent requests waits for the others to join its transaction (0 to "+ra.MaxCommitWindow.String()+"); each request still gets its own answer, only after its group is durable")
	c.Flags().DurationVar(&o.grace, "shutdown-grace", 15*time.Second, "how long requests in flight may finish after SIGTERM")
	c.Flags().StringVar(&o.rateLimit, "rate-limit", server.DefaultRate.String(), "refused requests (401, 403) one source address may make, as N/s, N/m or N/h, or off; past it the source gets 429 with Retry-After")
	addPublicFlags(c, &o.pub)
	addAuditSinkFlags(c, &o.sink)
	c.Flags().DurationVar(&o.cps.interval, "checkpoint-interval", time.Minute, "how often to sign an audit checkpoint while events are appended")
	c.Flags().StringVar(&o.cps.dir, "checkpoint-dir", "", "also write each audit checkpoint to this directory (checkpoint-<size> and latest)")
}

func serveCmd(g *globals) *cobra.Command {
	var o serveOptions
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the Keyward server (HTTPS, TLS 1.3 only); initialises an empty data directory first",
		Long: `Run the server. On a first start with an empty data directory it runs 'keyward init' (dev hierarchy,
software keystore, SQLite). The API is HTTPS with TLS 1.3 only; clients trust DATA/tls/ca.pem and authenticate
with an operator token (DATA/admin.token) as 'Authorization: Bearer <token>'. SIGTERM or SIGINT shuts down
gracefully; SIGHUP reloads the profiles and what may change at run time in keyward.yaml.

Every flag below may also be set as KEYWARD_<FLAG> (upper case, '_' for '-': KEYWARD_RATE_LIMIT) or in the
serve: section of DATA/keyward.yaml by its long name ('rate-limit: 100/m'); a flag wins over the environment,
which wins over the file. 'keyward config show' prints what is in effect and where each value came from.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			g.service = true
			file, ferr := g.configFile()
			if ferr != nil && file == nil {
				return badInput(ferr)
			}
			settings, err := g.resolveServe(cmd, &o, file)
			if ferr != nil || err != nil {
				// Every mistake at once: the file's, then the settings'.
				var all config.Errors
				if ferr != nil {
					all = configErrors(ferr)
				}
				if err != nil {
					all = append(all, configErrors(err)...)
				}
				return usageError{all.Sorted()}
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
			if err := n.RA.SetCommitWindow(o.commitWindow); err != nil {
				return usageError{err}
			}
			if err := n.Follow(ctx); err != nil {
				return err
			}
			if w, ok := n.Store.(store.Warmer); ok { // in the background: issuance reads the store until it is warm
				go func() {
					if err := w.Warm(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
						fmt.Fprintf(g.env.Stderr, "keyward: warning: %v (the duplicate-key pre-check reads the store instead)\n", err)
					}
				}()
			}
			renewer, err := n.NewTLSRenewer(ctx, tlsNames(o.names, o.listen), o.tlsValidity)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", o.listen)
			if err != nil {
				return usageError{fmt.Errorf("%s %s: %w", whereSet(settings, "listen"), o.listen, err)}
			}
			fmt.Fprintf(g.env.Stderr, "keyward: serving https://%s (TLS 1.3; trust %s)\n", ln.Addr(), filepath.Join(g.data, node.TLSDir, "ca.pem"))
			m := newMetrics(n)
			api := server.New(server.Deps{RA: n.RA, RateLimit: o.rate, Metrics: m})
			if o.metricsListen != "" {
				stopMetrics, err := serveMetrics(ctx, g, m, o.metricsListen)
				if err != nil {
					return err
				}
				defer stopMetrics()
			}
			stopSink, err := o.sink.start(ctx, g, n)
			if err != nil {
				return err
			}
			defer stopSink()
			stop := o.cps.start(ctx, g, n)
			defer stop()
			rctx, stopRenew := context.WithCancel(ctx)
			renewed := make(chan struct{})
			go func() { defer close(renewed); renewer.Run(rctx) }()
			defer func() { stopRenew(); <-renewed }()
			stopReload := g.reloadOnSIGHUP(ctx, cmd, n, api, settings)
			defer stopReload()
			return serveWithPublic(ctx, g, n, api, ln, renewer, o.grace, o.pub, m)
		},
	}
	addServeFlags(c, &o)
	return c
}

// validate checks the settings of serve as they are in effect, naming for each mistake where the value was
// set (flag, environment variable or file and line) and how to fix it. It changes nothing but o's parsed
// fields.
func (o *serveOptions) validate(settings []config.Setting) error {
	var errs []error
	bad := func(key, problem, fix string) {
		errs = append(errs, settingError(settings, key, problem, fix))
	}
	if r, err := server.ParseRate(o.rateLimit); err != nil {
		bad("rate-limit", err.Error(), "write N/s, N/m or N/h, or off")
	} else {
		o.rate = r
	}
	if o.commitWindow < 0 || o.commitWindow > ra.MaxCommitWindow {
		bad("commit-window", fmt.Sprintf("%s is out of range", o.commitWindow), "use a duration from 0 to "+ra.MaxCommitWindow.String())
	}
	if o.tlsValidity < ra.MinServerCertValidity {
		bad("tls-validity", fmt.Sprintf("%s is too short", o.tlsValidity), "use at least "+ra.MinServerCertValidity.String()+" (default "+ra.ServerCertValidity.String()+")")
	}
	for _, a := range []struct{ key, addr string }{{"listen", o.listen}, {"public-listen", o.pub.listen}, {"metrics-listen", o.metricsListen}} {
		if a.addr == "" && a.key != "listen" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err != nil || port == "" {
			bad(a.key, fmt.Sprintf("%q is not an address", a.addr), "write HOST:PORT, e.g. 127.0.0.1:8443 or 0.0.0.0:8443")
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"shutdown-grace", o.grace}, {"publish-check", o.pub.interval}, {"crl-interval", o.pub.full}, {"delta-crl-interval", o.pub.delta}, {"checkpoint-interval", o.cps.interval}} {
		if d.v <= 0 {
			bad(d.key, fmt.Sprintf("%s must be positive", d.v), "give a duration such as 30s, 5m or 1h")
		}
	}
	if err := o.pub.derive(settings); err != nil {
		bad("public-url", err.Error(), "write the URL relying parties fetch CRLs from, e.g. http://crl.example.com")
	}
	if o.sink.spec == "" && o.sink.ca != "" {
		bad("audit-sink-ca", "needs --audit-sink (audit-sink in keyward.yaml)", "set audit-sink too, or remove audit-sink-ca")
	} else if err := o.sink.parse(); err != nil {
		bad("audit-sink", err.Error(), "write file:PATH or https://HOST/PATH")
	}
	if len(errs) > 0 {
		return config.Errors(errs)
	}
	return nil
}

// settingError is a mistake in the setting key, named by where it was set.
func settingError(settings []config.Setting, key, problem, fix string) error {
	s := settingOf(settings, key)
	if s.Source == config.SourceFile {
		file, _, _ := cutLast(s.From, ":")
		return &config.FieldError{File: file, Line: s.Line, Field: "serve." + key, Problem: problem, Fix: fix}
	}
	return fmt.Errorf("%s: %s; fix: %s", whereSet(settings, key), problem, fix)
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func settingOf(settings []config.Setting, key string) config.Setting {
	for _, s := range settings {
		if s.Key == "serve."+key {
			return s
		}
	}
	return config.Setting{Key: "serve." + key, Source: config.SourceFlag, From: "--" + key}
}

// whereSet names how a setting was given, for an error: "--listen", "KEYWARD_LISTEN", "serve.listen in
// kw/keyward.yaml:12" or "--listen (default)".
func whereSet(settings []config.Setting, key string) string {
	s := settingOf(settings, key)
	switch s.Source {
	case config.SourceEnv:
		return s.From
	case config.SourceFile:
		return "serve." + key + " in " + s.From
	case config.SourceDefault:
		return "--" + key + " (default)"
	}
	return "--" + key
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
