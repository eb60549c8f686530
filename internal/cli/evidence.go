package cli

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/evidence"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/store"
)

// reportsDir is where the data directory keeps reports: probe and fleet-scan reports, and the checkpoint of the
// last evidence pack of each environment.
const reportsDir = "reports"

func evidenceCmd(g *globals) *cobra.Command {
	var env, product, out, previous string
	c := &cobra.Command{
		Use:   "evidence --env ENV [--product PRODUCT] --out DIR",
		Short: "Write the evidence pack of a premarket cybersecurity submission (CBOM, key glossary, CP/CPS, TLS, revocation, audit proof); 'evidence verify DIR' checks one",
		Long: `Write a new directory DIR holding what a premarket (FDA) cybersecurity reviewer reads, regenerated from
this installation:

  cbom.json                 CycloneDX 1.6 cryptographic bill of materials: every algorithm, protocol (TLS as
                            the listener negotiates it, EST, OCSP), CA and signing key by URI and purpose
                            (never key material), certificate profile and CA certificate
  key-glossary.html/.json   every key: purpose, algorithm, custody, state, rotation and destruction dates
  certificate-policy.html   certificate policy / practice statement in the RFC 3647 outline, from keyward.yaml
                            and the profiles (the sections Keyward cannot fill say so)
  tls.html/.json            the TLS configuration statement, probed from the listener's configuration
  revocation.html/.json     the revocation strategy per device class (profile)
  reports/                  the latest 'probe tls' report per target and the latest 'fleet scan', verbatim
  audit/                    the audit log's signed checkpoint, and a consistency proof from the previous
                            pack's checkpoint (recorded in DATA/reports/evidence, or --previous DIR)
  index.html                links all of it; reads offline
  manifest.json             SHA-256 of every file, signed with the audit-signing key

An existing DIR is refused (exit 6) and nothing is written. The generation is audited (evidence.generate).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if env == "" || out == "" {
				return usageError{errors.New("--env and --out are required (or 'keyward evidence verify DIR')")}
			}
			if _, err := os.Lstat(out); err == nil {
				return &exitError{code: ExitConflict, err: fmt.Errorf("%s: %w: choose another --out (a pack is never overwritten); nothing was written", out, evidence.ErrExists)}
			}
			var prev []byte
			if previous != "" {
				var err error
				if prev, err = readFileLimited(filepath.Join(previous, filepath.FromSlash(evidence.PathCheckpoint))); err != nil {
					return usageError{fmt.Errorf("--previous %s: %v: give the directory of an earlier evidence pack", previous, err)}
				}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			return generateEvidence(cmd, g, n, env, product, out, prev)
		},
	}
	c.Flags().StringVar(&env, "env", "", "the environment the pack is about")
	c.Flags().StringVar(&product, "product", "", "narrow the pack to one product line")
	c.Flags().StringVar(&out, "out", "", "the pack's directory (must not exist)")
	c.Flags().StringVar(&previous, "previous", "", "an earlier pack whose checkpoint the consistency proof starts from (default: the last pack recorded for --env)")
	g.addJSON(c)
	c.AddCommand(evidenceVerifyCmd(g))
	return c
}

// lastCheckpointFile is where the checkpoint of env's last evidence pack is recorded.
func lastCheckpointFile(dataDir, env string) string {
	return filepath.Join(dataDir, reportsDir, "evidence", env+"-last-checkpoint")
}

func generateEvidence(cmd *cobra.Command, g *globals, n *node.Node, env, product, out string, prev []byte) error {
	ctx := cmd.Context()
	p := principal()
	cp, err := n.RA.Checkpoint(ctx, p, nil)
	if err != nil {
		return err
	}
	vkey, err := n.RA.AuditVerifierKey(ctx, p)
	if err != nil {
		return err
	}
	last := lastCheckpointFile(n.Dir, env)
	field := "previous"
	if prev == nil {
		b, err := os.ReadFile(last)
		switch {
		case err == nil:
			prev, field = b, "last-checkpoint"
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	in := evidence.Input{Env: env, Product: product, Now: n.Now().UTC(), Version: buildVersion().Version, Config: n.Config, Profiles: n.Profiles,
		Checkpoint: cp.Note, VerifierKey: vkey, ReportsDir: filepath.Join(n.Dir, reportsDir),
		TLS:         server.TLSConfig(&tls.Certificate{}),
		CertIssuers: map[string]string{}, StationEnvs: map[string]string{}}
	if prev != nil {
		if in.Consistency, err = n.RA.ProveConsistency(ctx, p, field, prev, cp); err != nil {
			if field == "last-checkpoint" {
				return fmt.Errorf("%s: %w", last, err)
			}
			return err
		}
	}
	if in.CAs, err = n.Store.ListCAs(ctx); err != nil {
		return err
	}
	if in.Keys, err = n.Store.ListKeys(ctx); err != nil {
		return err
	}
	for _, c := range in.CAs {
		if c.Environment != env || (product != "" && c.ProductLine != "" && c.ProductLine != product) {
			continue
		}
		certs, err := n.Store.ListCertificates(ctx, store.CertFilter{IssuerID: c.ID})
		if err != nil {
			return err
		}
		for _, cert := range certs {
			in.CertIssuers[cert.Serial] = c.ID
		}
	}
	stations, err := n.Store.ListStations(ctx)
	if err != nil {
		return err
	}
	for _, s := range stations {
		in.StationEnvs[s.ID] = s.Environment
	}
	files, err := evidence.Build(ctx, in)
	var ie *evidence.InputError
	if errors.As(err, &ie) {
		return ra.FieldErrorf(ra.KindNotFound, map[string]string{"env": "environment", "product": "product_line"}[ie.Field], "%v", ie.Err)
	} else if err != nil {
		return err
	}
	m := evidence.NewManifest(env, product, in.Now, files)
	signed, err := n.RA.SignEvidence(ctx, p, m.NoteText())
	if err != nil {
		return err
	}
	m.Signature = string(signed)
	mb, err := m.Marshal()
	if err != nil {
		return err
	}
	sum := sha256.Sum256(mb)
	subject := env
	if product != "" {
		subject += "/" + product
	}
	details := map[string]string{"manifest_sha256": hex.EncodeToString(sum[:]), "files": strconv.Itoa(len(files) + 1),
		"checkpoint_size": strconv.FormatInt(cp.Size, 10), "out": out}
	if in.Consistency != nil {
		details["extends"] = strconv.FormatUint(in.Consistency.OldSize, 10)
	}
	if err := evidence.Write(out, files, mb); err != nil {
		if errors.Is(err, evidence.ErrExists) {
			return &exitError{code: ExitConflict, err: fmt.Errorf("%w; nothing was written", err)}
		}
		return err
	}
	if err := n.RA.RecordEvidence(ctx, p, subject, in.Now, details); err != nil {
		_ = os.RemoveAll(out) // an unaudited pack is not left behind
		return err
	}
	if err := os.MkdirAll(filepath.Dir(last), 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(last, cp.Note, 0o600); err != nil {
		return err
	}
	if g.json {
		res := map[string]any{"out": out, "environment": env, "files": len(files) + 1, "manifest_sha256": details["manifest_sha256"], "checkpoint_size": cp.Size}
		if product != "" {
			res["product_line"] = product
		}
		if in.Consistency != nil {
			res["extends"] = in.Consistency.OldSize
		}
		return g.printJSON(res)
	}
	fmt.Fprintf(g.env.Stdout, "evidence pack for %s written to %s: %d files, audit checkpoint of %d events", subject, out, len(files)+1, cp.Size)
	if in.Consistency != nil {
		fmt.Fprintf(g.env.Stdout, ", consistency proof from the checkpoint of %d events", in.Consistency.OldSize)
	}
	fmt.Fprintln(g.env.Stdout)
	return nil
}

func evidenceVerifyCmd(g *globals) *cobra.Command {
	var keyFile string
	c := &cobra.Command{
		Use:   "verify DIR",
		Short: "Check an evidence pack: every file's SHA-256 against the signed manifest, no file missing or added, the signatures and the consistency proof",
		Long: `Check the evidence pack in DIR: the manifest's signature by the audit-signing key, every file's SHA-256 and
size, that no listed file is missing and no file was added, the audit checkpoint's signature and the
consistency proof from the previous pack's checkpoint.

The key is the one you trust, never the pack's own audit/audit.pub (a pack must not vouch for itself):
--key FILE (the audit.pub written by 'keyward audit pubkey'), or else the audit key of the data directory
(--data), when run on the installation.

Exit 0: the pack is intact. Exit 8: a file was changed, is missing or was added, or a signature or proof
does not verify; the message names the first file, --json lists all.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return usageError{fmt.Errorf("%s is not an evidence pack directory", dir)}
			}
			var vkey string
			if keyFile != "" {
				b, err := readFileLimited(keyFile)
				if err != nil {
					return err
				}
				vkey = string(trimNewline(b))
			} else {
				n, err := g.open(cmd.Context())
				if errors.Is(err, node.ErrNotInitialised) {
					return usageError{fmt.Errorf("no --key and no data directory at %s: give --key audit.pub (from 'keyward audit pubkey')", g.data)}
				} else if err != nil {
					return err
				}
				vkey, err = n.RA.AuditVerifierKey(cmd.Context(), principal())
				_ = n.Close()
				if err != nil {
					return err
				}
			}
			res, err := evidence.Verify(dir, vkey)
			if res == nil && err != nil {
				return badInput(err)
			}
			if g.json {
				if jerr := g.printJSON(res); jerr != nil {
					return jerr
				}
			}
			if err != nil {
				return ra.Wrap(ra.KindIntegrity, fmt.Errorf("%s: %w", dir, err))
			}
			if !g.json {
				fmt.Fprintf(g.env.Stdout, "evidence pack %s intact: %d files match the manifest signed by the audit key", dir, res.Files)
				if res.Extends != nil {
					fmt.Fprintf(g.env.Stdout, "; the audit log of %d events extends the previous pack's checkpoint of %d (consistency proof verified)", res.Checkpoint, *res.Extends)
				}
				fmt.Fprintln(g.env.Stdout)
			}
			return nil
		},
	}
	c.Flags().StringVar(&keyFile, "key", "", "the audit log's verifier key (audit.pub); default: the data directory's audit key")
	g.addJSON(c)
	return c
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
