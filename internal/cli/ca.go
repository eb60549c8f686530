package cli

import (
	"encoding/pem"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
)

func caCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "ca", Short: "Certificate authorities: list, export, create, offline-root ceremony"}
	c.AddCommand(caListCmd(g), caExportCmd(g), caCreateCmd(g), caCSRCmd(g), caImportCmd(g), caCeremonyCmd(g))
	return c
}

func caListCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List every CA with environment, product line, key reference, validity and status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			cas, err := n.Store.ListCAs(cmd.Context())
			if err != nil {
				return err
			}
			out := make([]api.CA, 0, len(cas))
			for _, ca := range cas {
				out = append(out, api.NewCA(ca, false))
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

func caCSRCmd(g *globals) *cobra.Command {
	var env, product, ks, out string
	c := &cobra.Command{
		Use:   "csr",
		Short: "Generate an issuing CA key (offline-root environments) and write its CSR for the ceremony",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{fmt.Errorf("--out is required")}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			backend, err := n.Keystore(ks)
			if err != nil {
				return err
			}
			csr, err := n.RA.RequestIssuing(cmd.Context(), principal(), env, product, backend)
			if err != nil {
				return err
			}
			return writePEM(out, "CERTIFICATE REQUEST", csr, 0o644)
		},
	}
	c.Flags().StringVar(&env, "env", "production", "environment")
	c.Flags().StringVar(&product, "product", "", "product line")
	c.Flags().StringVar(&ks, "keystore", "soft", `where the issuing key is generated: "soft" or a PKCS#11 URI`)
	c.Flags().StringVar(&out, "out", "", "CSR output file (PEM)")
	return c
}

func caImportCmd(g *globals) *cobra.Command {
	var env, product, certFile, rootFile string
	c := &cobra.Command{
		Use:   "import",
		Short: "Install a ceremony-signed issuing CA certificate and its offline root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certDER, err := readCert(certFile)
			if err != nil {
				return err
			}
			rootDER, err := readCert(rootFile)
			if err != nil {
				return err
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if err := n.RA.ImportIssuing(cmd.Context(), principal(), env, product, certDER, rootDER); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "imported issuing CA %s under offline root %s\n", hierarchy.IssuingID(env, product), hierarchy.RootID(env))
			return nil
		},
	}
	c.Flags().StringVar(&env, "env", "production", "environment")
	c.Flags().StringVar(&product, "product", "", "product line")
	c.Flags().StringVar(&certFile, "cert", "", "issuing CA certificate from 'keyward ca ceremony sign' (PEM or DER)")
	c.Flags().StringVar(&rootFile, "root", "", "root certificate from 'keyward ca ceremony root' (PEM or DER)")
	return c
}

func caCeremonyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "ceremony",
		Short: "Offline root key ceremony: create a root, sign an issuing CA CSR",
		Long: `Commands for the offline ceremony machine. They work on a ceremony workspace (--dir), never on a server's
data directory: the workspace holds the root key (software keystore sealed under the ceremony passphrase, or a
PKCS#11 token) and its own hash-chained audit log. A running server never loads a root key of an offline
environment.`,
	}
	c.AddCommand(ceremonyRootCmd(g), ceremonySignCmd(g))
	return c
}

// ceremonyNode opens (creating if needed) a ceremony workspace. Unlike a data directory, it never generates a
// passphrase: the ceremony's passphrase must come from KEYWARD_PASSPHRASE or --passphrase-file.
func ceremonyNode(cmd *cobra.Command, g *globals, dir string) (*node.Node, error) {
	if os.Getenv(node.PassphraseEnv) == "" && g.passphraseFile == "" {
		return nil, usageError{fmt.Errorf("a ceremony needs its passphrase from %s or --passphrase-file; it never generates one", node.PassphraseEnv)}
	}
	opts := g.options()
	opts.Dir, opts.DB = dir, ""
	return node.OpenCeremony(cmd.Context(), opts)
}

func ceremonyRootCmd(g *globals) *cobra.Command {
	var dir, env, alg, validity, ks, out string
	c := &cobra.Command{
		Use:   "root",
		Short: "Create an environment's root key and self-signed root certificate in a ceremony workspace",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || out == "" {
				return usageError{fmt.Errorf("--dir and --out are required")}
			}
			a, err := keystore.ParseAlgorithm(alg)
			if err != nil {
				return usageError{err}
			}
			v, err := hierarchy.ParseDuration(validity)
			if err != nil {
				return usageError{fmt.Errorf("--validity: %w", err)}
			}
			n, err := ceremonyNode(cmd, g, dir)
			if err != nil {
				return err
			}
			defer n.Close()
			backend, err := n.Keystore(ks)
			if err != nil {
				return err
			}
			ca, err := n.RA.CeremonyRoot(cmd.Context(), principal(), env, backend, a, v)
			if err != nil {
				return err
			}
			if err := writePEM(out, "CERTIFICATE", ca.CertDER, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "created root %s (key %s), certificate written to %s\n", ca.ID, ca.KeyURI, out)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "ceremony workspace directory")
	c.Flags().StringVar(&env, "env", "production", "environment")
	c.Flags().StringVar(&alg, "algorithm", string(keystore.ECDSAP384), "root key algorithm")
	c.Flags().StringVar(&validity, "validity", "25y", "root validity")
	c.Flags().StringVar(&ks, "keystore", "soft", `where the root key is generated: "soft" (sealed in the workspace) or a PKCS#11 URI`)
	c.Flags().StringVar(&out, "out", "", "root certificate output file (PEM)")
	return c
}

func ceremonySignCmd(g *globals) *cobra.Command {
	var dir, env, csrFile, validity, out string
	c := &cobra.Command{
		Use:   "sign",
		Short: "Sign an issuing CA CSR (from 'keyward ca csr') with the workspace's root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || out == "" || csrFile == "" {
				return usageError{fmt.Errorf("--dir, --csr and --out are required")}
			}
			v, err := hierarchy.ParseDuration(validity)
			if err != nil {
				return usageError{fmt.Errorf("--validity: %w", err)}
			}
			csr, err := readPEMOrDER(csrFile, "CERTIFICATE REQUEST")
			if err != nil {
				return err
			}
			n, err := ceremonyNode(cmd, g, dir)
			if err != nil {
				return err
			}
			defer n.Close()
			der, err := n.RA.CeremonySign(cmd.Context(), principal(), env, csr, v)
			if err != nil {
				return err
			}
			return writePEM(out, "CERTIFICATE", der, 0o644)
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "ceremony workspace directory")
	c.Flags().StringVar(&env, "env", "production", "environment")
	c.Flags().StringVar(&csrFile, "csr", "", "issuing CA CSR (PEM or DER)")
	c.Flags().StringVar(&validity, "validity", "20y", "issuing CA validity (must cover the longest certificate it will issue: implant identities live 15 years)")
	c.Flags().StringVar(&out, "out", "", "issuing CA certificate output file (PEM)")
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
