package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/bench"
)

func benchCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "bench", Short: "Whole-job benchmarks, each printed beside the in-process limit measured in the same run"}
	var o bench.IssueOptions
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue compact device certificates into a fresh store with lint, key checks and audit",
		Long: `Issue --n implant-identity certificates from distinct CSRs (generated before the timed part) through the
registration authority into a fresh store (SQLite in a temporary directory, or --db postgres://... naming an
empty database), with the audit trail, and print certificates/s beside the in-process limit measured in the
same run: a plain x509.CreateCertificate loop on all cores with the same key and template. The audit chain is
verified at the end. --json prints one object with per_second, limit_per_second and ratio. What the store keeps in
memory for issuance (SQLite: the filter of certified keys) is built after the limit and before the timed part,
as 'keyward serve' builds it when it starts (warm_seconds). The CPU the timed part used per 1,000 certificates
and how many cores it kept busy (cpu_seconds_per_1000, cpu_use) do not count time the host gives to others.

--prefill N first enrolls N devices into the store, not timed, as a factory station's enrollments would leave
them (a real certificate under the same issuing CA, stamped from one fully linted certificate and signed, with a
key of its own; the key's glossary row; the registry row; the audit event recording the three, chained), through
the store's bulk path; then settles the store (SQLite: WAL checkpointed and truncated; PostgreSQL: VACUUM
ANALYZE and CHECKPOINT) so that the measurement does not pay for the load, and prints the load rate and the
store's bytes per certificate (JSON: prefill, prefill_seconds, store_bytes, bytes_per_certificate). Compare the
rate with a run without --prefill to see what the store's size costs.

--dir DIR keeps the store (and, with --db, uses that database) after the run; a later run given the same --dir
and --db measures on the store as that run left it, without --prefill: a store of millions is loaded once and
measured as often as needed, for instance again on a quieter machine. Such a run verifies the audit chain from
the event the earlier run verified it up to (kept with the store), not from the first event again
(audit_verified_after in JSON).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.DB = g.db
			if o.Prefill < 0 || o.N+o.Prefill > 100_000_000 {
				return usageError{fmt.Errorf("--prefill %d with --n %d: give 0 <= --prefill and --n + --prefill <= 100,000,000 (the device serials of the implant profile, DEMO- and eight digits)", o.Prefill, o.N)}
			}
			if !g.json {
				o.Progress = g.env.Stderr
			}
			res, err := bench.Issue(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			if res.Prefill > 0 {
				fmt.Fprintf(g.env.Stdout, "prefilled %d enrolled devices in %.1fs (%.0f/s, not timed); %s\n  store %d bytes, %.0f bytes per certificate\n",
					res.Prefill, res.PrefillSeconds, res.PrefillPerSecond, res.Settled, res.StoreBytes, res.BytesPerCertificate)
			}
			fmt.Fprintf(g.env.Stdout, "issued %d certificates (%d bytes each; %d stamped) in %.2fs into %s with %s keystore\n", res.Issued, res.CertBytes, res.Stamped, res.Seconds, res.Store, res.Keystore)
			fmt.Fprintf(g.env.Stdout, "  %.0f certificates/s\n  %.0f certificates/s in-process limit (x509.CreateCertificate, %d cores)\n  ratio %.2f\n  audit chain verified: %d events\n",
				res.PerSecond, res.LimitPerSecond, res.GOMAXPROCS, res.Ratio, res.AuditEvents)
			if res.CPUPer1k > 0 {
				fmt.Fprintf(g.env.Stdout, "  CPU %.3f s per 1,000 certificates, %.2f cores busy\n", res.CPUPer1k, res.CPUUse)
			}
			return nil
		},
	}
	issue.Flags().IntVar(&o.N, "n", 200000, "certificates to issue")
	issue.Flags().StringVar(&o.Keystore, "keystore", "soft", `issuing CA key backend: "soft" or a PKCS#11 URI`)
	issue.Flags().IntVar(&o.Workers, "workers", 0, "check/lint/sign workers (default GOMAXPROCS)")
	issue.Flags().IntVar(&o.BatchSize, "batch", 512, "certificates per transaction")
	issue.Flags().DurationVar(&o.LimitTime, "limit-time", 0, "how long to measure the limit (default 3s)")
	issue.Flags().IntVar(&o.Prefill, "prefill", 0, "enrolled devices to load into the store before measuring (not timed)")
	issue.Flags().StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the timed issuance to this file")
	issue.Flags().StringVar(&o.Dir, "dir", "", "keep the store in this directory; a later run with the same --dir measures on it again")
	g.addJSON(issue)
	c.AddCommand(issue)
	c.AddCommand(benchEnrollCmd(g), benchAPICmd(g))
	c.AddCommand(benchBatchCmd(g))
	c.AddCommand(benchRevocationCmds(g)...)
	c.AddCommand(firmwareBenchCmd(g))
	c.AddCommand(benchAuditCmd(g))
	return c
}

func benchAuditCmd(g *globals) *cobra.Command {
	var o bench.AuditOptions
	c := &cobra.Command{
		Use:   "audit",
		Short: "Audit log: appends/s with checkpoints, 'audit verify' of a large log, issuance cost of the log",
		Long: `Build an audit log of --events synthetic events (state details like an issuance's) in a fresh store, --batch
per transaction, signing a checkpoint every --checkpoint events, and print appends/s; then time 'audit verify'
of the whole log (chain, Merkle tree, checkpoints, recomputed state); then run 'bench issue' four times in the same
run, --issue certificates each, twice with the log (state recorded, a checkpoint every second) and twice
without the recorded state (in the order without, with, with, without, keeping the best of each), and print how
much lower the issuance rate is with it. --json prints one object.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.DB = g.db
			if o.DB != "" && o.Issue > 0 {
				return usageError{fmt.Errorf("--db with --issue %d: the issuance comparison needs a fresh store per run; give --issue 0 and compare 'keyward bench issue' runs", o.Issue)}
			}
			if !g.json {
				o.Progress = g.env.Stderr
			}
			res, err := bench.Audit(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.env.Stdout, "audit log on %s (%d cores)\n  %.0f appends/s (%d events, %d per transaction, %d checkpoints, %.1f ms each)\n  audit verify of %d events: %.2fs\n",
				res.Store, res.GOMAXPROCS, res.AppendsPerSecond, res.Events, res.Batch, res.Checkpoints, res.CheckpointMillis, res.VerifyEvents, res.VerifySeconds)
			if res.IssueN > 0 {
				fmt.Fprintf(g.env.Stdout, "  issuance of %d: %.0f/s with the log, %.0f/s without the recorded state: %.1f%% lower\n",
					res.IssueN, res.IssueWithLogPerSecond, res.IssueWithoutPerSecond, res.IssueCostPercent)
			}
			return nil
		},
	}
	c.Flags().IntVar(&o.Events, "events", 1000000, "events in the log to verify")
	c.Flags().IntVar(&o.Batch, "batch", 1000, "events per transaction while building the log")
	c.Flags().IntVar(&o.Checkpoint, "checkpoint", 100000, "sign a checkpoint every this many events")
	c.Flags().IntVar(&o.Issue, "issue", 10000, "certificates per issuance run, four runs (0: skip the issuance comparison)")
	g.addJSON(c)
	return c
}
