package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/ra"
)

func tokenCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "Operator API tokens"}
	var name, role string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an operator token for the JSON API; it is printed once and stored only hashed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch role {
			case ra.RoleAdmin, ra.RoleCAOfficer, ra.RoleAuditor, ra.RoleReleaseSigner:
			default:
				return usageError{fmt.Errorf("--role %q: operator roles are admin, ca-officer, auditor, release-signer", role)}
			}
			if name == "" {
				return usageError{fmt.Errorf("--name is required")}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			tok, err := n.RA.CreateToken(cmd.Context(), principal(), name, role)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.env.Stdout, tok)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "who the token is for")
	create.Flags().StringVar(&role, "role", ra.RoleCAOfficer, "role: admin, ca-officer, auditor, release-signer")
	c.AddCommand(create)
	return c
}
