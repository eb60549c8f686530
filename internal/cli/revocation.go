package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/metrics"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/client"
	"github.com/keyward/keyward/pkg/revocation/filter"
)

// reasonHelp lists the reasons operators may give.
const reasonHelp = "RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, affiliationChanged, certificateHold, " +
	"privilegeWithdrawn, cACompromise, aACompromise, unspecified"

func parseRevTime(flag, s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, usageError{fmt.Errorf("%s %q: use RFC 3339 (2026-03-14T15:09:26Z) or a date (2026-03-14)", flag, s)}
}

func certRevokeCmd(g *globals) *cobra.Command {
	var reason, invalidity, profileName, subject string
	var issuers, between []string
	var reg ra.RegistrySelector
	var dryRun bool
	c := &cobra.Command{
		Use:   "revoke [SERIAL]",
		Short: "Revoke a certificate, or every certificate matching a query",
		Long: `Revoke one certificate by serial (hex), or, without SERIAL, every certificate matching all the given
selectors: --issuer (CA id, repeatable), --profile, --subject (exact DN, e.g. CN=DEMO-00000042) and
--issued-between A B (issuance time A <= t < B; also written --issued-between A,B), and through the device
registry --device SN (every certificate of that device), --station ID (of every device that station enrolled)
and --site SITE (of every device enrolled at that site), which --env and --product narrow. A bulk revocation
with --dry-run only counts what it would revoke; without it, it revokes in batches, each revocation with its
audit event in the same transaction.

Revoking a revoked certificate changes nothing and exits 6 (conflict), except that a certificate on
certificateHold may be revoked for a permanent reason. Only certificateHold can be undone: 'keyward cert
unhold SERIAL'. --invalidity-date is when the key was or may have been compromised (RFC 5280 5.3.2).

--batch ID selects the devices headquarters recorded from a factory batch ('keyward factory reconcile'); the
never-injected credentials of a closed batch are revoked by 'factory reconcile --final'. To retire a device
for good, use 'keyward device decommission SN --attested-by NAME'.`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usageError{errors.New("--reason is required (" + reasonHelp + ")")}
			}
			code, err := ra.ParseReason(reason)
			if err != nil {
				return err
			}
			var inv *time.Time
			if invalidity != "" {
				t, err := parseRevTime("--invalidity-date", invalidity)
				if err != nil {
					return err
				}
				inv = &t
			}
			// "--issued-between A B": pflag takes A; B arrives as a positional argument.
			if len(between) == 1 && len(args) == 1 {
				if _, err := parseRevTime("", args[0]); err == nil {
					between, args = append(between, args[0]), nil
				}
			}
			if len(args) > 1 {
				return usageError{fmt.Errorf("unexpected arguments %v: give one SERIAL, or selectors for a bulk revocation", args)}
			}
			if len(args) == 1 && (len(issuers)+len(between) > 0 || profileName != "" || subject != "" || dryRun || reg != (ra.RegistrySelector{})) {
				return usageError{errors.New("give either a SERIAL or bulk selectors (--issuer, --profile, --subject, --issued-between, --device, --station, --site), not both")}
			}
			q := store.CertQuery{IssuerIDs: issuers, Profile: profileName, Subject: subject}
			switch len(between) {
			case 0:
			case 2:
				if q.IssuedFrom, err = parseRevTime("--issued-between", between[0]); err != nil {
					return err
				}
				if q.IssuedTo, err = parseRevTime("--issued-between", between[1]); err != nil {
					return err
				}
			default:
				return usageError{fmt.Errorf("--issued-between takes two times A B, got %d", len(between))}
			}
			var res *ra.BulkResult
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				if len(args) == 1 {
					v, err := c.Revoke(cmd.Context(), args[0], client.RevokeRequest{Reason: ra.ReasonName(code), InvalidityDate: inv})
					if err != nil {
						return remoteErr(err)
					}
					e, err := viewOf[api.Revocation](v)
					if err != nil {
						return err
					}
					return printRevoked(g, e)
				}
				req := client.BulkRevokeRequest{Issuers: issuers, Profile: profileName, Subject: subject, Reason: ra.ReasonName(code), InvalidityDate: inv, DryRun: dryRun,
					Environment: reg.Environment, ProductLine: reg.ProductLine, Device: reg.Device, Station: reg.Station, Site: reg.Site, Batch: reg.Batch}
				if len(between) == 2 {
					req.IssuedFrom, req.IssuedTo = &q.IssuedFrom, &q.IssuedTo
				}
				v, err := c.BulkRevoke(cmd.Context(), req)
				if err != nil {
					return remoteErr(err)
				}
				if res, err = viewOf[*ra.BulkResult](v); err != nil {
					return err
				}
				return printBulk(g, res, dryRun)
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if len(args) == 1 {
				e, err := n.RA.Revoke(cmd.Context(), principal(), ra.RevokeRequest{Serial: args[0], Reason: code, InvalidityDate: inv})
				if err != nil {
					return err
				}
				return printRevoked(g, api.NewRevocation(e))
			}
			res, err = n.RA.Bulk(cmd.Context(), principal(), ra.BulkRequest{Query: q, Registry: reg, Reason: code, InvalidityDate: inv, DryRun: dryRun})
			if err != nil {
				return err
			}
			return printBulk(g, res, dryRun)
		},
	}
	c.Flags().StringVar(&reason, "reason", "", reasonHelp)
	c.Flags().StringVar(&invalidity, "invalidity-date", "", "when the key was or may have been compromised (RFC 3339)")
	c.Flags().StringSliceVar(&issuers, "issuer", nil, "bulk: issuing CA id (e.g. dev/demo-implant); repeatable")
	c.Flags().StringVar(&profileName, "profile", "", "bulk: only certificates of this profile")
	c.Flags().StringVar(&subject, "subject", "", "bulk: only certificates with this exact subject DN")
	c.Flags().StringSliceVar(&between, "issued-between", nil, "bulk: issuance time range A B (A inclusive, B exclusive)")
	c.Flags().StringVar(&reg.Device, "device", "", "bulk: every certificate of this device (serial, from the device registry)")
	c.Flags().StringVar(&reg.Batch, "batch", "", "bulk: every certificate of the devices recorded from this factory batch (reconciled)")
	c.Flags().StringVar(&reg.Station, "station", "", "bulk: certificates of every device this factory station enrolled (station id)")
	c.Flags().StringVar(&reg.Site, "site", "", "bulk: certificates of every device enrolled at this site")
	c.Flags().StringVar(&reg.Environment, "env", "", "bulk: with --device, --station or --site, only devices of this environment")
	c.Flags().StringVar(&reg.ProductLine, "product", "", "bulk: with --device, --station or --site, only devices of this product line")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "bulk: count, revoke nothing")
	g.addJSON(c)
	return c
}

