package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/bench"
)

// benchBatchCmd is 'keyward bench batch': a factory credential batch beside the in-process signing limit.
func benchBatchCmd(g *globals) *cobra.Command {
	var o bench.BatchOptions
	c := &cobra.Command{
		Use:   "batch",
		Short: "Run a factory credential batch (keys, certificates, custody, fsync) beside x509.CreateCertificate alone",
		Long: `Create a fresh data directory (SQLite in a temporary directory, or --db postgres://... naming an empty
database) with its CAs and a site CA of the dev environment's demo-implant product line, then run a batch of
--count credentials as 'keyward factory batch' does: a device key, an implant-identity certificate and the key's
custody record per credential, streamed to a batch file and fsynced every --checkpoint credentials. The first
certificate of each checkpoint goes through the full path (profile template, RFC 5280 lint, signature) and the
others are stamped from it. The file is checked afterwards (whole credentials, unique serials and names).

--keystore soft generates device keys in process and writes them wrapped under a random transport key; the site
CA key is in the software keystore. --keystore pkcs11:... generates every key on that token: the CA keys, the
site CA's included, and each device key (which is destroyed again after the timed part unless --keep-keys).

The limit, measured in the same run, is x509.CreateCertificate in a loop with the site CA's key and an
implant-identity template, on every core (or on --workers goroutines if more): the signature, Go's check of it
and the encoding, without key generation, lint, custody or storage. --json prints one object with count,
per_second, limit_per_second, ratio, bytes_per_credential and custody.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Count <= 0 {
				return usageError{fmt.Errorf("--count %d: a batch needs at least one credential", o.Count)}
			}
			o.DB = g.db
			if !g.json {
				o.Progress = g.env.Stderr
			}
			res, err := bench.Batch(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.env.Stdout, "batch of %d credentials (%s custody, %d stamped) in %.2fs into %s, %d workers, fsync every %d; file checked\n",
				res.Count, res.Custody, res.Stamped, res.Seconds, res.Store, res.Workers, res.Checkpoint)
			fmt.Fprintf(g.env.Stdout, "  %.0f credentials/s, %.0f bytes per credential\n  %.0f certificates/s in-process limit (%s)\n  ratio %.2f\n",
				res.PerSecond, res.BytesPerCredential, res.LimitPerSecond, res.Limit, res.Ratio)
			if res.StampRefused != "" {
				fmt.Fprintf(g.env.Stdout, "  full path instead of stamping: %s\n", res.StampRefused)
			}
			if res.KeysDestroyed > 0 {
				fmt.Fprintf(g.env.Stdout, "  %d device keys destroyed on the token afterwards in %.1fs (not timed)\n", res.KeysDestroyed, res.DestroySeconds)
			}
			return nil
		},
	}
	c.Flags().Int64Var(&o.Count, "count", 20000, "credentials in the batch")
	c.Flags().StringVar(&o.Keystore, "keystore", "soft", `device key custody and CA keys: "soft" (software-wrapped) or a PKCS#11 URI`)
	c.Flags().IntVar(&o.Workers, "workers", 0, "parallel credential workers (default GOMAXPROCS)")
	c.Flags().IntVar(&o.Checkpoint, "checkpoint", 256, "credentials per fsync, each checkpoint's first through the full path")
	c.Flags().BoolVar(&o.KeepKeys, "keep-keys", false, "leave the device keys of a PKCS#11 run on the token")
	c.Flags().DurationVar(&o.LimitTime, "limit-time", 0, "how long to measure the limit (default 3s)")
	g.addJSON(c)
	return c
}
