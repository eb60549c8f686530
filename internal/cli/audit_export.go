package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/siem"
	"github.com/keyward/keyward/internal/store"
)

func auditExportCmd(g *globals) *cobra.Command {
	var since int64
	var format, out string
	c := &cobra.Command{
		Use:   "export",
		Short: "Stream audit events to a SIEM: JSON lines or ArcSight CEF, from a sequence number on",
		Long: `Write the audit events after sequence number --since (0: all) up to the newest one at the start, one
per line: jsonl (the API's event view, the format of 'keyward serve --audit-sink') or cef (ArcSight Common Event
Format; externalId is the sequence number). Events are read page by page, so memory stays constant however long
the trail. With --out the file is written beside its final name and renamed when complete (mode 0600), so a
failed export leaves no partial file. A --since past the newest event exits 5.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since < 0 {
				return usageError{fmt.Errorf("--since %d: a sequence number is 0 (everything) or more", since)}
			}
			if format != siem.FormatJSONL && format != siem.FormatCEF {
				return usageError{fmt.Errorf("--format %.40q: use %s", format, strings.Join(siem.Formats, " or "))}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			var written, head int64
			write := func(w io.Writer) error {
				var err error
				written, head, err = siem.Export(cmd.Context(), n.Store, since, format, buildVersion().Version, w)
				return err
			}
			if out == "" {
				err = write(g.env.Stdout)
			} else {
				err = exportToFile(out, write)
			}
			if err != nil {
				return err
			}
			if out != "" {
				fmt.Fprintf(g.env.Stderr, "keyward: wrote %d events (%d to %d) to %s\n", written, since+1, head, out)
			}
			return nil
		},
	}
	c.Flags().Int64Var(&since, "since", 0, "export the events after this sequence number (0: all); a SIEM passes the last one it holds")
	c.Flags().StringVar(&format, "format", siem.FormatJSONL, "jsonl or cef")
	c.Flags().StringVar(&out, "out", "", "write to this file instead of standard output")
	return c
}

// auditSink is the JSON view of an audit sink's cursor.
type auditSink struct {
	Name      string    `json:"name"`
	Delivered int64     `json:"delivered_seq"`
	Behind    int64     `json:"behind"`
	UpdatedAt time.Time `json:"updated_at"`
}

func auditSinksCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "sinks",
		Short: "List the audit sinks 'keyward serve --audit-sink' delivers to: the last event each holds and how far behind it is",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			head, _, err := n.Store.AuditHead(cmd.Context())
			if err != nil {
				return err
			}
			sinks, err := n.Store.ListAuditSinks(cmd.Context())
			if err != nil {
				return err
			}
			out := make([]auditSink, 0, len(sinks))
			for _, s := range sinks {
				out = append(out, auditSink{Name: s.Name, Delivered: s.Seq, Behind: head - s.Seq, UpdatedAt: s.UpdatedAt})
			}
			if g.json {
				return g.printJSON(out)
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SINK\tDELIVERED\tBEHIND\tUPDATED")
			for _, s := range out {
				fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", s.Name, s.Delivered, s.Behind, s.UpdatedAt.Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
	g.addJSON(c)
	return c
}

// exportToFile runs write into a temporary file beside path and renames it to path once write succeeded.
func exportToFile(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return usageError{fmt.Errorf("--out %s: %w", path, err)}
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing left to remove
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return err
	}
	if err := write(f); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// auditSinkOptions are the flags of 'keyward serve' that forward the audit trail to a SIEM.
type auditSinkOptions struct {
	spec, ca string
	target   siem.Target
}

func addAuditSinkFlags(c *cobra.Command, o *auditSinkOptions) {
	c.Flags().StringVar(&o.spec, "audit-sink", "", "forward every audit event, at least once, as JSON lines to file:PATH or https://URL (cursor kept in the store)")
	c.Flags().StringVar(&o.ca, "audit-sink-ca", "", "PEM certificates that verify an https audit sink (default: the system roots)")
}

func (o *auditSinkOptions) parse() error {
	if o.spec == "" {
		if o.ca != "" {
			return fmt.Errorf("--audit-sink-ca needs --audit-sink")
		}
		return nil
	}
	t, err := siem.ParseTarget(o.spec, o.ca)
	if err != nil {
		return fmt.Errorf("--audit-sink: %w", err)
	}
	o.target = t
	return nil
}

// start runs the forwarder until ctx ends or the returned stop is called; without a sink it does nothing.
func (o *auditSinkOptions) start(ctx context.Context, g *globals, n *node.Node) (func(), error) {
	if o.target == nil {
		return func() {}, nil
	}
	cur, err := n.Store.AuditSinkCursor(ctx, o.target.Name())
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(g.env.Stderr, "keyward: forwarding the audit trail to %s from event %d\n", o.target.Name(), cur.Seq+1)
	wake := make(chan struct{}, 1)
	if n.Feed != nil {
		n.Feed.Subscribe(func([]store.Change) {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
	}
	fwd := &siem.Forwarder{Target: o.target, Read: n.Store, Advance: n.RA.AdvanceAuditSink, Logger: n.Logger, Wake: wake}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); fwd.Run(ctx) }()
	return func() { cancel(); <-done }, nil
}
