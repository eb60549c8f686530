package cli

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keyward/keyward/internal/factory"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/pkcs11"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/client"
)

// factoryCmd is 'keyward factory': offline manufacturing (site CAs, credential batches, injection).
func factoryCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "factory", Short: "Offline manufacturing: site CAs, pre-issued credential batches, injection, export and reconciliation"}
	c.AddCommand(factorySiteCACmd(g), factorySitePackageCmd(g), factoryServeCmd(g), factoryTransportKeyCmd(g), factoryBatchCmd(g), factoryInjectCmd(g), factoryExportCmd(g), factoryReconcileCmd(g))
	return c
}

// newFactory runs the factory's files and pipelines on n: its RA decides and records, its custodian signs.
func newFactory(n *node.Node) *factory.Factory {
	return &factory.Factory{RA: n.RA, CA: n.CA, Principal: principal()}
}

func factorySiteCACmd(g *globals) *cobra.Command {
	var env, product, site, validFor, ks, prof, certFile, rootFile string
	var quota int64
	c := &cobra.Command{
		Use:   "site-ca",
		Short: "Create a constrained issuing CA for one factory site (online root), or install one signed in a ceremony",
		Long: `Creates the site CA <env>/<product>/<site>: path length 0, name constraints that exclude every DNS name,
IP address, e-mail address and URI, the product line's serial pattern recorded as its subject rule, a quota of
certificates and an issuing window (--valid-for). Its key (purpose ca-signing) is generated in --keystore.

Under an offline root (production) the site CA is made in a ceremony: 'keyward ca csr --kind site --product P
--site S --quota N --valid-for D --keystore SITE-HSM', 'keyward ca ceremony sign' with the root, then this
command with --cert and --root (or 'keyward ca import') installs it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			window, err := hierarchy.ParseDuration(validFor)
			if err != nil {
				return usageError{fmt.Errorf("--valid-for: %w", err)}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			var s *ra.SiteCA
			if certFile != "" || rootFile != "" {
				if certFile == "" || rootFile == "" {
					return usageError{fmt.Errorf("--cert and --root go together")}
				}
				req := ra.ImportRequest{Environment: env, Kind: store.CAKindSite, ProductLine: product}
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
				row, err := n.RA.ImportCA(cmd.Context(), principal(), req)
				if err != nil {
					return err
				}
				if row.ID != ra.SiteCAID(env, product, site) {
					return fmt.Errorf("installed %s, which is not the site CA of --site %s", row.ID, site)
				}
				if s, err = n.RA.FactorySite(cmd.Context(), env, product, site); err != nil {
					return err
				}
			} else {
				keys, err := n.Keystore(ks)
				if err != nil {
					return err
				}
				s, err = n.RA.CreateSiteCA(cmd.Context(), principal(), ra.SiteCARequest{Environment: env, ProductLine: product, Site: site, Profile: prof, Quota: quota, ValidFor: window, Keys: keys})
				if err != nil {
					return err
				}
			}
			if g.json {
				return g.printJSON(map[string]any{"id": s.CA.ID, "subject": s.CA.Subject, "key": s.CA.KeyURI, "quota": s.Site.Quota,
					"issue_until": s.Site.IssueUntil, "not_after": s.CA.NotAfter, "cn_pattern": s.Site.CNPattern,
					"certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.CA.CertDER}))})
			}
			fmt.Fprintf(g.env.Stdout, "created site CA %s (%s)\n  key %s\n  quota %d, issues until %s, subject rule %s\n",
				s.CA.ID, s.CA.Subject, s.CA.KeyURI, s.Site.Quota, s.Site.IssueUntil.Format(time.RFC3339), s.Site.CNPattern)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&env, "env", "dev", "environment")
	f.StringVar(&product, "product", "", "product line")
	f.StringVar(&site, "site", "", "site name (1 to 16 lower-case letters, digits, hyphens)")
	f.StringVar(&prof, "profile", ra.DefaultSiteProfile, "profile the site issues")
	f.Int64Var(&quota, "quota", 0, "certificates the site CA may issue")
	f.StringVar(&validFor, "valid-for", "30d", "issuing window (e.g. 30d, 720h; at most 366d)")
	f.StringVar(&ks, "keystore", "soft", `where the site CA key is generated: "soft" or a pkcs11: URI`)
	f.StringVar(&certFile, "cert", "", "a site CA certificate from 'keyward ca ceremony sign' to install (offline roots)")
	f.StringVar(&rootFile, "root", "", "the root certificate that signed --cert")
	_ = c.MarkFlagRequired("product")
	_ = c.MarkFlagRequired("site")
	g.addJSON(c)
	return c
}

func factoryBatchCmd(g *globals) *cobra.Command {
	var req factory.BatchRequest
	var ks, transportFile string
	c := &cobra.Command{
		Use:   "batch",
		Short: "Generate (or resume) a batch of pre-issued device credentials under a site CA",
		Long: `Generates --count device keys and their certificates under the site CA of (--env, --product, --site),
streaming them into the append-only batch file --out (fsynced every --checkpoint credentials). Rerun the same
command after a crash or kill to continue after the last whole credential; a file started with other flags is
refused. Device serials (certificate common names) count up from --first-serial.

Key custody: --keystore pkcs11:... generates each key in the site HSM, sensitive and not extractable (the batch
records its URI). In dev, --keystore soft generates keys in process and writes them only wrapped with AES-256-GCM
under a per-device transport key derived from --transport-key (hex, 32 bytes; created as OUT.transport if absent).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if ks == "soft" {
				if req.TransportKey, err = transportKey(transportFile, req.Out, g); err != nil {
					return err
				}
			} else {
				if req.Custody, err = hsmKeystore(n, ks); err != nil {
					return err
				}
			}
			var bar *progressbar.ProgressBar
			if f, ok := g.env.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				bar = progressbar.NewOptions64(req.Count, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription("credentials"),
					progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
			}
			last := time.Now()
			req.Progress = func(done, total int64) {
				if bar != nil {
					_ = bar.Set64(done)
				} else if time.Since(last) > 5*time.Second || done == total {
					last = time.Now()
					g.logger().Info("factory batch", "done", done, "total", total)
				}
			}
			sum, err := newFactory(n).Batch(cmd.Context(), req)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(sum)
			}
			fmt.Fprintf(g.env.Stdout, "batch %s: %d credentials (%s to %s) under %s, %s custody\n  this run: %d written after %d present, %.1fs, %.0f/s; file %s, %d bytes\n",
				sum.BatchID, sum.Count, sum.FirstSerial, sum.LastSerial, sum.SiteCA, sum.Custody,
				sum.Written, sum.Resumed, sum.Elapsed.Seconds(), sum.PerSecond, sum.Path, sum.Bytes)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&req.Env, "env", "dev", "environment")
	f.StringVar(&req.Product, "product", "", "product line")
	f.StringVar(&req.Site, "site", "", "site")
	f.Int64Var(&req.Count, "count", 0, "credentials in the batch")
	f.StringVar(&req.FirstSerial, "first-serial", "", "device serial of the first credential, e.g. DEMO-00000001")
	f.StringVar(&req.Out, "out", "", "batch file (.kwb)")
	f.StringVar(&ks, "keystore", "", `device key custody: a pkcs11: URI (site HSM), or "soft" in dev`)
	f.StringVar(&transportFile, "transport-key", "", "file with the hex transport master key (--keystore soft)")
	f.IntVar(&req.Workers, "workers", 0, "parallel signers (default: number of CPUs)")
	f.IntVar(&req.Checkpoint, "checkpoint", 256, "credentials per fsync")
	f.StringSliceVar(&req.Symmetric, "symmetric", nil, "symmetric device keys each credential carries, derived from the product line's key-derivation keys: "+purposeList())
	for _, name := range []string{"product", "site", "count", "first-serial", "out", "keystore"} {
		_ = c.MarkFlagRequired(name)
	}
	g.addJSON(c)
	c.AddCommand(factoryBatchShowCmd(g))
	return c
}

