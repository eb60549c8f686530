package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/bench"
)

func benchEnrollCmd(g *globals) *cobra.Command {
	var o bench.EnrollOptions
	c := &cobra.Command{
		Use:   "enroll",
		Short: "EST enrollments over TLS on loopback against a real server, beside the in-process limit",
		Long: `Start a Keyward server on loopback (TLS 1.3, fresh data directory; SQLite, or --db postgres://... naming an
empty database) and run --clients EST clients, each a factory station on one kept-alive mTLS connection,
posting simpleenroll requests with a new P-256 key and CSR each (made before the timed part) for --duration.
Prints enrollments/s, p50/p99/p99.9/max latency, the requests over 100 ms and the ratio to the in-process limit measured in the same run (an
x509.CreateCertificate loop with the issuing CA key on every core). The server and the clients share the
machine's cores. --json prints one object with per_second, p50_ms, p99_ms, limit_per_second and ratio.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.DB = g.db
			if !g.json {
				o.Progress = g.env.Stderr
			}
			res, err := bench.Enroll(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.env.Stdout, "enrolled %d devices (%d failed) in %.2fs over EST/TLS 1.3 with %d clients into %s\n", res.Enrolled, res.Failed, res.Seconds, res.Clients, res.Store)
			fmt.Fprintf(g.env.Stdout, "  %.0f enrollments/s (p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms; %d over 100 ms)\n  %.0f certificates/s in-process limit (x509.CreateCertificate, %d cores)\n  ratio %.2f\n  audit chain verified: %d events\n",
				res.PerSecond, res.P50ms, res.P99ms, res.P999ms, res.MaxMs, res.Over100ms, res.LimitPerSecond, res.GOMAXPROCS, res.Ratio, res.AuditEvents)
			if res.RanOutOfCSRs {
				fmt.Fprintf(g.env.Stdout, "  note: the prepared CSRs ran out before --duration; raise --prepare\n")
			}
			if res.FirstError != "" {
				fmt.Fprintf(g.env.Stdout, "  first error: %s\n", res.FirstError)
			}
			return nil
		},
	}
	c.Flags().IntVar(&o.Clients, "clients", 8, "concurrent EST clients")
	c.Flags().DurationVar(&o.Duration, "duration", 20e9, "timed part")
	c.Flags().IntVar(&o.Prepare, "prepare", 0, "keys and CSRs made before the timed part (default 2,500 per second of --duration)")
	c.Flags().DurationVar(&o.LimitTime, "limit-time", 0, "how long to measure the limit (default 3s)")
	g.addJSON(c)
	return c
}
