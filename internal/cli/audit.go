package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/auditproof"
)

func auditCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "The audit log (a Merkle tree with signed checkpoints): list, verify, checkpoint, prove, check-proof, export"}
	c.AddCommand(auditListCmd(g), auditVerifyCmd(g), auditCheckpointCmd(g), auditPubkeyCmd(g), auditProveCmd(g), auditCheckProofCmd(g))
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
	var checkpoint string
	c := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the audit log and check it against its checkpoints and the tables; exit 8 naming the first disagreement",
		Long: `Recompute the audit log: every event's chained hash, the Merkle tree (RFC 9162), every stored signed
checkpoint (signature, and the root of the tree at its size), and the certificates, CAs, keys, devices and
stations tables against the state the events recorded. With --checkpoint FILE, also prove with a consistency
proof that today's log extends a checkpoint saved elsewhere ('keyward audit checkpoint --out', or one served
at /audit/checkpoint): a truncated, deleted or rewritten log fails even when every hash in it was recomputed.

Exit 8 names the first failure; exit 3 means FILE is not a checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var opts ra.AuditVerifyOptions
			if checkpoint != "" {
				b, err := readFileLimited(checkpoint)
				if err != nil {
					return err
				}
				opts.Checkpoint = b
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			rep, err := n.RA.VerifyAudit(cmd.Context(), principal(), opts)
			if g.json {
				// The report's fields beside "ok" and "events", the names this output always had.
				res := map[string]any{"ok": err == nil, "events": int64(0)}
				if rep != nil {
					b, _ := json.Marshal(rep)
					_ = json.Unmarshal(b, &res)
				}
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
				fmt.Fprintf(g.env.Stdout, "audit chain intact: %d events, Merkle root %s; %d stored checkpoints verified; %d table rows match the log\n",
					rep.Events, rep.Root, rep.Checkpoints, rep.Records)
				if rep.Extends > 0 || checkpoint != "" {
					fmt.Fprintf(g.env.Stdout, "the log extends the checkpoint of %d events in %s (consistency proof verified)\n", rep.Extends, checkpoint)
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&checkpoint, "checkpoint", "", "a signed checkpoint saved elsewhere that the log must extend")
	g.addJSON(c)
	return c
}

func auditCheckpointCmd(g *globals) *cobra.Command {
	var out, ks string
	c := &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign a checkpoint of the audit log now and print it (c2sp.org/tlog-checkpoint signed note)",
		Long: `Sign a checkpoint of the whole audit log (its size and RFC 9162 root hash, in the C2SP tlog-checkpoint
signed-note format) with the installation's Ed25519 audit-signing key, store it, and write it to stdout or
--out. The key is created on first need, in --keystore (default: the software keystore). If no event was
appended since the newest checkpoint, that one is written again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			var backend keystore.Keystore
			if ks != "" {
				if backend, err = n.Keystore(ks); err != nil {
					return usageError{err}
				}
			}
			cp, err := n.RA.Checkpoint(cmd.Context(), principal(), backend)
			if err != nil {
				return err
			}
			if out != "" {
				if err := writeFileAtomic(out, cp.Note, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(g.env.Stderr, "checkpoint of %d events written to %s\n", cp.Size, out)
				return nil
			}
			_, err = g.env.Stdout.Write(cp.Note)
			return err
		},
	}
	c.Flags().StringVar(&out, "out", "", "write the checkpoint to this file")
	c.Flags().StringVar(&ks, "keystore", "", `where to create the audit key on first need: "soft" or a pkcs11: URI`)
	return c
}