func printRevoked(g *globals, e api.Revocation) error {
	if g.json {
		return g.printJSON(e)
	}
	at := ""
	if e.RevokedAt != nil {
		at = e.RevokedAt.Format(time.RFC3339)
	}
	fmt.Fprintf(g.env.Stdout, "revoked %s (%s) at %s with reason %s\n", e.Serial, e.Issuer, at, e.Reason)
	return nil
}

func printBulk(g *globals, res *ra.BulkResult, dryRun bool) error {
	if g.json {
		return g.printJSON(res)
	}
	verb := "revoked"
	if dryRun {
		verb = "would revoke"
	}
	fmt.Fprintf(g.env.Stdout, "matched %d certificates: %s %d, %d already revoked\n", res.Matched, verb, res.Revoked, res.AlreadyRevoked)
	return nil
}

func certUnholdCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "unhold SERIAL",
		Short: "Release a certificate from certificateHold (the only revocation that can be undone)",
		Long: `Release a certificate revoked with reason certificateHold: it becomes valid again, OCSP answers good, the
next delta CRL lists it with reason removeFromCRL and the next complete CRL omits it (RFC 5280 5.3.1). Any
other revocation is final: exit 6.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var e api.Revocation
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				v, err := c.Unhold(cmd.Context(), args[0])
				if err != nil {
					return remoteErr(err)
				}
				if e, err = viewOf[api.Revocation](v); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				row, err := n.RA.Unhold(cmd.Context(), principal(), args[0])
				if err != nil {
					return err
				}
				e = api.NewRevocation(row)
			}
			if g.json {
				return g.printJSON(e)
			}
			fmt.Fprintf(g.env.Stdout, "released %s from hold: valid again\n", e.Serial)
			return nil
		},
	}
	g.addJSON(c)
	return c
}

func revocationCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "revocation", Short: "CRLs and revocation filters: publish, build, check"}
	c.AddCommand(revocationCRLCmd(g), revocationFilterCmd(g), revocationCheckCmd(g))
	return c
}

func revocationCRLCmd(g *globals) *cobra.Command {
	var caID, out, baseURL string
	var delta bool
	c := &cobra.Command{
		Use:   "crl --ca ID",
		Short: "Publish a CRL of a CA now and write it (DER) to --out",
		Long: `Publish a complete CRL (with an empty delta CRL of the same number) for CA --ca (e.g. dev/demo-implant or
dev/root), or with --delta a delta CRL against the newest complete one, store it for the public listener and
write it to --out as DER. 'keyward serve --public-listen' publishes on its own schedule; this command is for
operators and tests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caID == "" {
				return usageError{errors.New("--ca is required (see 'keyward ca list')")}
			}
			n, svc, err := g.revocationService(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			cfg := revocation.CRLConfig{BaseURL: baseURL, SpoolDir: n.Dir}
			var row *store.PublishedCRL
			if delta {
				row, err = svc.PublishDelta(cmd.Context(), caID, cfg)
			} else {
				row, err = svc.PublishCRLs(cmd.Context(), caID, cfg)
			}
			if err != nil {
				return err
			}
			if out != "" {
				if err := writeCRLFile(cmd.Context(), svc, row, out); err != nil {
					return err
				}
			}
			if g.json {
				return g.printJSON(map[string]any{"ca": caID, "number": row.Number, "delta": row.Delta, "base_number": row.BaseNumber, "entries": row.Entries,
					"this_update": row.ThisUpdate, "next_update": row.NextUpdate, "bytes": row.Size})
			}
			kind := "complete CRL"
			if row.Delta {
				kind = fmt.Sprintf("delta CRL (base %d)", row.BaseNumber)
			}
			fmt.Fprintf(g.env.Stdout, "%s %d of %s: %d entries, %d bytes, next update %s\n", kind, row.Number, caID, row.Entries, row.Size, row.NextUpdate.Format(time.RFC3339))
			return nil
		},
	}
	c.Flags().StringVar(&caID, "ca", "", "CA id")
	c.Flags().BoolVar(&delta, "delta", false, "publish a delta CRL")
	c.Flags().StringVar(&out, "out", "", "write the CRL (DER) here")
	c.Flags().StringVar(&baseURL, "public-url", "http://127.0.0.1:8080", "public listener URL as certificates name it (for freshestCRL)")
	g.addJSON(c)
	return c
}