// hsmKeystore returns the PKCS#11 backend for spec, reusing one the node has open already.
func hsmKeystore(n *node.Node, spec string) (keystore.Keystore, error) {
	if !strings.HasPrefix(spec, "pkcs11:") {
		return nil, usageError{fmt.Errorf(`--keystore %q: device keys go to a pkcs11: URI, or "soft" in dev`, spec)}
	}
	if b, err := n.Keys.Backend(spec); err == nil && b.Location() == keystore.LocationPKCS11 {
		return b, nil
	}
	return n.Keystore(spec)
}

// transportKey reads the transport master key from file, or from out+".transport", creating that (mode 0600)
// with a random key if neither exists.
func transportKey(file, out string, g *globals) ([]byte, error) {
	if file == "" {
		file = out + ".transport"
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			k := make([]byte, factory.TransportKeySize)
			if _, err := rand.Read(k); err != nil {
				return nil, err
			}
			if err := os.WriteFile(file, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
				return nil, err
			}
			fmt.Fprintf(g.env.Stderr, "keyward: wrote a new transport master key to %s; give it to the injection station and keep it apart from the batch\n", file)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--transport-key: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(k) != factory.TransportKeySize {
		return nil, usageError{fmt.Errorf("--transport-key %s: want %d bytes in hex", file, factory.TransportKeySize)}
	}
	return k, nil
}

func factoryBatchShowCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "show BATCH.kwb",
		Short: "Report a batch file: count, whole credentials, unique indexes and serials, injected",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := factory.Show(args[0])
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(info)
			}
			h := info.Header
			fmt.Fprintf(g.env.Stdout, "batch %s (%s/%s, site %s, %s custody)\n  %d of %d credentials (complete: %v), %d unique serials, %d injected, %d bytes\n",
				h.BatchID, h.Environment, h.ProductLine, h.Site, h.Custody, info.Credentials, info.Count, info.Complete, info.UniqueSerials, info.Injected, info.Bytes)
			if info.TornTail {
				fmt.Fprintln(g.env.Stdout, "  ends with a torn frame: rerun 'keyward factory batch' with the same flags to resume")
			}
			return nil
		},
	}
	g.addJSON(c)
	return c
}

