package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/server"
)

// factorySitePackageCmd is 'keyward factory site-package': the data directory a site runs on, made at
// headquarters.
func factorySitePackageCmd(g *globals) *cobra.Command {
	var env, product, site, out, passFile string
	c := &cobra.Command{
		Use:   "site-package",
		Short: "Write the data directory a factory site runs on (factory serve, factory batch, factory export), at headquarters",
		Long: `Writes a new data directory for the site CA <env>/<product>/<site> with only what the site needs: the
configuration and profiles, the environment's root certificate (not its key), the site CA and its export
signer (keys in the site HSM; in dev possibly in the software keystore), the factory stations registered for
the site ('keyward station add --site') with their station CA certificate, and the site CA's quota, issuing
window and subject rule. The site's audit chain starts with an event naming headquarters' audit head; the
package is recorded in headquarters' audit trail. Carry the directory (and the site HSM) to the site; it
never connects back. Stations registered later need a new package.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{errors.New("--out is required")}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			res, err := n.PackageSite(cmd.Context(), node.SitePackageRequest{SiteCA: ra.SiteCAID(env, product, site), Out: out, PassphraseFile: passFile, Principal: principal()})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.env.Stdout, "site package for %s written to %s\n  stations %s\n  quota %d (%d used), issues until %s, keys: %s\n",
				res.SiteCA, res.Dir, strings.Join(res.Stations, ", "), res.Quota, res.Reserved, res.IssueUntil, res.KeyCustody)
			if res.PassphraseFile != "" {
				fmt.Fprintf(g.env.Stdout, "  software keystore passphrase in %s (keep it with the site's secrets)\n", res.PassphraseFile)
			}
			fmt.Fprintf(g.env.Stdout, "at the site: keyward factory serve --data %s\n", res.Dir)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&env, "env", "dev", "environment")
	f.StringVar(&product, "product", "", "product line")
	f.StringVar(&site, "site", "", "site name")
	f.StringVar(&out, "out", "", "the new site data directory (must not exist or be empty)")
	f.StringVar(&passFile, "site-passphrase-file", "", "passphrase of the site's software keystore (default: a random one written into the package)")
	_ = c.MarkFlagRequired("product")
	_ = c.MarkFlagRequired("site")
	g.addJSON(c)
	return c
}

// factoryServeCmd is 'keyward factory serve': EST enrollment at a site, on the site CA, offline.
func factoryServeCmd(g *globals) *cobra.Command {
	var listen string
	var names []string
	var grace time.Duration
	var rateLimit string
	var metricsListen string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Enroll devices at a factory site over EST (RFC 7030) with the site CA, without any connection to headquarters",
		Long: `Runs the EST interface of 'keyward serve' (/.well-known/est/<product>[.<env>]/cacerts, csrattrs,
simpleenroll) on a site data directory made by 'keyward factory site-package'. Factory stations registered for
the site authenticate with their certificates (mutual TLS 1.3); every certificate is issued by the site CA
after the station's scope, the site CA's issuing window, quota and subject rule are checked, and is recorded
with the device, the station's usage, the site's issuance log and the audit event in one transaction. Devices
renew with headquarters, not here (simplereenroll answers 403). Export the issuance log for headquarters with
'keyward factory export --data DIR --out FILE.kwx'. Clients trust DIR/tls/ca.pem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			g.service = true
			rate, err := server.ParseRate(rateLimit)
			if err != nil {
				return usageError{fmt.Errorf("--rate-limit: %w", err)}
			}
			n, err := g.open(ctx)
			if err != nil {
				return err
			}
			defer n.Close()
			if n.Site == nil {
				return usageError{fmt.Errorf("%s is not a site data directory: make one at headquarters with 'keyward factory site-package', or run 'keyward serve' at headquarters", g.data)}
			}
			if err := n.Follow(ctx); err != nil {
				return err
			}
			// The site's server certificate renews itself too: a site may serve for weeks without a restart.
			certs, err := n.NewTLSRenewer(ctx, tlsNames(names, listen), 0)
			if err != nil {
				return err
			}
			rctx, stopRenew := context.WithCancel(ctx)
			renewed := make(chan struct{})
			go func() { defer close(renewed); certs.Run(rctx) }()
			defer func() { stopRenew(); <-renewed }()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return usageError{fmt.Errorf("--listen %s: %w", listen, err)}
			}
			fmt.Fprintf(g.env.Stderr, "keyward: factory site %s (site CA %s) enrolling on https://%s (TLS 1.3; trust %s)\n",
				n.Site.Site, n.Site.SiteCA, ln.Addr(), filepath.Join(g.data, node.TLSDir, "ca.pem"))
			// Requests by route and status, EST issuances by the site CA, its signatures: the site has no operator
			// tokens, so /metrics is served only on --metrics-listen.
			m := newMetrics(n)
			if metricsListen != "" {
				stopMetrics, err := serveMetrics(ctx, g, m, metricsListen)
				if err != nil {
					_ = ln.Close()
					return err
				}
				defer stopMetrics()
			}
			return server.NewSite(server.Deps{RA: n.RA, RateLimit: rate, Metrics: m}).ServeTLS(ctx, ln, server.TLSConfigFunc(certs.GetCertificate), grace)
		},
	}
	c.Flags().StringVar(&rateLimit, "rate-limit", server.DefaultRate.String(), "refused requests (401, 403) one source address may make, as N/s, N/m or N/h, or off; past it the source gets 429 with Retry-After")
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:8443", "HTTPS listen address")
	c.Flags().StringSliceVar(&names, "tls-name", nil, "DNS names and IP addresses for the server certificate (default: localhost, 127.0.0.1, ::1 and the listen host)")
	c.Flags().DurationVar(&grace, "shutdown-grace", 15*time.Second, "how long requests in flight may finish after SIGTERM")
	c.Flags().StringVar(&metricsListen, "metrics-listen", "", "serve /metrics (Prometheus text format) without authentication over plain HTTP on this address, e.g. 127.0.0.1:9464: requests, enrollments by the site CA, signatures")
	return c
}
