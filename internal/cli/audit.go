package cli

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

func auditCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "The hash-chained audit trail: list, verify"}
	c.AddCommand(auditListCmd(g), auditVerifyCmd(g))
	c.AddCommand(auditExportCmd(g), auditSinksCmd(g)) // audit_export.go
	return c
}

func auditListCmd(g *globals) *cobra.Command {
	var after int64
	var limit int
	c := &cobra.Command{
		Use:   "list",
		Short: "List audit events in order",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			var out []api.Event
			stop := fmt.Errorf("limit")
			err = n.Store.WalkAudit(cmd.Context(), after, func(e *audit.Event) error {
				if limit > 0 && len(out) >= limit {
					return stop
				}
				out = append(out, api.NewEvent(e))
				return nil
			})
			if err != nil && !errors.Is(err, stop) {
				return err
			}
			if g.json {
				if out == nil {
					out = []api.Event{}
				}
				return g.printJSON(out)
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SEQ\tTIME\tACTOR\tACTION\tOUTCOME\tSUBJECT\tDETAILS")
			for _, e := range out {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339), e.Actor, e.Action, e.Outcome, e.Subject, formatDetails(e.Details))
			}
			return w.Flush()
		},
	}
	c.Flags().Int64Var(&after, "after", 0, "only events after this sequence number")
	c.Flags().IntVar(&limit, "limit", 1000, "at most this many (0: all)")
	g.addJSON(c)
	return c
}

func formatDetails(d map[string]string) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + d[k]
	}
	return strings.Join(parts, " ")
}

func auditVerifyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the audit hash chain; exit 8 naming the first bad event if any row was altered, removed or reordered",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			count, err := store.VerifyAudit(cmd.Context(), n.Store)
			if g.json {
				res := map[string]any{"ok": err == nil, "events": count}
				if err != nil {
					res["error"] = err.Error()
				}
				if jerr := g.printJSON(res); jerr != nil {
					return jerr
				}
			}
			if err != nil {
				return err
			}
			if !g.json {
				fmt.Fprintf(g.env.Stdout, "audit chain intact: %d events\n", count)
			}
			return nil
		},
	}
	g.addJSON(c)
	return c
}
