package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/client"
)

func tokenCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "token",
		Short: "Operator API tokens: create, list, revoke",
		Long: `Operator tokens authenticate people and programs on the JSON API ('Authorization: Bearer TOKEN') and
release signers' approvals in local CLI mode ('firmware release approve --token-file'). A token is printed once
and stored only as its SHA-256. Names are unique. New tokens expire after 90 days unless --expires says otherwise;
a token without expiry must be asked for with --expires never. A revoked or expired token is refused by every
running server within seconds (the change feed carries a revocation; expiry is checked on every request).`,
	}
	c.AddCommand(tokenCreateCmd(g), tokenListCmd(g), tokenRevokeCmd(g))
	return c
}

// parseExpires reads --expires: a duration ("90d", "720h", "1y") or "never".
func parseExpires(s string) (ra.TokenRequest, error) {
	if s == "never" {
		return ra.TokenRequest{NeverExpires: true}, nil
	}
	d, err := hierarchy.ParseDuration(s)
	if err != nil {
		return ra.TokenRequest{}, usageError{fmt.Errorf("--expires: %w, or never", err)}
	}
	return ra.TokenRequest{ValidFor: d}, nil
}

func tokenCreateCmd(g *globals) *cobra.Command {
	var name, role, expires string
	c := &cobra.Command{
		Use:   "create",
		Short: "Create an operator token; it is printed once and stored only hashed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(ra.OperatorRoles, role) {
				return usageError{fmt.Errorf("--role %q: operator roles are %s", role, strings.Join(ra.OperatorRoles, ", "))}
			}
			if name == "" {
				return usageError{errors.New("--name is required")}
			}
			req, err := parseExpires(expires)
			if err != nil {
				return err
			}
			req.Name, req.Role = name, role
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				nt, err := c.CreateToken(cmd.Context(), client.TokenRequest{Name: name, Role: role, Expires: expires})
				if err != nil {
					return remoteErr(err)
				}
				fmt.Fprintln(g.env.Stdout, nt.Token)
				fmt.Fprintf(g.env.Stderr, "token %q (%s) expires at %s\n", nt.Name, nt.Role, timeOr(nt.ExpiresAt, "never"))
				return nil
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			tok, err := n.RA.CreateToken(cmd.Context(), principal(), req)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.env.Stdout, tok)
			if req.NeverExpires {
				fmt.Fprintf(g.env.Stderr, "token %q (%s) never expires; revoke it with 'keyward token revoke %s --reason ...'\n", name, role, name)
			} else {
				v := req.ValidFor
				if v == 0 {
					v = ra.DefaultTokenValidity
				}
				fmt.Fprintf(g.env.Stderr, "token %q (%s) expires at %s\n", name, role, n.RA.Now().Add(v).Format(time.RFC3339))
			}
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "who the token is for (unique; a release signer's name as keyward.yaml lists it)")
	c.Flags().StringVar(&role, "role", ra.RoleCAOfficer, "role: "+strings.Join(ra.OperatorRoles, ", "))
	c.Flags().StringVar(&expires, "expires", "90d", `validity ("90d", "720h", "1y"), or "never"`)
	return c
}

func tokenListCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List operator tokens: name, role, created, last used, expires, state (never the token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out []api.Token
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				toks, err := c.Tokens(cmd.Context())
				if err != nil {
					return remoteErr(err)
				}
				if out, err = viewOf[[]api.Token](toks); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				toks, err := n.RA.ListTokens(cmd.Context(), principal())
				if err != nil {
					return err
				}
				now := n.RA.Now()
				out = make([]api.Token, 0, len(toks))
				for _, t := range toks {
					out = append(out, api.NewToken(t, ra.TokenState(t, now)))
				}
			}
			if g.json {
				return g.printJSON(out)
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tROLE\tCREATED\tLAST USED\tEXPIRES\tSTATE")
			for _, t := range out {
				state := t.State
				if t.RevocationReason != "" {
					state += " (" + t.RevocationReason + ")"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, t.CreatedAt.Format(time.RFC3339),
					timeOr(t.LastUsedAt, "never"), timeOr(t.ExpiresAt, "never"), state)
			}
			return w.Flush()
		},
	}
	g.addJSON(c)
	return c
}

func timeOr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.Format(time.RFC3339)
}

func tokenRevokeCmd(g *globals) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an operator token by name; every running server refuses it within seconds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return usageError{errors.New("--reason is required: say why the token is revoked")}
			}
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				t, err := c.RevokeToken(cmd.Context(), args[0], reason)
				if err != nil {
					return remoteErr(err)
				}
				fmt.Fprintf(g.env.Stdout, "revoked operator token %q (%s, id %s): %s\n", t.Name, t.Role, t.ID, t.RevocationReason)
				return nil
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			t, err := n.RA.RevokeToken(cmd.Context(), principal(), args[0], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "revoked operator token %q (%s, id %s): %s\n", t.Name, t.Role, t.ID, t.RevocationReason)
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why the token is revoked (recorded with it and in the audit trail)")
	return c
}

// maxTokenFile bounds a token file: a token is 47 characters.
const maxTokenFile = 4 << 10

// readTokenFile reads an operator token from path: the first line, trimmed.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", usageError{fmt.Errorf("token file: %w", err)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile))
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

// signerPrincipal authenticates the operator token in path against the store and returns its principal,
// presented by the local user (Via). A refused token is reported like one refused on the API (ra.RefuseAuth:
// logged and audited), naming the command.
func signerPrincipal(ctx context.Context, r *ra.RA, path, command string) (ra.Principal, error) {
	tok, err := readTokenFile(path)
	if err != nil {
		return ra.Principal{}, err
	}
	local := principal()
	at, err := r.AuthenticateToken(ctx, tok)
	if err != nil {
		r.RefuseAuth(ctx, ra.AuthRefusal{Source: local.ID, Method: "CLI", Route: command, Err: err, Local: true})
		return ra.Principal{}, fmt.Errorf("token file %s: %w", path, err)
	}
	p := at.Principal
	p.Via = local.ID
	return p, nil
}
