package cli

import (
	"encoding/pem"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"
)

func caCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "ca", Short: "Certificate authorities: list, export, create, offline-root ceremony"}
	c.AddCommand(caListCmd(g), caExportCmd(g), caCreateCmd(g), caCSRCmd(g), caImportCmd(g), caCancelCmd(g), caStatusCmd(g), caRevokeCmd(g), caRetireCmd(g),
		caRolloverCmd(g), caCRLRequestCmd(g), caImportCRLCmd(g), caCeremonyCmd(g))
	return c
}

func caListCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List every CA with environment, product line, key reference, validity and status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out []api.CA
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				cas, err := c.CAs(cmd.Context())
				if err != nil {
					return remoteErr(err)
				}
				if out, err = viewOf[[]api.CA](cas); err != nil {
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
				cas, err := n.Store.ListCAs(cmd.Context())
				if err != nil {
					return err
				}
				out = make([]api.CA, 0, len(cas))
				for _, ca := range cas {
					out = append(out, api.NewCA(ca, false))
				}
			}
			if g.json {
				return g.printJSON(out)
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tKIND\tENV\tPRODUCT\tSTATUS\tNOT AFTER\tKEY")
			for _, ca := range out {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ca.ID, ca.Kind, ca.Environment, dash(ca.ProductLine), ca.Status, ca.NotAfter.Format(time.DateOnly), ca.KeyURI)
			}
			return w.Flush()
		},
	}
	g.addJSON(c)
	return c
}

func caExportCmd(g *globals) *cobra.Command {
	var env, product string
	c := &cobra.Command{
		Use:   "export",
		Short: "Print PEM: the environment's root, or with --product the chain (issuing CA, then root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				p, err := c.Chain(cmd.Context(), env, product)
				if err != nil {
					return remoteErr(err)
				}
				_, err = g.env.Stdout.Write(p)
				return err
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			chain, err := n.RA.Chain(cmd.Context(), env, product)
			if err != nil {
				return err
			}
			for _, der := range chain {
				if err := pem.Encode(g.env.Stdout, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&env, "env", "dev", "environment")
	c.Flags().StringVar(&product, "product", "", "product line (omit for the root alone)")
	return c
}

func caCreateCmd(g *globals) *cobra.Command {
	var env, ks string
	c := &cobra.Command{
		Use:   "create",
		Short: "Create the CAs keyward.yaml declares for an environment that do not exist yet",
		Long: `Create the root (online environments only) and every issuing CA that keyward.yaml declares for --env and
that does not exist yet, with new keys in --keystore. Use it after adding an environment or product line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			backend, err := n.Keystore(ks)
			if err != nil {
				return err
			}
			res, err := n.RA.BuildHierarchy(cmd.Context(), principal(), env, backend)
			if res != nil {
				for _, ca := range res.Created {
					fmt.Fprintf(g.env.Stdout, "created %-8s CA %-24s key %s\n", ca.Kind, ca.ID, ca.KeyURI)
				}
			}
			if err != nil {
				return err
			}
			if len(res.Created) == 0 {
				fmt.Fprintln(g.env.Stdout, "nothing to create: every declared CA exists")
			}
			return nil
		},
	}
	c.Flags().StringVar(&env, "env", "dev", "environment")
	c.Flags().StringVar(&ks, "keystore", "soft", `where new keys are generated: "soft" or a PKCS#11 URI`)
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
