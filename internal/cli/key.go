package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"
)

func keyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "key", Short: "The key glossary: every key Keyward holds or knows of"}
	c.AddCommand(keyListCmd(g), keyDestroyCmd(g), keyKDKCmd(g), keyDeriveCmd(g))
	return c
}

func keyListCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List keys: purpose, algorithm, location, state and dates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out []api.Key
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				keys, err := c.Keys(cmd.Context())
				if err != nil {
					return remoteErr(err)
				}
				if out, err = viewOf[[]api.Key](keys); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				keys, err := n.Store.ListKeys(cmd.Context())
				if err != nil {
					return err
				}
				out = make([]api.Key, 0, len(keys))
				for _, k := range keys {
					out = append(out, api.NewKey(k))
				}
			}
			if g.json {
				return g.printJSON(out)
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PURPOSE\tALGORITHM\tLOCATION\tSTATE\tSINCE\tOWNER\tURI")
			for _, k := range out {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Purpose, k.Algorithm, k.Location, k.State, k.StateChangedAt.Format(time.RFC3339), k.Owner, k.URI)
			}
			return w.Flush()
		},
	}
	g.addJSON(c)
	return c
}

func keyDestroyCmd(g *globals) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "destroy URI",
		Short: "Destroy a key: erase it from its keystore, mark it destroyed, audit it",
		Long: `Destroy a key. For a key Keyward holds, the backend zeroises and deletes it; for a key held elsewhere (a
device key, spki:sha256:... URI) the operator attests its destruction. The key is marked destroyed with the time,
and an issuing CA whose key is destroyed is retired, in the same transaction as the audit event.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usageError{fmt.Errorf("--reason is required (it is recorded in the audit trail)")}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if err := n.RA.DestroyKey(cmd.Context(), principal(), args[0], reason); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "destroyed %s\n", args[0])
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why the key is destroyed (audited)")
	return c
}