// writeCRLFile writes the DER of a published CRL to path, streamed from the store for a CRL stored in chunks.
func writeCRLFile(ctx context.Context, svc *revocation.Service, row *store.PublishedCRL, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := svc.WriteCRL(ctx, row, f); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

func revocationFilterCmd(g *globals) *cobra.Command {
	var req revocation.FilterRequest
	var out string
	c := &cobra.Command{
		Use:   "filter --env E [--product P] --out filter.kwf",
		Short: "Build a signed revocation filter for offline verifiers",
		Long: `Build a compact revocation filter from the registry: exact for every certificate the CA issued (see
pkg/revocation/filter), signed by a crl-signing delegate whose certificate (id-kp-documentSigning) is issued
by the product line's issuing CA, or by the environment's root for a whole-environment filter. The filter is
versioned and stored; the public listener serves the newest at /filter/<env>[/<product>].kwf.
--delta-from V writes a delta against stored full version V instead: only the corrections, small enough to
sync often.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Environment == "" || out == "" {
				return usageError{errors.New("--env and --out are required")}
			}
			n, svc, err := g.revocationService(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			res, err := svc.BuildFilter(cmd.Context(), principal(), req)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, res.Data, 0o644); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			if res.Base != 0 {
				fmt.Fprintf(g.env.Stdout, "delta filter %s v%d from v%d: %d corrections, %d bytes -> %s\n", res.Scope, res.Version, res.Base, res.Entries, len(res.Data), out)
				printRevokedCAs(g, res)
				return nil
			}
			st := res.Stats
			fmt.Fprintf(g.env.Stdout, "filter %s v%d: %d certificates, %d revoked, %d bytes (%.2f x the information bound) -> %s\n",
				res.Scope, res.Version, st.Certificates, st.Revoked, len(res.Data), st.Ratio, out)
			printRevokedCAs(g, res)
			return nil
		},
	}
	c.Flags().StringVar(&req.Environment, "env", "", "environment")
	c.Flags().StringVar(&req.Product, "product", "", "product line (default: every product line of --env)")
	c.Flags().DurationVar(&req.Validity, "validity", 7*24*time.Hour, "time from issuance to next update")
	c.Flags().Int64Var(&req.DeltaFrom, "delta-from", 0, "build a delta against this stored full filter version")
	c.Flags().StringVar(&out, "out", "", "write the filter here")
	g.addJSON(c)
	return c
}

// printRevokedCAs names the revoked CAs a filter lists, whose whole subtree verifiers refuse.
func printRevokedCAs(g *globals, res *revocation.FilterResult) {
	if len(res.RevokedCAs) > 0 {
		fmt.Fprintf(g.env.Stdout, "  revoked CAs listed (everything under them is refused): %s\n", strings.Join(res.RevokedCAs, ", "))
	}
}

func revocationCheckCmd(g *globals) *cobra.Command {
	var filterFile, deltaFile, trustFile, serial, certFile, env, product string
	c := &cobra.Command{
		Use:   "check --filter filter.kwf --trust root.pem (--serial S | --cert cert.pem)",
		Short: "Check a serial or a certificate against a revocation filter, as an offline device would",
		Long: `Verify a revocation filter (signature chain to --trust, signer authority, environment --env, freshness),
apply --delta if given, and answer whether a certificate is revoked. Uses only pkg/revocation/filter, the
standard-library package devices embed. Prints "revoked" or "not revoked" and exits 0 for "not revoked" and
9 for "revoked", so scripts can branch on the answer; exit 3 if the filter does not verify.

--serial S (hex) asks about the serial alone. --cert FILE (PEM: the certificate, optionally followed by the
CA certificates between it and the root) checks the certificate as a device does: its chain is verified to
--trust, and it is revoked if its serial is, or if any CA of its chain is one the filter lists as revoked,
which refuses everything under that CA. Exit 3 if the certificate does not chain to --trust.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if filterFile == "" || trustFile == "" || (serial == "") == (certFile == "") {
				return usageError{errors.New("--filter, --trust and one of --serial or --cert are required")}
			}
			data, err := os.ReadFile(filterFile)
			if err != nil {
				return usageError{err}
			}
			trust, err := os.ReadFile(trustFile)
			if err != nil {
				return usageError{err}
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(trust) {
				return badInput(fmt.Errorf("%s holds no PEM certificate", trustFile))
			}
			var sn *big.Int
			var chains [][]*x509.Certificate
			if certFile != "" {
				if chains, err = verifiedChains(certFile, pool); err != nil {
					return err
				}
				sn = chains[0][0].SerialNumber
			} else {
				s, err := ra.NormalizeSerial(serial)
				if err != nil {
					return err
				}
				sn, _ = new(big.Int).SetString(s, 16)
			}
			opts := filter.VerifyOptions{Roots: pool, Environment: env, Scope: product}
			f, err := filter.Verify(data, opts)
			if err != nil {
				return badInput(fmt.Errorf("%s: %w", filterFile, err))
			}
			if deltaFile != "" {
				d, err := os.ReadFile(deltaFile)
				if err != nil {
					return usageError{err}
				}
				if f, err = f.ApplyDelta(d, opts); err != nil {
					return badInput(fmt.Errorf("%s: %w", deltaFile, err))
				}
			}
			revoked := f.Revoked(sn)
			var refusal error
			for _, chain := range chains {
				// Every chain to the anchor must pass: a revoked CA on any of them refuses the certificate.
				if refusal = f.CheckChain(chain); refusal != nil {
					break
				}
			}
			if chains != nil {
				revoked = refusal != nil
			}
			s := fmt.Sprintf("%x", sn)
			if g.json {
				out := map[string]any{"serial": s, "revoked": revoked, "environment": f.Environment(), "scope": f.Scope(),
					"version": f.Version(), "issued_at": f.IssuedAt(), "next_update": f.NextUpdate(), "revoked_issuers": len(f.RevokedIssuers())}
				if refusal != nil {
					out["reason"] = refusal.Error()
					out["issuer_revoked"] = errors.Is(refusal, filter.ErrIssuerRevoked)
				}
				if err := g.printJSON(out); err != nil {
					return err
				}
				return revokedExit(revoked, s)
			}
			state := "not revoked"
			if revoked {
				state = "revoked"
			}
			fmt.Fprintf(g.env.Stdout, "%s: %s (filter %s v%d, issued %s, fresh until %s)\n", s, state, strings.TrimSuffix(f.Environment()+"/"+f.Scope(), "/"),
				f.Version(), f.IssuedAt().Format(time.RFC3339), f.NextUpdate().Format(time.RFC3339))
			if refusal != nil {
				fmt.Fprintf(g.env.Stdout, "  %v\n", refusal)
			}
			if n := len(f.RevokedIssuers()); n > 0 && chains == nil {
				fmt.Fprintf(g.env.Stdout, "  the filter lists %d revoked CA(s), which a serial alone cannot be checked against: use --cert\n", n)
			}
			return revokedExit(revoked, s)
		},
	}
	c.Flags().StringVar(&filterFile, "filter", "", "filter file (.kwf)")
	c.Flags().StringVar(&deltaFile, "delta", "", "delta filter file to apply")
	c.Flags().StringVar(&trustFile, "trust", "", "the environment's root certificate (PEM)")
	c.Flags().StringVar(&serial, "serial", "", "certificate serial (hex)")
	c.Flags().StringVar(&certFile, "cert", "", "certificate to check (PEM), optionally followed by its CA certificates up to the root")
	c.Flags().StringVar(&env, "env", "dev", "environment the filter must belong to")
	c.Flags().StringVar(&product, "product", "", "product line the filter must cover (default: any)")
	g.addJSON(c)
	return c
}

// revokedExit is the exit of 'revocation check': nil (0) for "not revoked", ExitRevoked for "revoked", which
// is an answer and not a failure, so a script tells it from a filter that does not verify (3).
func revokedExit(revoked bool, serial string) error {
	if !revoked {
		return nil
	}
	return &exitError{code: ExitRevoked, err: fmt.Errorf("%s is revoked (exit %d)", serial, ExitRevoked)}
}

// verifiedChains reads a PEM file (a certificate, then any CA certificates below the root) and verifies the
// certificate to roots, as a device does before it asks the filter.
func verifiedChains(file string, roots *x509.CertPool) ([][]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, usageError{err}
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, badInput(fmt.Errorf("%s: certificate %d: %w", file, len(certs)+1, err))
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, badInput(fmt.Errorf("%s holds no PEM certificate", file))
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, badInput(fmt.Errorf("%s does not chain to the trust anchor (include its CA certificates after it in the file): %w", file, err))
	}
	return chains, nil
}

