package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/auditproof"
	"github.com/keyward/keyward/pkg/client"
)

const historyLong = `Every audit event about the device — its certificates (issued, renewed, re-keyed, superseded, revoked,
released from hold), its keys (generated on the device, destroyed), its station, site or factory batch, its
suspensions and its decommissioning — in sequence order, each with its event number, then each certificate and
key with the events that began and ended it. Refused attempts are listed too, marked refused; they change
nothing.

--at TIME (RFC 3339) replays the events up to that instant and answers which certificates and keys the device
held then, and which of its certificates were valid: held, inside their validity period and not revoked by
then. A certificate is held from its issuance until a renewal or a re-provisioning supersedes it, or the device
is decommissioned; a key while a certificate of it is held and it is not recorded destroyed.

--proofs DIR writes the inclusion proof of every listed event (event-<seq>.json) in the newest checkpoint (or
--checkpoint FILE), which an inspector checks offline with 'keyward audit check-proof' and the log's key.

Admins and auditors may read histories (API: GET /api/v1/devices/{env}/{product}/{serial}/history[?at=][&proofs=true]).`

// proofFlags ask for the inclusion proof of every event of a history.
type proofFlags struct {
	dir, checkpoint string
}

func (f *proofFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.dir, "proofs", "", "write the inclusion proof of every event of the history to this directory (event-<seq>.json, for 'keyward audit check-proof'); with --json they are in the output too")
	c.Flags().StringVar(&f.checkpoint, "checkpoint", "", "with --proofs: prove against this signed checkpoint (default: the newest, made now if events were appended since)")
}

// attach proves h's events when asked, writes each proof to the directory and adds them to out.
func (f *proofFlags) attach(cmd *cobra.Command, g *globals, n *node.Node, h *ra.History, out *api.History) error {
	if f.dir == "" {
		if f.checkpoint != "" {
			return usageError{errors.New("--checkpoint applies with --proofs DIR")}
		}
		return nil
	}
	var cp []byte
	if f.checkpoint != "" {
		var err error
		if cp, err = readFileLimited(f.checkpoint); err != nil {
			return err
		}
	}
	proofs, err := n.RA.HistoryProofs(cmd.Context(), principal(), h, cp)
	if err != nil {
		return err
	}
	out.Proofs = proofs
	return f.write(g, proofs)
}

// write writes each proof to the proofs directory and reports it.
func (f *proofFlags) write(g *globals, proofs []*auditproof.InclusionProof) error {
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return err
	}
	for _, p := range proofs {
		b, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(f.dir, fmt.Sprintf("event-%d.json", p.Event.Seq)), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if !g.json {
		size := uint64(0)
		if len(proofs) > 0 {
			size = proofs[0].TreeSize
		}
		fmt.Fprintf(g.env.Stderr, "inclusion proofs of %d events in the checkpoint of %d events written to %s (check each with 'keyward audit check-proof --proof FILE --key audit.pub')\n", len(proofs), size, f.dir)
	}
	return nil
}

// parseAt parses --at; empty is no instant.
func parseAt(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, usageError{fmt.Errorf("--at %q: use RFC 3339, e.g. 2031-03-14T15:09:26Z", s)}
	}
	return &t, nil
}

func deviceHistoryCmd(g *globals) *cobra.Command {
	var ref ra.DeviceRef
	var at string
	var pf proofFlags
	c := &cobra.Command{
		Use:   "history SERIAL [--at TIME]",
		Short: "A device's forensic record: every event about it, its certificates and keys, and what it held at an instant",
		Long:  historyLong,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			when, err := parseAt(at)
			if err != nil {
				return err
			}
			ref.Serial = args[0]
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				if pf.checkpoint != "" {
					return usageError{errors.New("--checkpoint cannot be used with --server: the server proves against its newest checkpoint")}
				}
				cref, err := resolveDevice(cmd.Context(), c, ref)
				if err != nil {
					return err
				}
				h, err := c.DeviceHistory(cmd.Context(), cref, when, pf.dir != "")
				if err != nil {
					return remoteErr(err)
				}
				return remoteHistory(g, &pf, h, "")
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			h, err := n.RA.DeviceHistory(cmd.Context(), principal(), ref, when)
			if err != nil {
				return err
			}
			out := api.NewHistory(h)
			if err := pf.attach(cmd, g, n, h, &out); err != nil {
				return err
			}
			return printHistory(g, out, "")
		},
	}
	c.Flags().StringVar(&ref.Environment, "env", "", "environment (needed only if the serial is in several)")
	c.Flags().StringVar(&ref.ProductLine, "product", "", "product line (needed only if the serial is in several)")
	c.Flags().StringVar(&at, "at", "", "also show what the device held at this instant (RFC 3339)")
	pf.add(c)
	g.addJSON(c)
	return c
}

