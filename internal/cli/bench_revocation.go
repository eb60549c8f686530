package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/bench"
)

// benchRevocationCmds are the revocation benchmarks: bench crl, bench ocsp, bench filter.
func benchRevocationCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{benchCRLCmd(g), benchOCSPCmd(g), benchFilterCmd(g)}
}

// verdict says whether a figure meets its target.
func verdict(ok bool) string {
	if ok {
		return "meets"
	}
	return "misses"
}

func benchCRLCmd(g *globals) *cobra.Command {
	var o bench.CRLOptions
	c := &cobra.Command{
		Use:   "crl",
		Short: "Publish a complete CRL of a million revoked certificates, beside x509.CreateRevocationList alone",
		Long: `Store --revoked revoked certificates of the dev issuing CA in a fresh store (SQLite in a temporary
directory, or --db postgres://... naming an empty database; stored in bulk, not timed), then time one complete
CRL publication as 'keyward serve' does it: CRL number, reading the revoked rows from the store in several
ranges at once, encoding the entries, signing the complete CRL and its empty delta with the CA key, storing
both (a CRL over a megabyte in chunks). The CRL is read back from the store, its signature checked and every
entry compared with the serials stored.

The publication's peak resident memory is measured too (Linux VmHWM, reset just before it): it stays about the
same from a million entries to ten million, because neither the entries nor the CRL are ever held whole.

The limit, measured in the same run, is x509.CreateRevocationList alone over the same entries (already in
memory), with the same extensions and CA key: the library's cost of encoding and signing. One store walk alone
is timed too. Target: 1,000,000 entries in at most 1.5 s. --dir keeps the store in a directory and lets a later
run of the same --revoked (and --db) reuse it instead of storing the certificates again. --json prints one
object with seconds, bytes, per_second (entries/s), peak_rss_bytes, limit_per_second, ratio and the target.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.DB = g.db
			if !g.json {
				o.Progress = g.env.Stderr
			}
			res, err := bench.CRL(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			stored := "whole"
			if res.Chunks > 0 {
				stored = fmt.Sprintf("in %d chunks", res.Chunks)
			}
			fmt.Fprintf(g.env.Stdout, "complete CRL of %d revoked certificates published in %.2fs from %s: %d bytes (%.1f bytes/entry, stored %s), signature and entries verified\n",
				res.Entries, res.Seconds, res.Store, res.Bytes, res.BytesPerEntry, stored)
			if res.CPUSeconds > 0 {
				fmt.Fprintf(g.env.Stdout, "  %.2fs of CPU (%.1f cores)\n", res.CPUSeconds, res.CPUSeconds/res.Seconds)
			}
			fmt.Fprintf(g.env.Stdout, "  %.0f entries/s\n  %.0f entries/s limit (%.2fs: %s)\n  ratio %.2f\n  store walk alone %.2fs\n",
				res.PerSecond, res.LimitPerSecond, res.LimitSeconds, res.Limit, res.Ratio, res.WalkSeconds)
			if res.RSSScope != "unavailable" {
				fmt.Fprintf(g.env.Stdout, "  peak resident memory %.0f MiB (%s), %.0f MiB before it; peak Go heap %.0f MiB\n",
					float64(res.PeakRSSBytes)/(1<<20), res.RSSScope, float64(res.RSSBeforeBytes)/(1<<20), float64(res.PeakHeapBytes)/(1<<20))
			}
			fmt.Fprintf(g.env.Stdout, "  target <= %.1fs: %s\n", res.TargetSeconds, verdict(res.MeetsTarget))
			return nil
		},
	}
	c.Flags().IntVar(&o.Revoked, "revoked", 1000000, "revoked certificates on the CRL")
	c.Flags().StringVar(&o.Dir, "dir", "", "keep the benchmark's store in this directory and reuse it in later runs of the same --revoked")
	c.Flags().StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the timed publication to this file")
	g.addJSON(c)
	return c
}

func benchOCSPCmd(g *globals) *cobra.Command {
	var o bench.OCSPOptions
	c := &cobra.Command{
		Use:   "ocsp",
		Short: "OCSP responses/s from the pre-signed cache over loopback HTTP, beside the handler in-process",
		Long: `Start the public listener (plain HTTP on 127.0.0.1, fresh SQLite store) with an OCSP responder that has
pre-signed a response for each of --certificates certificates (one in ten revoked), and run --clients clients,
each on one kept-alive connection, posting RFC 6960 requests (SHA-1 CertID, no nonce, as OpenSSL sends them)
for --duration. Every answer is compared with the pre-signed response. Prints responses/s and p50/p99 latency.

The limit, measured in the same run, is the same public handler called in-process with httptest.NewRecorder
by as many goroutines for the same requests: everything but the network and HTTP parsing. Clients and server
share the machine's cores. Target: at least 10,000 responses/s. --json prints one object with
per_second, p50_ms, p99_ms, limit_per_second, ratio and the target.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !g.json {
				o.Progress = g.env.Stderr
			}
			res, err := bench.OCSP(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.env.Stdout, "%d OCSP responses (%d failed, %d bytes each) in %.2fs over loopback HTTP with %d clients, %d cores\n",
				res.Requests, res.Failed, res.ResponseBytes, res.Seconds, res.Clients, res.GOMAXPROCS)
			fmt.Fprintf(g.env.Stdout, "  %.0f responses/s (p50 %.2f ms, p99 %.2f ms)\n  %.0f responses/s limit (%s)\n  ratio %.2f\n  target >= %.0f/s: %s\n",
				res.PerSecond, res.P50ms, res.P99ms, res.LimitPerSecond, res.Limit, res.Ratio, res.TargetPerSec, verdict(res.MeetsTarget))
			if res.FirstError != "" {
				fmt.Fprintf(g.env.Stdout, "  first error: %s\n", res.FirstError)
			}
			return nil
		},
	}
	c.Flags().IntVar(&o.Clients, "clients", 8, "concurrent clients, each on one kept-alive connection")
	c.Flags().DurationVar(&o.Duration, "duration", 10e9, "timed part")
	c.Flags().IntVar(&o.Certificates, "certificates", 1000, "distinct certificates asked about")
	c.Flags().DurationVar(&o.LimitTime, "limit-time", 0, "how long to measure the limit (default 3s)")
	g.addJSON(c)
	return c
}