// publicOptions configure the plain-HTTP public listener of 'keyward serve'.
type publicOptions struct {
	listen   string
	url      string
	interval time.Duration
	// warning, if set, says the URL was derived from an unspecified listen address (derive).
	warning string
	full    time.Duration
	delta   time.Duration
}

func addPublicFlags(c *cobra.Command, o *publicOptions) {
	c.Flags().StringVar(&o.listen, "public-listen", "", "plain-HTTP listen address for signed public objects: CRLs, OCSP, CA certificates, filters (e.g. 127.0.0.1:8080)")
	c.Flags().StringVar(&o.url, "public-url", "", "the public listener's URL as CRLs name it (freshestCRL of base CRLs); default: http:// and --public-listen (this host's name for 0.0.0.0 or ::); a change republishes every CRL and filter at start")
	c.Flags().DurationVar(&o.interval, "publish-check", 5*time.Second, "how often to check for revocations to publish and to reload published objects")
	c.Flags().DurationVar(&o.full, "crl-interval", 24*time.Hour, "how often to issue a complete CRL (nextUpdate is twice this)")
	c.Flags().DurationVar(&o.delta, "delta-crl-interval", time.Hour, "how often to issue a delta CRL when nothing changes (nextUpdate is twice this)")
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// revocationService opens the data directory and its revocation publisher; close the node when done.
func (g *globals) revocationService(ctx context.Context) (*node.Node, *revocation.Service, error) {
	n, err := g.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	return n, revocation.New(n.RA, n.CA, n.Store), nil
}

// derive fills in the public URL from the public listen address when no flag, variable or file set it, and
// checks it. A listener on every address (0.0.0.0, ::, or no host) has no one name: the URL then names this
// host by its hostname, with a warning to set public-url to the name relying parties use.
func (o *publicOptions) derive(settings []config.Setting) error {
	if o.url == "" {
		o.url = "http://127.0.0.1:8080" // no public listener: unused
		// A malformed listen address is reported as public-listen's mistake; the URL then stays unused.
		if host, port, err := net.SplitHostPort(o.listen); o.listen != "" && err == nil {
			if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
				name, err := os.Hostname()
				if err != nil || name == "" {
					name = "127.0.0.1"
				}
				o.warning = fmt.Sprintf("the public URL is http://%s, derived from --public-listen %s and this host's name: CRLs and certificates name it, so set --public-url (or public-url in keyward.yaml) to the address relying parties reach",
					net.JoinHostPort(name, port), o.listen)
				host = name
			}
			o.url = "http://" + net.JoinHostPort(host, port)
		}
		for i := range settings {
			if settings[i].Key == "serve.public-url" {
				settings[i].Value, settings[i].Source, settings[i].From = o.url, "derived", "from serve.public-listen"
				if o.listen == "" {
					settings[i].Source, settings[i].From = config.SourceDefault, ""
				}
			}
		}
		return nil
	}
	u, err := url.Parse(o.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an http:// or https:// URL of a host (no query, fragment or credentials)", config.Redact(o.url))
	}
	return nil
}