func factoryInjectCmd(g *globals) *cobra.Command {
	var batch, serial, ks, wrapWith string
	c := &cobra.Command{
		Use:   "inject",
		Short: "Hand the next unused credential of a batch to a device, binding it to the device serial once",
		Long: `Hands the next unused credential of a complete batch to the device with --device-serial and records the
binding (fsynced) before answering; a device serial gets one credential, and a credential one device.
Software-wrapped batches (dev) hand out the key sealed under its per-device transport key. For a batch whose
keys are in the site HSM, --keystore pkcs11:... --wrap-with URI exports the key from the HSM wrapped under that
transport key (C_WrapKey, AES key wrap with padding, RFC 5649) for the device's secure element, then destroys
the HSM's copy; without them only the key's URI is handed out. A failed wrap records nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var opts factory.InjectOptions
			if ks != "" || wrapWith != "" {
				if !strings.HasPrefix(ks, "pkcs11:") {
					return usageError{errors.New("--wrap-with needs --keystore pkcs11:... naming the site HSM")}
				}
				hsm, err := pkcs11.Open(ks)
				if err != nil {
					return err
				}
				defer hsm.Close()
				if opts, err = factory.HSMInjection(cmd.Context(), hsm, wrapWith); err != nil {
					return err
				}
			}
			in, err := factory.InjectWith(batch, serial, time.Now(), opts)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(in)
			}
			fmt.Fprintf(g.env.Stdout, "credential %d (%s, certificate %s) bound to device %s\n", in.Index, in.CommonName, in.CertSerial, in.DeviceSerial)
			return pem.Encode(g.env.Stdout, &pem.Block{Type: "CERTIFICATE", Bytes: in.CertDER})
		},
	}
	c.Flags().StringVar(&batch, "batch", "", "batch file (.kwb)")
	c.Flags().StringVar(&serial, "device-serial", "", "serial number of the device receiving the credential")
	c.Flags().StringVar(&ks, "keystore", "", "the site HSM holding the batch's keys (pkcs11: URI), to wrap the key for the device")
	c.Flags().StringVar(&wrapWith, "wrap-with", "", "URI of the transport key in the site HSM to wrap the device key under")
	_ = c.MarkFlagRequired("batch")
	_ = c.MarkFlagRequired("device-serial")
	g.addJSON(c)
	return c
}

func factoryExportCmd(g *globals) *cobra.Command {
	var req factory.ExportRequest
	var env, product, site string
	c := &cobra.Command{
		Use:   "export",
		Short: "Write a signed, append-only export of a batch's injection log or a site CA's issuance log for headquarters",
		Long: `Writes --out (.kwx): a header (site CA, site, environment, product line, batch, export sequence number),
one record per injected credential in index order (certificate, device serial, injection time), each chained by
SHA-256 to the one before, and a signature by the site's export signer (an audit-signing key certified by the site
CA) over the header and the chain head. With --final the batch is closed: the export also lists every credential
never injected, which 'keyward factory reconcile --final' revokes and records as destroyed.

Without --batch it exports the site CA's issuance log: every certificate 'keyward factory serve' issued, in
issuance order (certificate, device serial, station, time), chained and signed the same way; each export
covers the whole log so far and headquarters records what is new since the last one it reconciled.

Exit codes: 0 exported; 3 bad or damaged batch file; 5 no such batch file or site CA; 6 the batch is incomplete
or --out exists.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if req.Batch == "" {
				// The site CA's issuance log ('keyward factory serve').
				if n.Site != nil {
					env, product, site = n.Site.Environment, n.Site.ProductLine, n.Site.Site
				}
				if product == "" || site == "" {
					return usageError{errors.New("name a batch file with --batch, or export a site CA's issuance log: run in the site's data directory, or give --product and --site")}
				}
				if req.Final {
					return usageError{errors.New("--final closes a batch (--batch); a site CA's issuance log has no unused credentials")}
				}
				sum, err := newFactory(n).ExportSiteLog(cmd.Context(), env, product, site, req.Out)
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(sum)
				}
				fmt.Fprintf(g.env.Stdout, "export %d of the issuance log of %s: %d certificates\n  %s, chain head %s\n", sum.Seq, sum.SiteCA, sum.Records, sum.Path, sum.Head)
				return nil
			}
			sum, err := newFactory(n).Export(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(sum)
			}
			fmt.Fprintf(g.env.Stdout, "export %d of batch %s (%s): %d injected, %d unused, final %v\n  %s, chain head %s\n",
				sum.Seq, sum.BatchID, sum.SiteCA, sum.Injected, sum.Unused, sum.Final, sum.Path, sum.Head)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&req.Batch, "batch", "", "batch file (.kwb); without it, the site CA's issuance log is exported")
	f.StringVar(&req.Out, "out", "", "export file to write (.kwx); never overwritten")
	f.BoolVar(&req.Final, "final", false, "close the batch: also list the credentials never injected, for revocation")
	f.StringVar(&env, "env", "dev", "environment of the site CA whose issuance log is exported (without --batch, outside a site data directory)")
	f.StringVar(&product, "product", "", "product line of that site CA")
	f.StringVar(&site, "site", "", "site of that site CA")
	_ = c.MarkFlagRequired("out")
	g.addJSON(c)
	return c
}

