package cli

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/probe"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
)

func probeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "probe", Short: "Negative tests of a device's TLS endpoint"}
	c.AddCommand(probeTLSCmd(g))
	return c
}

func probeTLSCmd(g *globals) *cobra.Command {
	var o probe.Options
	var side, target, listen, certFile, keyFile, out, htmlOut, publishDir, publicURL string
	c := &cobra.Command{
		Use:   "tls --target HOST:PORT --env E [--product P] --as client|server [--client-cert F --client-key F] --out report.json [--html report.html]",
		Short: "Present a catalogue of bad certificates and weak offers to a device's TLS endpoint and report what it refused",
		Long: `Run a catalogue of negative tests against a device's TLS endpoint and report, for each case, the outcome
expected, the outcome observed, PASS, FAIL or N/A, and the TLS alert seen.

--as client: the device serves at --target; each case is one connection that presents, when the device asks
for a client certificate, the case's certificate. --as server --listen ADDR --name N: the device connects to
ADDR once per case (in catalogue order) and is answered with the case's server certificate; N is the name it
expects of its server.

The catalogue: control (a good identity, which must be accepted), expired, not-yet-valid, wrong-eku,
station-role (a factory station certificate where the profile's role is expected), other-environment-root,
unknown-ca, self-signed, revoked, missing-intermediate, wrong-name (server side), rsa-1024, p-192 (N/A: Go
has no P-192), sha1-signature, tls12-only, tls10 and weak-cipher offers; each but control is expected to be
refused (missing-intermediate accepted with --peer-has-intermediates).

The certificates that must chain to the environment's anchor are issued by its issuing CA through the RA,
audited under the principal probe:cli:<user>, short-lived (at most 2h), their keys only in memory: the
expired and not-yet-valid ones with a validity window an hour in the past or future, the wrong-eku one with
the other TLS side's usage. The revoked case's certificate is revoked and the issuing CA's CRL and the
environment's and product line's revocation filters are republished before any case runs (--publish-dir
writes them too, at the paths the public listener serves, for a device that is handed them); the station
added for the run is revoked after it. Weak keys, SHA-1, the unknown CA and the self-signed case are made under
a CA generated in memory for the run: Keyward's keys never sign them.

The production environment is refused (exit 4) before anything is issued: its CAs never sign a deliberately
flawed certificate. A target that is down or does not speak TLS exits 7 before anything is issued; so does a
device that does not connect within --wait.

The report is written to --out (JSON, kind "probe-tls"), to --html if given (one self-contained page), and a
copy to DATA/reports/probe/<UTC YYYYMMDDTHHMMSSZ>-<env>.json (0600), where 'keyward evidence' finds the newest.
Exit 0 when no case FAILed (PASS or N/A), 10 when one did.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Side = probe.Side(side)
			switch o.Side {
			case probe.Client:
				if listen != "" {
					return usageError{errors.New("--listen is for --as server; as a client the probe connects to --target")}
				}
				o.Target = target
				if target == "" {
					return usageError{errors.New("--as client needs --target HOST:PORT, the device's TLS endpoint")}
				}
			case probe.Server:
				if target != "" {
					return usageError{errors.New("--target is for --as client; as a server the probe listens on --listen and the device connects")}
				}
				if listen == "" {
					return usageError{errors.New("--as server needs --listen ADDR, where the device connects")}
				}
				if o.Name == "" {
					return usageError{errors.New("--as server needs --name, the name the device expects of its server")}
				}
			default:
				return usageError{fmt.Errorf("--as %q: use client (the device serves) or server (the device connects)", side)}
			}
			if (certFile == "") != (keyFile == "") {
				return usageError{errors.New("give --client-cert and --client-key together")}
			}
			if certFile != "" {
				if o.Side != probe.Client {
					return usageError{errors.New("--client-cert is for --as client")}
				}
				cert, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return ra.FieldErrorf(ra.KindBadRequest, "client_cert", "client identity %s with key %s: %v (PEM certificate chain and its PEM private key)", certFile, keyFile, err)
				}
				o.ClientCert = &cert
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if o.Side == probe.Server {
				// Production is refused before the listener opens: nothing of a refused run reaches a device.
				if o.Env == ra.ProductionEnvironment {
					return ra.FieldErrorf(ra.KindForbidden, "environment", "environment %q: probes are refused against production CAs, whose keys never sign a deliberately flawed certificate; probe a device provisioned for dev or staging", o.Env)
				}
				ln, err := net.Listen("tcp", listen)
				if err != nil {
					return ra.Wrap(ra.KindUnavailable, fmt.Errorf("listen on %s for the device: %w", listen, err))
				}
				o.Listener = ln
				fmt.Fprintf(g.env.Stderr, "probe: listening on %s\n", ln.Addr())
			}
			o.CRL = revocation.CRLConfig{BaseURL: publicURL, SpoolDir: n.Dir}
			if publishDir != "" {
				o.Publish = func(path string, data []byte) error {
					file := filepath.Join(publishDir, filepath.FromSlash(strings.TrimPrefix(path, "/")))
					if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
						return err
					}
					return os.WriteFile(file, data, 0o644) //nolint:gosec // CRLs and filters are public objects
				}
			}
			if g.verbose || g.logLevel == "debug" || g.logLevel == "info" {
				o.Progress = g.env.Stderr
			}
			a := probe.Authority{RA: n.RA, Revocation: revocation.New(n.RA, n.CA, n.Store), Principal: ra.Principal{ID: "probe:" + principal().ID, Role: ra.RoleAdmin}}
			rep, runErr := probe.Run(cmd.Context(), a, o)
			if rep == nil {
				return runErr
			}
			if err := writeProbeReport(rep, out, htmlOut); err != nil {
				return err
			}
			saved, err := rep.SaveCopy(n.Dir)
			if err != nil {
				return err
			}
			if g.json {
				if err := rep.WriteJSON(g.env.Stdout); err != nil {
					return err
				}
			} else {
				printProbe(g, rep, out, saved)
			}
			if runErr != nil {
				return runErr
			}
			if rep.Failed() {
				return &exitError{code: ExitFindings, err: fmt.Errorf("probe tls: %d of %d cases FAILed against %s: the target accepted what it must refuse (or refused the control); see %s", rep.Summary.Fail, rep.Summary.Total, rep.Target, out)}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&target, "target", "", "the device's TLS endpoint, HOST:PORT (--as client)")
	f.StringVar(&listen, "listen", "", "address the device connects to, e.g. 0.0.0.0:9443 (--as server)")
	f.StringVar(&o.Env, "env", "", "environment whose anchor the device trusts (not production)")
	f.StringVar(&o.Product, "product", "", "product line whose issuing CA issues the probe's certificates (default: the one of --env that uses --profile)")
	f.StringVar(&side, "as", "", "the side the probe plays: client (the device serves) or server (the device connects)")
	f.StringVar(&o.Profile, "profile", "", "profile of the probe's identities (default: gateway-identity as a client, cloud-service as a server)")
	f.StringVar(&o.Name, "name", "", "subject name of the probe's certificates; as a server, the name the device expects (default as a client: GW-PROBE)")
	f.StringVar(&certFile, "client-cert", "", "a good client identity (PEM chain) for the control, protocol-version and cipher cases (default: one the probe issues)")
	f.StringVar(&keyFile, "client-key", "", "the private key of --client-cert (PEM)")
	f.BoolVar(&o.PeerHasIntermediates, "peer-has-intermediates", false, "the device holds the issuing CA itself: expect it to accept a certificate sent without it")
	f.DurationVar(&o.Settle, "settle", time.Second, "as a client, how long to wait after a handshake for the device's refusal")
	f.DurationVar(&o.Wait, "wait", 2*time.Minute, "as a server, how long to wait for each connection of the device")
	f.StringVar(&publishDir, "publish-dir", "", "also write the republished CRL and filters here, at the public listener's paths (crl/..., filter/...)")
	f.StringVar(&publicURL, "public-url", "http://127.0.0.1:8080", "public listener URL as certificates name it (the CRL's freshestCRL)")
	f.StringVar(&out, "out", "", "write the JSON report here")
	f.StringVar(&htmlOut, "html", "", "also write the report as one HTML page here")
	_ = c.MarkFlagRequired("env")
	_ = c.MarkFlagRequired("as")
	_ = c.MarkFlagRequired("out")
	g.addJSON(c)
	return c
}

func writeProbeReport(rep *probe.Report, out, htmlOut string) error {
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		return err
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o600); err != nil {
		return err
	}
	if htmlOut != "" {
		buf.Reset()
		if err := rep.WriteHTML(&buf); err != nil {
			return err
		}
		if err := os.WriteFile(htmlOut, buf.Bytes(), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func printProbe(g *globals, rep *probe.Report, out, saved string) {
	w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CASE\tRESULT\tEXPECTED\tALERT\tOBSERVED")
	for _, c := range rep.Cases {
		alert := c.Alert
		if alert == "" {
			alert = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.Result, c.Expected, alert, c.Observed)
	}
	_ = w.Flush()
	for _, note := range rep.Notes {
		fmt.Fprintf(g.env.Stdout, "note: %s\n", note)
	}
	s := rep.Summary
	fmt.Fprintf(g.env.Stdout, "%s: %d cases, %d PASS, %d FAIL, %d N/A; report %s, copy %s\n", s.Result, s.Total, s.Pass, s.Fail, s.NA, out, saved)
}