// serveWithPublic runs the TLS API and, with --public-listen, the public listener, the CRL publisher and the
// OCSP responder beside it, until ctx ends. The publisher follows the change feed: a revocation committed by
// this process, another node or a CLI command beside it is published within moments.
func serveWithPublic(ctx context.Context, g *globals, n *node.Node, srv *server.Server, ln net.Listener, certs *node.TLSRenewer, grace time.Duration, o publicOptions, m *metrics.Metrics) error {
	tc := server.TLSConfigFunc(certs.GetCertificate)
	if o.listen == "" {
		return srv.ServeTLS(ctx, ln, tc, grace)
	}
	if o.warning != "" {
		fmt.Fprintf(g.env.Stderr, "keyward: warning: %s\n", o.warning)
	}
	// Listen first, accept only once the CRLs are published and loaded: a client that connects meanwhile waits
	// in the backlog for current objects rather than being refused.
	pln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return usageError{fmt.Errorf("--public-listen %s: %w", o.listen, err)}
	}
	serving := false
	defer func() {
		if !serving {
			_ = pln.Close()
		}
	}()
	svc := revocation.New(n.RA, n.CA, n.Store)
	publisher := revocation.NewPublisher(svc, revocation.CRLConfig{BaseURL: o.url, FullInterval: o.full, DeltaInterval: o.delta, SpoolDir: n.Dir})
	publisher.Observe = func(c *store.PublishedCRL) {
		size := c.Size
		if size == 0 {
			size = int64(len(c.DER))
		}
		m.CRL(c.IssuerID, c.Delta, metrics.CRLState{ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate, Bytes: int(size), Entries: c.Entries})
	}
	responder := revocation.NewResponder(svc, revocation.OCSPConfig{})
	responder.Observe = m.OCSP
	pub := server.NewPublic(n.Config, svc, responder, n.Logger)
	pub.ObserveFilter = func(f *store.PublishedFilter) {
		m.Filter(f.Scope, metrics.FilterState{Version: f.Version, IssuedAt: f.IssuedAt, NextUpdate: f.NextUpdate, Bytes: len(f.Data)})
	}
	// Ready only while publication keeps up: a round runs every --publish-check and after each revocation.
	srv.AddCheck(func(context.Context) ra.Check {
		return ra.NewCheck("crl-publisher", publisher.Fresh(n.Now(), 3*o.interval+30*time.Second))
	})
	if n.Feed != nil {
		// The responder refreshes on every node at once, whichever node publishes the CRLs.
		n.Feed.Subscribe(func([]store.Change) { publisher.Kick(); pub.Kick() }, audit.PrefixCert)
		// A CA revoked, rolled over or retired, or a root CRL installed: roots re-sign their CRLs, and the
		// responder and the served objects follow.
		n.Feed.Subscribe(func([]store.Change) { publisher.CAChanged(); pub.Kick() }, audit.PrefixCA)
	}
	// CRLs that name another public URL (it changed since they were published) are published again, with every
	// filter, before the first client fetches them.
	rep, err := publisher.RepublishForURL(ctx)
	if err != nil {
		return fmt.Errorf("republish for public URL %s: %w", o.url, err)
	}
	if len(rep.CRLs) > 0 {
		fmt.Fprintf(g.env.Stderr, "keyward: public URL is now %s: republished the CRLs of %s and the filters of %s\n", o.url,
			strings.Join(rep.CRLs, ", "), orNone(rep.Filters))
		n.Logger.Info("public URL changed: CRLs and filters republished", "public_url", o.url, "crls", rep.CRLs, "filters", rep.Filters)
	}
	// Publish and load once before accepting requests, so the first client finds CRLs and a responder.
	if _, err := publisher.PublishOnce(ctx); err != nil {
		return fmt.Errorf("first CRL publication: %w", err)
	}
	if err := responder.Refresh(ctx); err != nil {
		return fmt.Errorf("OCSP responder: %w", err)
	}
	if err := pub.Reload(ctx); err != nil {
		return fmt.Errorf("public objects: %w", err)
	}
	fmt.Fprintf(g.env.Stderr, "keyward: serving public objects on http://%s (CRLs, OCSP, CA certificates, filters)\n", pln.Addr())
	serving = true
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(3)
	go func() { defer wg.Done(); server.RunRevocation(ctx, pub, publisher, o.interval) }()
	go func() { defer wg.Done(); errc <- pub.ServePublic(ctx, pln, grace); cancel() }()
	go func() { defer wg.Done(); errc <- srv.ServeTLS(ctx, ln, tc, grace); cancel() }()
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
