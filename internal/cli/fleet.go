package cli

// keyward fleet scan and keyward fleet import-certs: the fleet key-hygiene scan (internal/fleet).

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/fleet"
	"github.com/keyward/keyward/internal/ra"
)

func fleetCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "fleet",
		Short: "Fleet key hygiene: find keys and signatures a weak device RNG left behind",
		Long: `The fleet key-hygiene scan looks across every key and signature Keyward has seen (certificate keys,
the CSR signatures kept at issuance, CA and firmware-signing keys, and certificates imported from other systems)
for what a weak or broken device random number generator leaves behind: one key on two devices, RSA moduli that
share a prime, ECDSA signatures that reuse a nonce (the private key follows), one nonce in different keys' CSRs,
and keys on weak or invalid curves or of too small sizes. Issuance refuses a duplicate key already; the scan
covers what was accepted before a rule existed, batches, reconciled exports, and imported certificates.`,
	}
	c.AddCommand(fleetScanCmd(g), fleetImportCmd(g))
	return c
}

func fleetScanCmd(g *globals) *cobra.Command {
	var opts fleet.Options
	var revoke bool
	c := &cobra.Command{
		Use:   "scan --env ENV [--product PRODUCT] [--revoke] [--json]",
		Short: "Scan an environment's keys and signatures for RNG failures; exit 10 if anything is found",
		Long: `Scan the keys and signatures of an environment (and product line) and report every finding with the
devices and certificates it names and a recommendation. Nothing is changed unless --revoke is given: then every
certificate Keyward issued in the scanned scope that a finding names is revoked with reason keyCompromise through
the normal path (authorised and audited; revoked ones are skipped). Imported certificates and Keyward's own keys
are reported, never revoked here.

Checks: the same public key certified for two devices (issued here or imported); RSA moduli sharing a prime
(batch GCD over every distinct modulus: certificates, imported, CA and firmware keys; each factored); ECDSA
CSR signatures by one key that reuse a nonce, the private key solved for and reported "recovered" only when
d·G equals the public key (d is never shown); one CSR signature nonce under different keys (the meaningful
"repeated randomness field" of Keyward's CSRs, which carry no challenge password or nonce attributes); keys on
curves other than P-256, P-384, P-521 and Ed25519, invalid points, RSA below 2048 bits, exponents below 65537
or even.

The JSON report is also saved, mode 0600, to DATA/reports/fleet-scan/<YYYYMMDDTHHMMSSZ>-<env>.json (UTC), with
top-level kind "fleet-scan", env, product and generated_at, where 'keyward evidence' finds the newest.

Exit status: 0 no findings, 10 findings present (with or without --revoke), others as usual.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Env == "" {
				return usageError{fmt.Errorf("--env is required: the environment to scan (e.g. --env production)")}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			opts.Now = n.RA.Now()
			rep, err := fleet.Scan(cmd.Context(), n.RA.Reader(), opts)
			if err != nil {
				return err
			}
			var revokeErr error
			if revoke {
				revokeErr = fleet.Revoke(cmd.Context(), n.RA, principal(), rep)
			}
			path, err := fleet.SaveReport(g.data, rep)
			if err != nil {
				return err
			}
			if g.json {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else {
				printScan(g, rep)
			}
			fmt.Fprintf(g.env.Stderr, "keyward: fleet scan report saved to %s\n", path)
			if revokeErr != nil {
				return revokeErr
			}
			if len(rep.Findings) > 0 {
				return &exitError{code: ExitFindings, err: fmt.Errorf("fleet scan of %s: %d findings (exit %d)", scopeName(rep), len(rep.Findings), ExitFindings)}
			}
			return nil
		},
	}
	c.Flags().StringVar(&opts.Env, "env", "", "environment to scan (required)")
	c.Flags().StringVar(&opts.Product, "product", "", "product line to scan (default: every product line of the environment)")
	c.Flags().BoolVar(&revoke, "revoke", false, "revoke (keyCompromise) every certificate issued here in scope that a finding names")
	g.addJSON(c)
	return c
}

func scopeName(rep *fleet.Report) string {
	if rep.Product != "" {
		return rep.Env + "/" + rep.Product
	}
	return rep.Env
}

func printScan(g *globals, rep *fleet.Report) {
	w := g.env.Stdout
	s := rep.Scanned
	fmt.Fprintf(w, "fleet scan of %s at %s: %d certificates, %d imported, %d CA keys, %d firmware keys, %d RSA moduli (batch GCD %.2fs), %d CSR signatures sharing a nonce\n",
		scopeName(rep), rep.GeneratedAt.Format("2006-01-02T15:04:05Z"), s.Certificates, s.Imported, s.CAKeys, s.FirmwareKeys, s.RSAModuli, rep.BatchGCD.Seconds, s.CSRSignatures)
	for _, u := range rep.Unreadable {
		fmt.Fprintf(w, "  unreadable: %s\n", u)
	}
	if len(rep.Findings) == 0 {
		fmt.Fprintln(w, "no findings")
		return
	}
	for i, f := range rep.Findings {
		fmt.Fprintf(w, "\n%d. %s: %s\n", i+1, f.Kind, f.Summary)
		if f.PrivateKeyRecovered {
			fmt.Fprintf(w, "   private key recovered: %s\n", f.Confirmation)
		}
		for _, h := range f.Holders {
			var parts []string
			for _, p := range []struct{ k, v string }{{"serial", h.Serial}, {"issuer", h.Issuer}, {"subject", h.Subject}, {"status", h.Status},
				{"source", h.Source}, {"key", h.KeyURI}, {"algorithm", h.Algorithm}, {"revocation", h.Revocation}} {
				if p.v != "" {
					parts = append(parts, p.k+" "+p.v)
				}
			}
			fmt.Fprintf(w, "   - %s: %s\n", h.Kind, strings.Join(parts, ", "))
		}
		fmt.Fprintf(w, "   recommendation: %s\n", f.Recommendation)
	}
	if r := rep.Revocation; r != nil {
		fmt.Fprintf(w, "\nrevocation: %d revoked (keyCompromise), %d already revoked, %d imported (not revoked here), %d out of scope or Keyward's own keys, %d failed\n",
			r.Revoked, r.AlreadyRevoked, r.ImportedOnly, r.OtherEnvOrOwned, r.Failed)
	}
}

// ImportCertsOutput is what 'fleet import-certs --json' prints.
type ImportCertsOutput struct {
	ra.ImportCertsResult
	Malformed []fleet.Malformed `json:"malformed"`
}

func fleetImportCmd(g *globals) *cobra.Command {
	var req ra.ImportCertsRequest
	var strict bool
	c := &cobra.Command{
		Use:   "import-certs --env ENV [--product PRODUCT] [--strict] FILE...",
		Short: "Add certificates issued by other systems to the fleet scan only (audited)",
		Long: `Import certificates issued elsewhere (PEM, one or more CERTIFICATE blocks, or DER, one or several
concatenated) so that 'fleet scan' of the environment looks at their keys too. They go to a table of their own:
never trusted, served, revoked or counted as issued. A certificate already imported for the environment is
counted and left as it is.

A malformed certificate (or a PEM block that is no certificate) is named by file and position (legacy.pem#3),
skipped and counted; the rest are imported in one transaction and the command exits 0. With --strict nothing is
imported if any is malformed (exit 3).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if req.Environment == "" {
				return usageError{fmt.Errorf("--env is required: the environment whose scans include the certificates")}
			}
			out := ImportCertsOutput{Malformed: []fleet.Malformed{}}
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					return usageError{fmt.Errorf("read %s: %w", f, err)}
				}
				certs, bad := fleet.ParseCertFile(f, data)
				req.Certs = append(req.Certs, certs...)
				out.Malformed = append(out.Malformed, bad...)
			}
			for _, m := range out.Malformed {
				fmt.Fprintf(g.env.Stderr, "keyward: skipped %s: %s\n", m.Source, m.Reason)
			}
			if strict && len(out.Malformed) > 0 {
				return ra.Errorf(ra.KindBadRequest, "%d malformed certificates (first: %s): nothing imported (--strict)", len(out.Malformed), out.Malformed[0].Source)
			}
			if len(req.Certs) == 0 {
				return ra.Errorf(ra.KindBadRequest, "no valid certificate in %s: nothing imported", strings.Join(files, ", "))
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			res, err := n.RA.ImportCertificates(cmd.Context(), principal(), req)
			if err != nil {
				return err
			}
			out.ImportCertsResult = *res
			if g.json {
				return g.printJSON(out)
			}
			fmt.Fprintf(g.env.Stdout, "imported %d certificates into the fleet scan of %s (%d already imported, %d malformed skipped)\n",
				res.Imported, req.Environment, res.Already, len(out.Malformed))
			return nil
		},
	}
	c.Flags().StringVar(&req.Environment, "env", "", "environment whose fleet scans include the certificates (required)")
	c.Flags().StringVar(&req.ProductLine, "product", "", "product line the certificates belong to (default: none named)")
	c.Flags().BoolVar(&strict, "strict", false, "import nothing if any certificate is malformed")
	g.addJSON(c)
	return c
}
