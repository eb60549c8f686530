package cli

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/client"
)

func certCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "cert", Short: "Certificates: issue, show, list"}
	c.AddCommand(certIssueCmd(g), certShowCmd(g), certListCmd(g), certExpiringCmd(g))
	c.AddCommand(certRevokeCmd(g), certUnholdCmd(g), certHistoryCmd(g))
	return c
}

func certIssueCmd(g *globals) *cobra.Command {
	var prof, csrFile, env, product, out string
	c := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate from a CSR under a profile",
		Long: `Check the CSR (signature = proof of possession, key quality, a key never certified for another subject,
subject and SANs against the profile), lint the certificate, sign it with the product line's issuing CA and
record it with its audit event. Prints the certificate PEM, or writes it to --out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if prof == "" {
				return usageError{fmt.Errorf("--profile is required")}
			}
			csr, err := readFileLimited(csrFile)
			if err != nil {
				return err
			}
			var view api.Certificate
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				// The API takes a PEM CSR as it is, a DER one in base64.
				text := string(csr)
				if !strings.Contains(text, "-----BEGIN") {
					text = base64.StdEncoding.EncodeToString(csr)
				}
				v, err := c.Issue(cmd.Context(), client.IssueRequest{Profile: prof, Environment: env, ProductLine: product, CSR: text})
				if err != nil {
					return remoteErr(err)
				}
				if view, err = viewOf[api.Certificate](v); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				cert, err := n.RA.Issue(cmd.Context(), principal(), ra.IssueRequest{Profile: prof, Environment: env, ProductLine: product, CSR: csr})
				if err != nil {
					return err
				}
				view = api.NewCertificate(cert, true)
			}
			p := []byte(view.PEM)
			if out != "" {
				if err := os.WriteFile(out, p, 0o644); err != nil {
					return err
				}
			}
			if g.json {
				return g.printJSON(view)
			}
			if out == "" {
				_, err = g.env.Stdout.Write(p)
				return err
			}
			fmt.Fprintf(g.env.Stdout, "issued %s for %s (%d bytes) -> %s\n", view.Serial, view.Subject, view.DERSize, out)
			return nil
		},
	}
	c.Flags().StringVar(&prof, "profile", "", "certificate profile")
	c.Flags().StringVar(&csrFile, "csr", "", "CSR file (PEM or DER, at most 64 KiB)")
	c.Flags().StringVar(&env, "env", "dev", "environment")
	c.Flags().StringVar(&product, "product", "", "product line (default: the one product line of --env that uses the profile)")
	c.Flags().StringVar(&out, "out", "", "write the certificate PEM here")
	g.addJSON(c)
	return c
}

func certShowCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "show SERIAL",
		Short: "Show a certificate by serial (hex)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var j api.Certificate
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				v, err := c.Certificate(cmd.Context(), args[0])
				if err != nil {
					return remoteErr(err)
				}
				if j, err = viewOf[api.Certificate](v); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				cert, err := n.RA.GetCertificate(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				j = api.NewCertificate(cert, true)
			}
			if g.json {
				return g.printJSON(j)
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "serial\t%s\nsubject\t%s\nissuer\t%s\nprofile\t%s v%d\nvalidity\t%s .. %s\nstatus\t%s\nspki sha256\t%s\nsize\t%d bytes\n",
				j.Serial, j.Subject, j.Issuer, j.Profile, j.ProfileVersion, j.NotBefore.Format(time.RFC3339), j.NotAfter.Format(time.RFC3339), j.Status, j.SPKISHA256, j.DERSize)
			w.Flush()
			fmt.Fprint(g.env.Stdout, j.PEM)
			return nil
		},
	}
	g.addJSON(c)
	return c
}

func certListCmd(g *globals) *cobra.Command {
	var f store.CertFilter
	c := &cobra.Command{
		Use:   "list",
		Short: "List certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out []api.Certificate
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				// The API answers at most 10000 certificates a request.
				limit := f.Limit
				if limit <= 0 || limit > 10000 {
					limit = 10000
				}
				certs, err := c.Certificates(cmd.Context(), client.CertificateFilter{Profile: f.Profile, Status: f.Status, Issuer: f.IssuerID, Limit: limit})
				if err != nil {
					return remoteErr(err)
				}
				if out, err = viewOf[[]api.Certificate](certs); err != nil {
					return err
				}
				for i := range out {
					out[i].PEM = ""
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				certs, err := n.Store.ListCertificates(cmd.Context(), f)
				if err != nil {
					return err
				}
				out = make([]api.Certificate, 0, len(certs))
				for _, c := range certs {
					out = append(out, api.NewCertificate(c, false))
				}
			}
			if g.json {
				return g.printJSON(out)
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SERIAL\tSUBJECT\tPROFILE\tISSUER\tSTATUS\tNOT AFTER")
			for _, c := range out {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Serial, c.Subject, c.Profile, c.Issuer, c.Status, c.NotAfter.Format(time.DateOnly))
			}
			return w.Flush()
		},
	}
	c.Flags().StringVar(&f.Profile, "profile", "", "only this profile")
	c.Flags().StringVar(&f.Status, "status", "", "only this status (valid, revoked, superseded)")
	c.Flags().StringVar(&f.IssuerID, "issuer", "", "only this issuing CA id (e.g. dev/demo-implant)")
	c.Flags().IntVar(&f.Limit, "limit", 1000, "at most this many (0: all)")
	g.addJSON(c)
	return c
}
