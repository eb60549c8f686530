package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// The ceremony flow for every CA below a root: 'ca csr' on the server, 'ca ceremony sign' on the offline
// ceremony machine, 'ca import' on the server (internal/ra/ceremony.go).

func caCSRCmd(g *globals) *cobra.Command {
	var spec ra.CARequestSpec
	var ks, out, validFor string
	c := &cobra.Command{
		Use:   "csr",
		Short: "Generate a CA key and write its request for a root ceremony (issuing, station, site or ocsp-signer CA)",
		Long: `Generate the key of a CA below a root in --keystore (for a site CA, the site's PKCS#11 token), record it
pending activation, and write the request the ceremony signs: the PKCS #10 request and, bound to it by hash, the
kind of CA and every constraint the ceremony applies (a site CA's quota and issuing window). A role that is
filled already gets its next generation: that is how an issuing, station or OCSP-responder CA is rolled over
under an offline root. Then 'keyward ca ceremony sign' on the ceremony machine, and 'keyward ca import' here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{fmt.Errorf("--out is required")}
			}
			if validFor != "" {
				d, err := hierarchy.ParseDuration(validFor)
				if err != nil {
					return usageError{fmt.Errorf("--valid-for: %w", err)}
				}
				spec.ValidFor = d
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if spec.Keys, err = n.Keystore(ks); err != nil {
				return err
			}
			f, err := n.RA.RequestCA(cmd.Context(), principal(), spec)
			if err != nil {
				return err
			}
			if err := writeFileAtomic(out, f.PEM, 0o644); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(f.Info)
			}
			fmt.Fprintf(g.env.Stdout, "requested %s CA %s (generation %d", f.Info.Kind, f.Info.CA, f.Info.Generation)
			if f.Info.Replaces != "" {
				fmt.Fprintf(g.env.Stdout, ", to replace %s", f.Info.Replaces)
			}
			fmt.Fprintf(g.env.Stdout, "): request written to %s; sign it in a ceremony with 'keyward ca ceremony sign'\n", out)
			return nil
		},
	}
	c.Flags().StringVar(&spec.Environment, "env", "production", "environment")
	c.Flags().StringVar(&spec.Kind, "kind", store.CAKindIssuing, "kind of CA: "+strings.Join(ra.CeremonyKinds, ", "))
	c.Flags().StringVar(&spec.ProductLine, "product", "", "product line (issuing and site CAs)")
	c.Flags().StringVar(&spec.Site, "site", "", "site name (site CAs)")
	c.Flags().Int64Var(&spec.Quota, "quota", 0, "certificates the site CA may issue in total (site CAs)")
	c.Flags().StringVar(&validFor, "valid-for", "", "the site CA's issuing window, at most 366d (site CAs)")
	c.Flags().StringVar(&ks, "keystore", "soft", `where the CA key is generated: "soft" or a PKCS#11 URI`)
	c.Flags().StringVar(&out, "out", "", "request output file (PEM)")
	g.addJSON(c)
	return c
}

func caImportCmd(g *globals) *cobra.Command {
	var req ra.ImportRequest
	var certFile, rootFile string
	var linkFiles []string
	c := &cobra.Command{
		Use:   "import",
		Short: "Install a ceremony-signed CA certificate: it activates the pending request whose key it certifies",
		Long: `Find the pending request ('keyward ca csr') whose key the certificate certifies, check the certificate's chain to
--root, its kind and its constraints, and activate the CA. A CA that replaces an earlier generation takes over
issuance at once, on every node; the earlier one keeps signing CRLs and OCSP answers for what it issued.
--product and --kind are not needed; given, they are checked against the request.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if certFile == "" || rootFile == "" {
				return usageError{fmt.Errorf("--cert and --root are required")}
			}
			raw, err := readFileLimited(certFile)
			if err != nil {
				return err
			}
			if req.CertDER, err = readCert(certFile); err != nil {
				return err
			}
			if req.RootDER, err = readCert(rootFile); err != nil {
				return err
			}
			req.Transcript = ra.TranscriptOf(raw)
			for _, f := range linkFiles {
				der, err := readCert(f)
				if err != nil {
					return err
				}
				req.Links = append(req.Links, der)
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			row, err := n.RA.ImportCA(cmd.Context(), principal(), req)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(api.NewCA(row, false))
			}
			fmt.Fprintf(g.env.Stdout, "imported %s CA %s (generation %d) under root %s\n", row.Kind, row.ID, row.Generation, row.ParentID)
			return nil
		},
	}
	c.Flags().StringVar(&req.Environment, "env", "production", "environment")
	c.Flags().StringVar(&req.ProductLine, "product", "", "product line (optional: checked against the request)")
	c.Flags().StringVar(&req.Kind, "kind", "", "kind of CA (optional: checked against the request)")
	c.Flags().StringVar(&certFile, "cert", "", "CA certificate from 'keyward ca ceremony sign' (PEM or DER)")
	c.Flags().StringVar(&rootFile, "root", "", "root certificate from 'keyward ca ceremony root' (PEM or DER)")
	c.Flags().StringArrayVar(&linkFiles, "link", nil, "a link certificate from 'keyward ca ceremony root-rollover' (new-with-old.pem, old-with-new.pem), when --root is a new root")
	g.addJSON(c)
	return c
}

func caCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel CA-ID",
		Short: "Abandon a pending CA request: its key is destroyed, and the CA can be requested again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if err := n.RA.CancelCARequest(cmd.Context(), principal(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "cancelled the request for %s; its key is destroyed\n", args[0])
			return nil
		},
	}
}

func caCeremonyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "ceremony",
		Short: "Offline root key ceremony: create a root, sign CA requests, print the transcript",
		Long: `Commands for the offline ceremony machine. They work on a ceremony workspace (--dir), never on a server's
data directory: the workspace holds the root key (software keystore sealed under the ceremony passphrase, or a
PKCS#11 token) and its own hash-chained transcript, to which each command appends what it read, what it wrote
(by SHA-256) and who witnessed it. A production ceremony needs at least two witnesses (--witness, repeated); once
witnesses are enrolled in the workspace ('ca ceremony witness add'), each names themselves with their own
credential (--witness NAME:TOKENFILE). A running server never loads a root key of an offline environment.`,
	}
	c.AddCommand(ceremonyRootCmd(g), ceremonySignCmd(g), ceremonyCRLCmd(g), ceremonyRootRolloverCmd(g), ceremonyLogCmd(g), ceremonyWitnessCmd(g))
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

// writeCeremonyOutput writes what a ceremony signed as PEM, after the line that names the transcript event
// recording it (PEM readers skip text before a block).
func writeCeremonyOutput(path, typ string, der []byte, head ra.TranscriptHead, env string) error {
	return writeFileAtomic(path, append([]byte(head.Line(env)), pemBytes(typ, der)...), 0o644)
}

func addWitnessFlag(c *cobra.Command, w *[]string) {
	c.Flags().StringArrayVar(w, "witness", nil, "a custodian present at the ceremony, NAME or NAME:TOKENFILE with their witness credential (repeat; production needs at least two, each with a credential once the workspace has enrolled witnesses)")
}

// withWitnesses fills t's witnesses from --witness values: NAME, or NAME:TOKENFILE for a witness who proves
// their presence with their own credential ('ca ceremony witness add'). Names hold no colon.
func withWitnesses(t *ra.Transcript, values []string) error {
	for _, v := range values {
		name, file, ok := strings.Cut(v, ":")
		t.Witnesses = append(t.Witnesses, name)
		if !ok {
			continue
		}
		tok, err := readTokenFile(file)
		if err != nil {
			return fmt.Errorf("--witness %s: %w", name, err)
		}
		if t.WitnessTokens == nil {
			t.WitnessTokens = map[string]string{}
		}
		t.WitnessTokens[name] = tok
	}
	return nil
}

// witnessNames returns the names of --witness values, without their credential files.
func witnessNames(values []string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i], _, _ = strings.Cut(v, ":")
	}
	return out
}

func ceremonyRootCmd(g *globals) *cobra.Command {
	var dir, env, alg, validity, ks, out string
	var witnesses []string
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
			t := &ra.Transcript{Command: "ca ceremony root"}
			if err := withWitnesses(t, witnesses); err != nil {
				return err
			}
			ca, head, err := n.RA.CeremonyRoot(cmd.Context(), principal(), env, backend, a, v, t)
			if err != nil {
				return err
			}
			if err := writeCeremonyOutput(out, "CERTIFICATE", ca.CertDER, head, env); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "created root %s (key %s), certificate written to %s; transcript event %d\n", ca.ID, ca.KeyURI, out, head.Seq)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "ceremony workspace directory")
	c.Flags().StringVar(&env, "env", "production", "environment")
	c.Flags().StringVar(&alg, "algorithm", string(keystore.ECDSAP384), "root key algorithm")
	c.Flags().StringVar(&validity, "validity", "25y", "root validity")
	c.Flags().StringVar(&ks, "keystore", "soft", `where the root key is generated: "soft" (sealed in the workspace) or a PKCS#11 URI`)
	c.Flags().StringVar(&out, "out", "", "root certificate output file (PEM)")
	addWitnessFlag(c, &witnesses)
	return c
}

func ceremonySignCmd(g *globals) *cobra.Command {
	var dir, env, csrFile, validity, out string
	var witnesses []string
	c := &cobra.Command{
		Use:   "sign",
		Short: "Sign a CA request (from 'keyward ca csr') with the workspace's root, after printing what it will sign",
		Long: `Read a request from 'keyward ca csr', print the certificate the hierarchy's rules give its kind (subject, key,
validity, path length, extended key usage, name constraints, a site CA's quota and window), and have the
workspace's root sign it: an issuing CA; a station CA, restricted to TLS client certificates; a site CA, name-
constrained; or the root's OCSP responder (id-kp-OCSPSigning, id-pkix-ocsp-nocheck), renewed in each CRL
ceremony. The certificate is written after a line naming the transcript event that records it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || out == "" || csrFile == "" {
				return usageError{fmt.Errorf("--dir, --csr and --out are required")}
			}
			var v time.Duration
			if validity != "" {
				d, err := hierarchy.ParseDuration(validity)
				if err != nil {
					return usageError{fmt.Errorf("--validity: %w", err)}
				}
				v = d
			}
			file, err := readFileLimited(csrFile)
			if err != nil {
				return err
			}
			n, err := ceremonyNode(cmd, g, dir)
			if err != nil {
				return err
			}
			defer n.Close()
			plan, err := n.RA.PlanCeremony(cmd.Context(), principal(), env, file, v)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.env.Stdout, "about to sign:")
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			for _, kv := range plan.Describe() {
				fmt.Fprintf(w, "  %s:\t%s\n", kv[0], kv[1])
			}
			fmt.Fprintf(w, "  witnesses:\t%s\n", dash(strings.Join(witnessNames(witnesses), ", ")))
			if err := w.Flush(); err != nil {
				return err
			}
			t := &ra.Transcript{Command: "ca ceremony sign", Inputs: map[string][]byte{"request": file}}
			if err := withWitnesses(t, witnesses); err != nil {
				return err
			}
			der, head, err := n.RA.SignCeremony(cmd.Context(), principal(), plan, t)
			if err != nil {
				return err
			}
			if err := writeCeremonyOutput(out, "CERTIFICATE", der, head, env); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "signed %s, written to %s; transcript event %d\n", plan.Info.CA, out, head.Seq)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "ceremony workspace directory")
	c.Flags().StringVar(&env, "env", "production", "environment")
	c.Flags().StringVar(&csrFile, "csr", "", "CA request from 'keyward ca csr' (PEM)")
	c.Flags().StringVar(&validity, "validity", "", "certificate validity, if not the request's (issuing CAs: it must cover the longest certificate they issue; implant identities live 15 years)")
	c.Flags().StringVar(&out, "out", "", "certificate output file (PEM)")
	addWitnessFlag(c, &witnesses)
	return c
}

// ceremonyEntry is one transcript entry as 'ca ceremony log --json' prints it.
type ceremonyEntry struct {
	api.Event
	Hash string `json:"hash"`
}

func ceremonyLogCmd(g *globals) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "log",
		Short: "Print a ceremony workspace's transcript and verify its hash chain (exit 8 if it was altered)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageError{fmt.Errorf("--dir is required")}
			}
			n, err := ceremonyNode(cmd, g, dir)
			if err != nil {
				return err
			}
			defer n.Close()
			var entries []ceremonyEntry
			werr := n.Store.WalkAudit(cmd.Context(), 0, func(e *audit.Event) error {
				entries = append(entries, ceremonyEntry{Event: api.NewEvent(e), Hash: fmt.Sprintf("%x", e.Hash)})
				return nil
			})
			count, verr := store.VerifyAudit(cmd.Context(), n.Store)
			if werr != nil {
				return werr
			}
			if g.json {
				if entries == nil {
					entries = []ceremonyEntry{}
				}
				res := map[string]any{"intact": verr == nil, "events": count, "entries": entries}
				if verr != nil {
					res["error"] = verr.Error()
				}
				if err := g.printJSON(res); err != nil {
					return err
				}
				return verr
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SEQ\tTIME\tACTOR\tACTION\tOUTCOME\tSUBJECT\tDETAILS")
			for _, e := range entries {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339), e.Actor, e.Action, e.Outcome, e.Subject, formatDetails(e.Details))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if verr != nil {
				return verr
			}
			head := "-"
			if len(entries) > 0 {
				head = entries[len(entries)-1].Hash
			}
			fmt.Fprintf(g.env.Stdout, "transcript intact: %d events, head %s\n", count, head)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "ceremony workspace directory")
	g.addJSON(c)
	return c
}

func ceremonyRootRolloverCmd(g *globals) *cobra.Command {
	var dir, env, alg, validity, updateFor, ks, out string
	var witnesses []string
	c := &cobra.Command{
		Use:   "root-rollover",
		Short: "Make an environment's next root, its link certificates and the trust-anchor update devices apply",
		Long: `Make the next root of --env in this workspace: a new key (--keystore) and self-signed certificate, the two link
certificates of RFC 4210 section 4.4 (new-with-old.pem: the new root's key certified by the old root, so that
relying parties holding only the old root reach CAs under the new one; old-with-new.pem: the other way round),
and a trust-anchor update (anchors-update.cbor) listing both roots, signed by both, which devices apply with
'keyward trust apply' (pkg/trust). anchors.pem is the same anchor set for devices made from now on. The old root
is superseded: it certifies no new CA and keeps signing its CRLs ('keyward ca ceremony crl'). Issuing CAs move
under the new root as their next generation: 'keyward ca csr', 'keyward ca ceremony sign', then
'keyward ca import --root root.pem --link new-with-old.pem' on the server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || out == "" {
				return usageError{errors.New("--dir and --out are required")}
			}
			spec := ra.RootRolloverSpec{Environment: env}
			var err error
			if alg != "" {
				if spec.Algorithm, err = keystore.ParseAlgorithm(alg); err != nil {
					return usageError{err}
				}
			}
			if spec.Validity, err = hierarchy.ParseDuration(validity); err != nil {
				return usageError{fmt.Errorf("--validity: %w", err)}
			}
			if spec.UpdateValidity, err = hierarchy.ParseDuration(updateFor); err != nil {
				return usageError{fmt.Errorf("--update-valid-for: %w", err)}
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			n, err := ceremonyNode(cmd, g, dir)
			if err != nil {
				return err
			}
			defer n.Close()
			if spec.Keys, err = n.Keystore(ks); err != nil {
				return err
			}
			t := &ra.Transcript{Command: "ca ceremony root-rollover"}
			if err := withWitnesses(t, witnesses); err != nil {
				return err
			}
			res, head, err := n.RA.CeremonyRootRollover(cmd.Context(), principal(), spec, t)
			if err != nil {
				return err
			}
			anchors, err := res.Anchors.MarshalPEM()
			if err != nil {
				return err
			}
			line := []byte(head.Line(env))
			files := []struct {
				name string
				data []byte
			}{
				{"root.pem", append(line, pemBytes("CERTIFICATE", res.New.CertDER)...)},
				{"new-with-old.pem", append(line, pemBytes("CERTIFICATE", res.NewWithOld)...)},
				{"old-with-new.pem", append(line, pemBytes("CERTIFICATE", res.OldWithNew)...)},
				{"anchors-update.cbor", res.Update},
				{"anchors.pem", anchors},
			}
			for _, f := range files {
				if err := writeFileAtomic(filepath.Join(out, f.name), f.data, 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.env.Stdout, "rolled %s over to %s (%s); wrote root.pem, new-with-old.pem, old-with-new.pem, anchors-update.cbor (trust version %d) and anchors.pem to %s; transcript event %d\n",
				res.Old.ID, res.New.ID, res.New.Subject, res.Anchors.Version, out, head.Seq)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "ceremony workspace directory")
	c.Flags().StringVar(&env, "env", "production", "environment")
	c.Flags().StringVar(&alg, "algorithm", "", "new root key algorithm (default: the old root's)")
	c.Flags().StringVar(&validity, "validity", "25y", "new root validity")
	c.Flags().StringVar(&updateFor, "update-valid-for", "2y", "how long devices may apply the trust-anchor update")
	c.Flags().StringVar(&ks, "keystore", "soft", `where the new root key is generated: "soft" (sealed in the workspace) or a PKCS#11 URI`)
	c.Flags().StringVar(&out, "out", "", "output directory")
	addWitnessFlag(c, &witnesses)
	return c
}

func ceremonyWitnessCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "witness",
		Short: "Enrol and revoke the credentials by which ceremony witnesses name themselves",
		Long: `A witness credential is a token made in the ceremony workspace, held by one custodian (on removable media
of their own), and presented at each ceremony as --witness NAME:TOKENFILE. Once a workspace has an enrolled
witness, every witness of its production ceremonies must present their own credential, so that two names on
a transcript are two people who each proved their presence; dev and staging ceremonies accept plain names.
A witness credential opens no API route.`,
	}
	var dir, name, out, expires, reason string
	add := &cobra.Command{
		Use:   "add",
		Short: "Enrol a witness: write their credential to --out (mode 0600); only its hash is kept",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || name == "" || out == "" {
				return usageError{errors.New("--dir, --name and --out are required")}
			}
			req, err := parseExpires(expires)
			if err != nil {
				return err
			}
			req.Name = name
			n, err := ceremonyNode(cmd, g, dir)
			if err != nil {
				return err
			}
			defer n.Close()
			tok, err := n.RA.EnrollWitness(cmd.Context(), principal(), req)
			if err != nil {
				return err
			}
			if err := writeFileAtomic(out, []byte(tok+"\n"), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "enrolled witness %q; credential written to %s: give it to them, and keep no copy\n", name, out)
			return nil
		},
	}
	add.Flags().StringVar(&dir, "dir", "", "ceremony workspace directory")
	add.Flags().StringVar(&name, "name", "", "the witness's name, as they give it with --witness (no colon)")
	add.Flags().StringVar(&out, "out", "", "file to write the credential to")
	add.Flags().StringVar(&expires, "expires", "1y", `validity ("1y", "400d"), or "never"`)
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a witness's credential (lost media, a custodian who left)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" || strings.TrimSpace(reason) == "" {
				return usageError{errors.New("--dir and --reason are required")}
			}
			n, err := ceremonyNode(cmd, g, dir)
			if err != nil {
				return err
			}
			defer n.Close()
			t, err := n.RA.RevokeToken(cmd.Context(), principal(), args[0], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "revoked the credential of %s %q\n", t.Role, t.Name)
			return nil
		},
	}
	revoke.Flags().StringVar(&dir, "dir", "", "ceremony workspace directory")
	revoke.Flags().StringVar(&reason, "reason", "", "why the credential is revoked")
	c.AddCommand(add, revoke)
	return c
}