func factoryReconcileCmd(g *globals) *cobra.Command {
	var req factory.ReconcileRequest
	var ks string
	c := &cobra.Command{
		Use:   "reconcile FILE.kwx...",
		Short: "Import site exports at headquarters: verify them, record devices and certificates, close batches",
		Long: `Verifies each export in full (checksums, chain continuity, the signature of the site's recorded export
signer, every certificate issued by the site CA within its subject rule, issuing window and quota, no replay of
a reconciled batch and sequence number) and then, in one transaction, records every injected device in the
registry, every certificate (status valid) and the audit events. With --final (the export must be final too),
every credential never injected is revoked with reason cessationOfOperation (RFC 5280 5.3.1) and its key is
recorded destroyed: destroyed in the site HSM named by --keystore, or on the word of --attested-by.
A refused export stores nothing. Files are imported in order; the first refusal stops the command.

Exit codes: 0 reconciled; 3 tampered, truncated, foreign or out-of-policy export; 5 no such file; 6 replayed
export, or a device or certificate the registry holds already.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var results []*factory.ReconcileResult
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				if ks != "" {
					return usageError{errors.New("--keystore cannot be used with --server: the site HSM is reached only on the server's host; use --attested-by")}
				}
				results, err = reconcileRemote(cmd, c, req, args)
				return printReconciled(g, results, err)
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if ks != "" {
				if req.Keys, err = hsmKeystore(n, ks); err != nil {
					return err
				}
			}
			req.Files = args
			results, err = newFactory(n).Reconcile(cmd.Context(), req)
			return printReconciled(g, results, err)
		},
	}
	f := c.Flags()
	f.StringVar(&req.Env, "env", "", "accept only exports of this environment")
	f.StringVar(&req.Site, "site", "", "accept only exports of this site")
	f.BoolVar(&req.Final, "final", false, "close the batches: revoke the unused credentials and record their keys destroyed")
	f.StringVar(&ks, "keystore", "", "the site HSM (pkcs11: URI) in which to destroy unused keys")
	f.StringVar(&req.AttestedBy, "attested-by", "", "who attests the destruction of unused keys the command cannot destroy itself")
	g.addJSON(c)
	return c
}

// reconcileRemote uploads each export file in order to the server, which reconciles it; it stops at the first
// refusal, as the local command does.
func reconcileRemote(cmd *cobra.Command, c *client.Client, req factory.ReconcileRequest, files []string) ([]*factory.ReconcileResult, error) {
	var out []*factory.ReconcileResult
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return out, &exitError{code: ExitNotFound, err: fmt.Errorf("%s: %w", name, err)}
		}
		res, err := c.ReconcileExport(cmd.Context(), client.ReconcileOptions{Environment: req.Env, Site: req.Site, Final: req.Final, AttestedBy: req.AttestedBy}, f)
		_ = f.Close()
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, remoteErr(err))
		}
		r, err := viewOf[*factory.ReconcileResult](res)
		if err != nil {
			return out, err
		}
		r.File = name
		out = append(out, r)
	}
	return out, nil
}

// printReconciled reports the exports reconciled before err, if any.
func printReconciled(g *globals, results []*factory.ReconcileResult, err error) error {
	for _, r := range results {
		if g.json {
			continue
		}
		closed := ""
		if r.Final {
			closed = " (batch closed)"
		}
		fmt.Fprintf(g.env.Stdout, "%s: export %d of batch %s (%s): %d devices and %d certificates recorded, %d revoked, %d keys destroyed%s\n",
			r.File, r.Seq, r.BatchID, r.SiteCA, r.Devices, r.Certificates, r.Revoked, r.KeysDestroyed, closed)
	}
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(results)
	}
	return nil
}