func certHistoryCmd(g *globals) *cobra.Command {
	var at string
	var pf proofFlags
	c := &cobra.Command{
		Use:   "history SERIAL [--at TIME]",
		Short: "The forensic record of a certificate's device, the certificate's own events marked",
		Long: `The history of the device the certificate (hex serial) was issued to, as 'keyward device history' prints
it, with the events and the lines about this certificate marked "*". A certificate issued to no registered
device has no history (exit 5).

` + historyLong,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			when, err := parseAt(at)
			if err != nil {
				return err
			}
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				if pf.dir != "" || pf.checkpoint != "" {
					return usageError{errors.New("--proofs cannot be used with --server for a certificate: use 'keyward device history SN --proofs DIR'")}
				}
				h, err := c.CertificateHistory(cmd.Context(), args[0], when)
				if err != nil {
					return remoteErr(err)
				}
				return remoteHistory(g, &pf, h, args[0])
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			h, serial, err := n.RA.CertificateHistory(cmd.Context(), principal(), args[0], when)
			if err != nil {
				return err
			}
			out := api.NewHistory(h)
			if err := pf.attach(cmd, g, n, h, &out); err != nil {
				return err
			}
			return printHistory(g, out, serial)
		},
	}
	c.Flags().StringVar(&at, "at", "", "also show what the device held at this instant (RFC 3339)")
	pf.add(c)
	g.addJSON(c)
	return c
}

// remoteHistory prints a history the server answered, writing its proofs if asked; mark is a certificate
// serial as the operator typed it, marked in the server's spelling.
func remoteHistory(g *globals, pf *proofFlags, h *client.History, mark string) error {
	out, err := viewOf[api.History](h)
	if err != nil {
		return err
	}
	if mark != "" {
		for _, c := range out.Certificates {
			if strings.EqualFold(strings.TrimLeft(c.Serial, "0"), strings.TrimLeft(mark, "0")) {
				mark = c.Serial
			}
		}
	}
	if pf.dir != "" {
		if len(out.Proofs) != len(out.Events) {
			return fmt.Errorf("the server answered %d proofs for %d events", len(out.Proofs), len(out.Events))
		}
		if err := pf.write(g, out.Proofs); err != nil {
			return err
		}
	}
	return printHistory(g, out, mark)
}

// printHistory prints h; mark names a certificate serial whose lines are marked.
func printHistory(g *globals, h api.History, mark string) error {
	if g.json {
		return g.printJSON(h)
	}
	w := g.env.Stdout
	d := h.Device
	fmt.Fprintf(w, "device %s of %s/%s: %s", d.Serial, d.Environment, d.ProductLine, d.State)
	if d.Station != "" {
		fmt.Fprintf(w, ", station %s", d.Station)
	}
	if d.Site != "" {
		fmt.Fprintf(w, ", site %s", d.Site)
	}
	if d.HardwareSerial != "" {
		fmt.Fprintf(w, ", hardware %s", d.HardwareSerial)
	}
	fmt.Fprintln(w)
	concerns := func(e api.Event) bool {
		return mark != "" && (e.Subject == mark || e.Details["serial"] == mark || e.Details["superseded"] == mark || e.Details["certificate"] == mark || e.Details["owner"] == mark)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nEVENT\tTIME\tACTOR\tACTION\tOUTCOME\tSUBJECT\tDETAILS")
	for _, e := range h.Events {
		seq := fmt.Sprint(e.Seq)
		if concerns(e) {
			seq = "*" + seq
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", seq, e.Time.Format(time.RFC3339), e.Actor, e.Action, e.Outcome, e.Subject, formatDetails(e.Details))
	}
	fmt.Fprintln(tw, "\nCERTIFICATE\tISSUER\tNOT AFTER\tISSUED\tENDED\tREVOKED")
	for _, c := range h.Certificates {
		serial := c.Serial
		if serial == mark {
			serial = "*" + serial
		}
		ended, revoked := "-", "-"
		if c.EndedEvent != 0 {
			ended = fmt.Sprintf("%s at event %d", c.EndedBy, c.EndedEvent)
		}
		if c.RevokedEvent != 0 {
			revoked = fmt.Sprintf("%s at event %d", c.RevocationReason, c.RevokedEvent)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (event %d)\t%s\t%s\n", serial, c.Issuer, c.NotAfter.Format(time.DateOnly), c.IssuedAt.Format(time.RFC3339), c.IssuedEvent, ended, revoked)
	}
	fmt.Fprintln(tw, "\nKEY\tSINCE\tUNTIL")
	for _, k := range h.Keys {
		until := "-"
		if k.UntilEvent != 0 {
			until = fmt.Sprintf("%s at event %d", k.EndedBy, k.UntilEvent)
		}
		fmt.Fprintf(tw, "%s\tevent %d\t%s\n", k.URI, k.SinceEvent, until)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if a := h.At; a != nil {
		fmt.Fprintf(w, "\nat %s (after event %d): device %s\n", a.Time.Format(time.RFC3339Nano), a.AsOfEvent, a.State)
		for _, c := range a.Certificates {
			state := "not held"
			switch {
			case c.Valid:
				state = "held, valid"
			case c.Held && c.Revoked:
				state = "held, revoked (" + c.RevocationReason + ")"
			case c.Held:
				state = "held, outside its validity period"
			case c.Revoked:
				state = "not held, revoked (" + c.RevocationReason + ")"
			}
			fmt.Fprintf(w, "  certificate %s: %s\n", c.Serial, state)
		}
		for _, k := range a.Keys {
			state := "not held"
			if k.Held {
				state = "held"
			}
			fmt.Fprintf(w, "  key %s: %s\n", k.URI, state)
		}
		if len(a.Certificates) == 0 {
			fmt.Fprintln(w, "  nothing: the device had no certificate yet")
		}
	}
	return nil
}
