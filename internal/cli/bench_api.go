package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/bench"
)

func benchAPICmd(g *globals) *cobra.Command {
	var o bench.APIOptions
	c := &cobra.Command{
		Use:   "api",
		Short: "Certificates issued over the operator API by a real 'keyward serve', beside the in-process limit",
		Long: `Run 'keyward init' and 'keyward serve' (this executable) on a fresh data directory — TLS 1.3 on loopback, the
operator token, the audit trail; SQLite, or --db postgres://... naming an empty database — and --clients
clients, each on one kept-alive TLS connection, posting POST /api/v1/certificates with a distinct P-256 CSR
each (made before the timed part) for --duration. Prints certificates/s, p50/p99/p99.9 latency, the requests
over 100 ms, the server process's CPU seconds per 1,000 certificates, and the ratio to the in-process limit
measured in the same run once the server has stopped (an x509.CreateCertificate loop with the issuing CA key
on every core). The server and the clients share the machine's cores. --json prints one object.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.DB = g.db
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Binary = exe
			if !g.json {
				o.Progress = g.env.Stderr
			}
			res, err := bench.API(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.env.Stdout, "issued %d certificates (%d failed) in %.2fs over the API (TLS 1.3, token, audit) with %d clients into %s, CA key %s\n", res.Issued, res.Failed, res.Seconds, res.Clients, res.Store, res.Keystore)
			fmt.Fprintf(g.env.Stdout, "  %.0f certificates/s (p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms; %d over 100 ms)\n  server CPU %.3f s per 1,000 certificates\n  %.0f certificates/s in-process limit (x509.CreateCertificate, %d cores)\n  ratio %.2f\n  audit chain verified: %d events\n",
				res.PerSecond, res.P50ms, res.P99ms, res.P999ms, res.MaxMs, res.Over100ms, res.ServerCPUPer1k, res.LimitPerSecond, res.GOMAXPROCS, res.Ratio, res.AuditEvents)
			if res.RanOutOfCSRs {
				fmt.Fprintf(g.env.Stdout, "  note: the prepared CSRs ran out before --duration; raise --prepare\n")
			}
			if res.FirstError != "" {
				fmt.Fprintf(g.env.Stdout, "  first error: %s\n", res.FirstError)
			}
			return nil
		},
	}
	c.Flags().IntVar(&o.Clients, "clients", 8, "concurrent API clients")
	c.Flags().StringVar(&o.Keystore, "keystore", "soft", `CA keys: "soft" or a PKCS#11 URI (the limit is measured with the same key; the server inherits KEYWARD_PKCS11_PIN)`)
	c.Flags().DurationVar(&o.Duration, "duration", 20e9, "timed part")
	c.Flags().IntVar(&o.Prepare, "prepare", 0, "keys and CSRs made before the timed part (default 2,500 per second of --duration)")
	c.Flags().DurationVar(&o.LimitTime, "limit-time", 0, "how long to measure the limit (default 3s)")
	g.addJSON(c)
	return c
}