func benchFilterCmd(g *globals) *cobra.Command {
	var o bench.FilterOptions
	c := &cobra.Command{
		Use:   "filter",
		Short: "Build the signed revocation filter of a 10-million-certificate fleet; size against the bound; lookups",
		Long: `Generate a fleet of --n random 16-byte serials in memory, --revoked of them revoked, and build, self-check
and sign its revocation filter with the builder 'keyward revocation filter' uses (pkg/revocation/filter), signed
by an ephemeral key certified for id-kp-documentSigning. The fleet is not stored: a 10-million-row registry walk
would measure the database. Then the filter is verified and every serial of the fleet looked up and checked.

Prints the build time, the size of the tables against the information bound r(log2(N/r)+1.44) bits, the file
size, and the mean lookup time. The limit, measured in the same run, is SHA-256(seed || serial) once per
certificate on one goroutine, the hashing the builder must do at least once per certificate (Build runs on one
goroutine). Targets: for 10,000,000 certificates with 100,000 revoked, at most 1.2 x the bound, built
in at most 30 s, lookups at most 1 µs. --json prints one object with seconds, per_second, limit_per_second,
ratio, ratio_to_bound, lookup_ns and the targets.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !g.json {
				o.Progress = g.env.Stderr
			}
			res, err := bench.Filter(cmd.Context(), o)
			if err != nil {
				return usageErrorIfBad(err, o)
			}
			if g.json {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.env.Stdout, "filter of %d certificates, %d revoked, built and signed in %.2fs; every lookup exact\n", res.Certificates, res.Revoked, res.Seconds)
			fmt.Fprintf(g.env.Stdout, "  tables %.0f bytes = %.3f x the information bound (%.0f bytes); file %d bytes with header and signer chain\n",
				res.TableBytes, res.RatioToBound, res.BoundBits/8, res.FileBytes)
			fmt.Fprintf(g.env.Stdout, "  %.0f certificates/s\n  %.0f certificates/s limit (%.2fs: %s)\n  ratio %.2f\n",
				res.PerSecond, res.LimitPerSecond, res.LimitSeconds, res.Limit, res.Ratio)
			fmt.Fprintf(g.env.Stdout, "  lookup %.0f ns (one SHA-256 of a serial: %.0f ns)\n", res.LookupNs, res.LimitLookupNs)
			fmt.Fprintf(g.env.Stdout, "  targets <= %.0fs, <= %.1f x bound, <= %.0f ns: %s\n", res.TargetSeconds, res.TargetRatio, res.TargetLookupNs, verdict(res.MeetsTarget))
			return nil
		},
	}
	c.Flags().IntVar(&o.N, "n", 10000000, "certificates in the fleet")
	c.Flags().IntVar(&o.Revoked, "revoked", 100000, "revoked certificates among them")
	g.addJSON(c)
	return c
}

// usageErrorIfBad reports impossible --n/--revoked values as a usage error (exit 2).
func usageErrorIfBad(err error, o bench.FilterOptions) error {
	if o.N <= 0 || o.Revoked < 0 || o.Revoked > o.N {
		return usageError{err}
	}
	return err
}