func auditPubkeyCmd(g *globals) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "pubkey",
		Short: "Print the audit log's verifier key (the audit.pub an inspector gives 'audit check-proof --key')",
		Long: `Print the note verifier key of the audit log's checkpoints, one line:

  <origin>+<key hash, 8 hex digits>+<base64 of 0x01 || Ed25519 public key>

(golang.org/x/mod/sumdb/note). Its name is the log's origin, the first line of every checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			vkey, err := n.RA.AuditVerifierKey(cmd.Context(), principal())
			if err != nil {
				return err
			}
			if out != "" {
				return writeFileAtomic(out, []byte(vkey+"\n"), 0o644)
			}
			_, err = fmt.Fprintln(g.env.Stdout, vkey)
			return err
		},
	}
	c.Flags().StringVar(&out, "out", "", "write the key to this file")
	return c
}

func auditProveCmd(g *globals) *cobra.Command {
	var (
		seq             int64
		checkpoint, out string
	)
	c := &cobra.Command{
		Use:   "prove",
		Short: "Write the inclusion proof of one audit event (RFC 9162), to check offline with 'audit check-proof'",
		Long: `Write the inclusion proof of event --seq in the tree of --checkpoint (default: the newest checkpoint,
made now if events were appended since). The proof file is JSON (format keyward-audit-inclusion/1): the
event, its leaf index, the tree size, the proof hashes and the signed checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if seq < 1 {
				return usageError{fmt.Errorf("--seq is required: the number of the event to prove (from 1)")}
			}
			var cp []byte
			if checkpoint != "" {
				var err error
				if cp, err = readFileLimited(checkpoint); err != nil {
					return err
				}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			p, err := n.RA.ProveEvent(cmd.Context(), principal(), seq, cp)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if out == "" {
				_, err = g.env.Stdout.Write(b)
				return err
			}
			if err := writeFileAtomic(out, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stderr, "inclusion proof of event %d in the checkpoint of %d events written to %s\n", seq, p.TreeSize, out)
			return nil
		},
	}
	c.Flags().Int64Var(&seq, "seq", 0, "the event to prove")
	c.Flags().StringVar(&checkpoint, "checkpoint", "", "prove against this signed checkpoint")
	c.Flags().StringVar(&out, "out", "", "write the proof to this file")
	return c
}

// auditCheckProofCmd checks a proof with pkg/auditproof alone: no data directory, no database.
func auditCheckProofCmd(g *globals) *cobra.Command {
	var proofFile, checkpoint, keyFile string
	c := &cobra.Command{
		Use:   "check-proof",
		Short: "Check an inclusion proof offline, with no database: exit 8 if it does not verify, 3 if a file is malformed",
		Long: `Check that the event in --proof is in the audit log whose checkpoint is --checkpoint (default: the one
the proof carries), signed by the key in --key (the audit.pub written by 'keyward audit pubkey'). Needs no
data directory: an inspector runs it on any machine.

Exit 0: the proof verifies. Exit 8: it does not (another key, another log, a proof or event that was
changed). Exit 3: a file is not a proof, a checkpoint or a key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if proofFile == "" || keyFile == "" {
				return usageError{fmt.Errorf("--proof and --key are required")}
			}
			pb, err := readFileLimited(proofFile)
			if err != nil {
				return err
			}
			kb, err := readFileLimited(keyFile)
			if err != nil {
				return err
			}
			p, err := auditproof.ParseInclusionProof(pb)
			if err != nil {
				return proofError(proofFile, err)
			}
			cb := []byte(p.Checkpoint)
			cpName := proofFile + " (its checkpoint)"
			if checkpoint != "" {
				if cb, err = readFileLimited(checkpoint); err != nil {
					return err
				}
				cpName = checkpoint
			} else if len(cb) == 0 {
				return usageError{fmt.Errorf("%s carries no checkpoint: give one with --checkpoint", proofFile)}
			}
			cp, err := auditproof.Open(cb, string(kb))
			if err != nil {
				return proofError(cpName, err)
			}
			if err := p.Verify(cp); err != nil {
				return proofError(proofFile, err)
			}
			if g.json {
				return g.printJSON(map[string]any{"ok": true, "origin": cp.Origin, "tree_size": cp.Size, "event": p.Event})
			}
			e := p.Event
			fmt.Fprintf(g.env.Stdout, "event %d (%s %s by %s at %s, %s) is in audit log %s of %d events\n",
				e.Seq, e.Action, e.Subject, e.Actor, e.Time.Format(time.RFC3339), e.Outcome, cp.Origin, cp.Size)
			return nil
		},
	}
	c.Flags().StringVar(&proofFile, "proof", "", "the proof file written by 'keyward audit prove'")
	c.Flags().StringVar(&checkpoint, "checkpoint", "", "the signed checkpoint to check against (default: the one in the proof)")
	c.Flags().StringVar(&keyFile, "key", "", "the audit log's verifier key (audit.pub)")
	g.addJSON(c)
	return c
}

// proofError maps an auditproof error about file: malformed input is a bad request (exit 3), anything else a
// failed verification (exit 8).
func proofError(file string, err error) error {
	if errors.Is(err, auditproof.ErrMalformed) {
		return ra.Wrap(ra.KindBadRequest, fmt.Errorf("%s: %w", file, err))
	}
	return ra.Wrap(ra.KindIntegrity, fmt.Errorf("%s: %w", file, err))
}
