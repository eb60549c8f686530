package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/node"
)

func initCmd(g *globals) *cobra.Command {
	var ks string
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a data directory with the embedded dev defaults and its CAs",
		Long: `Create the data directory if needed, write keyward.yaml (the dev environment, product line demo-implant)
and the default profiles (implant-identity, gateway-identity) unless present, then create every CA that
keyward.yaml declares for environments with an online root, and an admin operator token (DATA/admin.token).
The database (--db, or SQLite in DATA) is remembered in keyward.yaml's store: section: later commands open it
without --db and refuse another. Repeating init keeps what exists. Production roots are offline: see 'keyward ca ceremony'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, res, err := node.Init(cmd.Context(), node.InitOptions{Options: g.options(), Keystore: ks, Actor: principal().ID})
			if err != nil {
				return err
			}
			defer n.Close()
			if g.json {
				ids := []string{}
				for _, ca := range res.Created {
					ids = append(ids, ca.ID)
				}
				return g.printJSON(map[string]any{"data": g.data, "created": ids, "token_file": res.TokenFile, "passphrase_file": res.PassphraseFile, "store": res.Store})
			}
			for _, ca := range res.Created {
				fmt.Fprintf(g.env.Stdout, "created %-8s CA %-24s key %s\n", ca.Kind, ca.ID, ca.KeyURI)
			}
			if len(res.Created) == 0 {
				fmt.Fprintln(g.env.Stdout, "nothing to create: every declared CA exists")
			}
			if res.TokenFile != "" {
				fmt.Fprintf(g.env.Stdout, "admin operator token written to %s (mode 0600; only its hash is stored)\n", res.TokenFile)
			}
			if res.Store != "" {
				fmt.Fprintf(g.env.Stdout, "store %s remembered in %s: later commands need no --db\n", res.Store, filepath.Join(g.data, node.ConfigFile))
			}
			return nil
		},
	}
	c.Flags().StringVar(&ks, "keystore", "soft", `where new CA keys are generated: "soft" or a PKCS#11 URI, e.g. "pkcs11:token=keyward?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/keyward/pin"`)
	g.addJSON(c)
	return c
}
