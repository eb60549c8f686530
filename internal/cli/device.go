package cli

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/client"
	"github.com/keyward/keyward/pkg/est"
)

func deviceCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "device", Short: "Devices: enroll and renew over EST, simulate a fleet, and the device registry"}
	c.AddCommand(deviceEnrollCmd(g), deviceRenewCmd(g), deviceSimulateCmd(g), deviceListCmd(g),
		deviceActionCmd(g, ra.AllowReprovision, "Let the next initial enrollment of an active device replace its identity"),
		deviceActionCmd(g, ra.ForceRenew, "Let the device's next renewal happen outside the profile's renewal window"),
		deviceActionCmd(g, ra.Suspend, "Suspend a device: its renewals are refused until it is resumed"),
		deviceActionCmd(g, ra.Resume, "Resume a suspended device"),
		deviceDecommissionCmd(g), deviceHistoryCmd(g))
	return c
}

// estExit maps an EST refusal to keyward's exit codes.
func estExit(err error) error {
	var e *est.Error
	if !errors.As(err, &e) {
		return &exitError{code: ExitUnavailable, err: err}
	}
	code := ExitInternal
	switch {
	case e.StatusCode == http.StatusUnauthorized, e.StatusCode == http.StatusForbidden:
		code = ExitDenied
	case e.StatusCode == http.StatusNotFound:
		code = ExitNotFound
	case e.StatusCode == http.StatusConflict:
		code = ExitConflict
	case e.StatusCode >= 400 && e.StatusCode < 500:
		code = ExitBadRequest
	case e.StatusCode >= 500:
		code = ExitUnavailable
	}
	return &exitError{code: code, err: err}
}

// estFlags are the connection flags of the EST client commands.
type estFlags struct {
	server, product, trust string
}

func (f *estFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.server, "server", "https://127.0.0.1:8443", "Keyward server URL")
	c.Flags().StringVar(&f.product, "product", "", "product line (the EST label; PRODUCT.ENV where several environments declare it)")
	c.Flags().StringVar(&f.trust, "trust", "trust.pem", "trust anchor for the server's TLS certificate (written by 'station add')")
}

func (f *estFlags) client(certFile, keyFile string) (*est.Client, error) {
	if f.product == "" {
		return nil, usageError{errors.New("--product is required")}
	}
	trust, err := readFileLimited(f.trust)
	if err != nil {
		return nil, err
	}
	var cert *tls.Certificate
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("client certificate %s / key %s: %w", certFile, keyFile, err)}
		}
		cert = &c
	}
	cfg, err := est.TLSConfig(trust, cert)
	if err != nil {
		return nil, badInput(fmt.Errorf("--trust %s: %w", f.trust, err))
	}
	return est.NewClient(f.server, f.product, cfg)
}

func newDeviceKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func readAttestation(path string) ([][]byte, error) {
	if path == "" {
		return nil, nil
	}
	data, err := readFileLimited(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			out = append(out, b.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, badInput(fmt.Errorf("--attestation %s holds no PEM certificate", path))
	}
	return out, nil
}

func deviceEnrollCmd(g *globals) *cobra.Command {
	var (
		f                                              estFlags
		station, stationKey, serial, keyOut, out, attn string
	)
	c := &cobra.Command{
		Use:   "enroll",
		Short: "Enroll a device over EST as a factory station: new key, CSR, simpleenroll",
		Long: `Generate a P-256 device key (a secure element would generate it on the device), make a CSR for --serial and
enroll it over EST (simpleenroll) with the factory station's mTLS credential. Writes the key (0600) to
--key-out and the identity certificate to --out. --attestation FILE sends the secure element's attestation
certificate chain (PEM, leaf first) in the Keyward-Attestation header, for profiles that require one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if serial == "" || keyOut == "" || out == "" {
				return usageError{errors.New("--serial, --key-out and --out are required")}
			}
			cl, err := f.client(station, stationKey)
			if err != nil {
				return err
			}
			defer cl.Close()
			chain, err := readAttestation(attn)
			if err != nil {
				return err
			}
			key, err := newDeviceKey()
			if err != nil {
				return err
			}
			csr, err := est.NewCSR(key, serial)
			if err != nil {
				return err
			}
			cert, err := cl.SimpleEnroll(cmd.Context(), csr, &est.EnrollOptions{Attestation: chain})
			if err != nil {
				return estExit(err)
			}
			if err := writeKey(keyOut, key); err != nil {
				return err
			}
			if err := os.WriteFile(out, est.CertPEM(cert), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "enrolled %s: certificate %s valid until %s\n", serial, cert.SerialNumber.Text(16), cert.NotAfter.Format(time.RFC3339))
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVar(&station, "station", "station.pem", "factory station certificate (chain), PEM")
	c.Flags().StringVar(&stationKey, "station-key", "station.key", "factory station private key, PEM")
	c.Flags().StringVar(&serial, "serial", "", "device serial number (the CSR's common name)")
	c.Flags().StringVar(&keyOut, "key-out", "", "where to write the device key (PKCS #8 PEM, 0600)")
	c.Flags().StringVar(&out, "out", "", "where to write the device certificate (PEM)")
	c.Flags().StringVar(&attn, "attestation", "", "secure-element attestation chain, PEM, leaf first")
	return c
}

func deviceRenewCmd(g *globals) *cobra.Command {
	var (
		f                         estFlags
		certFile, keyFile, keyOut string
		out                       string
		rekey                     bool
	)
	c := &cobra.Command{
		Use:   "renew",
		Short: "Renew a device identity over EST (simplereenroll), authenticated by the current certificate",
		Long: `Renew the certificate in --cert over EST (simplereenroll, RFC 7030 4.2.2), authenticating with it and --key.
With --rekey a new P-256 key is generated and written to --key-out (0600); otherwise the same key is
certified again. The new certificate goes to --out. The server refuses renewal outside the profile's
renewal window unless an operator ran 'keyward device force-renew SERIAL'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if certFile == "" || keyFile == "" || out == "" {
				return usageError{errors.New("--cert, --key and --out are required")}
			}
			if rekey && keyOut == "" {
				return usageError{errors.New("--rekey needs --key-out for the new key")}
			}
			cl, err := f.client(certFile, keyFile)
			if err != nil {
				return err
			}
			defer cl.Close()
			pair, _ := tls.LoadX509KeyPair(certFile, keyFile)
			cur, err := x509.ParseCertificate(pair.Certificate[0])
			if err != nil {
				return badInput(fmt.Errorf("--cert %s: %w", certFile, err))
			}
			key, ok := pair.PrivateKey.(crypto.Signer)
			if !ok {
				return badInput(fmt.Errorf("--key %s is not a signing key", keyFile))
			}
			if rekey {
				if key, err = newDeviceKey(); err != nil {
					return err
				}
			}
			csr, err := est.NewCSR(key, cur.Subject.CommonName)
			if err != nil {
				return err
			}
			cert, err := cl.SimpleReenroll(cmd.Context(), csr, nil)
			if err != nil {
				return estExit(err)
			}
			if rekey {
				if err := writeKey(keyOut, key); err != nil {
					return err
				}
			}
			if err := os.WriteFile(out, est.CertPEM(cert), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "renewed %s: certificate %s valid until %s (replaces %s)\n", cur.Subject.CommonName, cert.SerialNumber.Text(16), cert.NotAfter.Format(time.RFC3339), cur.SerialNumber.Text(16))
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVar(&certFile, "cert", "dev.pem", "current device certificate, PEM")
	c.Flags().StringVar(&keyFile, "key", "dev.key", "current device key, PEM")
	c.Flags().BoolVar(&rekey, "rekey", false, "renew with a new key")
	c.Flags().StringVar(&keyOut, "key-out", "", "where to write the new key with --rekey")
	c.Flags().StringVar(&out, "out", "", "where to write the new certificate")
	return c
}

// SimulateResult is what 'device simulate' did.
type SimulateResult struct {
	Count     int     `json:"count"`
	Enrolled  int64   `json:"enrolled"`
	Renewed   int64   `json:"renewed"`
	Failed    int64   `json:"failed"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"devices_per_second"`
	FirstErr  string  `json:"first_error,omitempty"`
}

// progress reports simulated devices: a progress bar on a terminal, a line per tenth otherwise.
type progress struct {
	bar   *progressbar.ProgressBar
	w     io.Writer
	total int
	done  atomic.Int64
}

func newProgress(w io.Writer, total int, desc string) *progress {
	p := &progress{w: w, total: total}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("devices"),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	return p
}

func (p *progress) add() {
	n := p.done.Add(1)
	if p.bar != nil {
		_ = p.bar.Add(1)
		return
	}
	if step := max(int64(p.total)/10, 1); n%step == 0 || n == int64(p.total) {
		fmt.Fprintf(p.w, "simulate: %d/%d devices\n", n, p.total)
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

func deviceSimulateCmd(g *globals) *cobra.Command {
	var (
		f                   estFlags
		station, stationKey string
		count, concurrency  int
		first               int64
		prefix              string
		digits              int
		renew, rekey, force bool
	)
	c := &cobra.Command{
		Use:   "simulate",
		Short: "Provision a synthetic fleet end to end over EST: key, CSR, enrollment (and renewal) per device",
		Long: `Simulate --count devices on a factory line: each generates a P-256 key and a CSR for serial PREFIX+NUMBER
(--digits wide, from --first, default random) and is enrolled over EST by the factory station (mTLS); with
--renew each device then renews over EST with its own new certificate (simplereenroll; with --rekey, with a
new key). --concurrency devices run at once. A progress bar shows on a terminal. Exits 1 if any device failed.

A new certificate is not yet due for renewal: the server refuses it before the profile's renewal window (the
last renewal_window fraction of the validity; implant-identity: the last 20 % of 15 years, so 12 years after
issuance). With --force the command acts as the operator too: before each renewal it runs 'keyward device
force-renew' for the device on the --data directory the server uses (a local data directory, and the right to
read it, are needed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if count <= 0 || concurrency <= 0 {
				return usageError{errors.New("--count and --concurrency must be positive")}
			}
			limit := int64(1)
			for i := 0; i < digits; i++ {
				limit *= 10
			}
			if int64(count) > limit {
				return usageError{fmt.Errorf("--count %d does not fit %d-digit serials", count, digits)}
			}
			if first < 0 {
				r, err := rand.Int(rand.Reader, big.NewInt(limit-int64(count)+1))
				if err != nil {
					return err
				}
				first = r.Int64()
			}
			if first+int64(count) > limit {
				return usageError{fmt.Errorf("--first %d + --count %d overflows %d-digit serials", first, count, digits)}
			}
			if (force || rekey) && !renew {
				return usageError{errors.New("--force and --rekey go with --renew")}
			}
			var allow func(serial string) error
			if force {
				n, err := g.open(ctx)
				if err != nil {
					return err
				}
				defer n.Close()
				product, env, _ := strings.Cut(f.product, ".") // the EST label: PRODUCT or PRODUCT.ENV
				allow = func(serial string) error {
					_, err := n.RA.ApplyDeviceAction(ctx, principal(), ra.DeviceRef{Environment: env, ProductLine: product, Serial: serial}, ra.ForceRenew)
					return err
				}
			}
			cl, err := f.client(station, stationKey)
			if err != nil {
				return err
			}
			defer cl.Close()
			trust, err := readFileLimited(f.trust)
			if err != nil {
				return err
			}
			res := &SimulateResult{Count: count}
			var errOnce sync.Once
			fail := func(serial string, err error) {
				atomic.AddInt64(&res.Failed, 1)
				errOnce.Do(func() { res.FirstErr = serial + ": " + err.Error() })
			}
			prog := newProgress(g.env.Stderr, count, "devices")
			jobs := make(chan int64)
			var wg sync.WaitGroup
			start := time.Now()
			for w := 0; w < concurrency; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range jobs {
						serial := fmt.Sprintf("%s%0*d", prefix, digits, i)
						if err := simulateDevice(ctx, cl, &f, trust, serial, renew, rekey, allow, res); err != nil {
							fail(serial, err)
						}
						prog.add()
					}
				}()
			}
		feed:
			for i := first; i < first+int64(count); i++ {
				select {
				case jobs <- i:
				case <-ctx.Done():
					break feed
				}
			}
			close(jobs)
			wg.Wait()
			prog.finish()
			res.Seconds = time.Since(start).Seconds()
			res.PerSecond = float64(res.Enrolled) / res.Seconds
			if g.json {
				if err := g.printJSON(res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.env.Stdout, "simulated %d devices in %.1fs: %d enrolled, %d renewed, %d failed (%.0f devices/s)\n",
					count, res.Seconds, res.Enrolled, res.Renewed, res.Failed, res.PerSecond)
			}
			if res.Failed > 0 {
				return fmt.Errorf("%d of %d devices failed; first: %s", res.Failed, count, res.FirstErr)
			}
			return ctx.Err()
		},
	}
	f.add(c)
	c.Flags().StringVar(&station, "station", "station.pem", "factory station certificate (chain), PEM")
	c.Flags().StringVar(&stationKey, "station-key", "station.key", "factory station private key, PEM")
	c.Flags().IntVar(&count, "count", 100, "devices to provision")
	c.Flags().IntVar(&concurrency, "concurrency", 8, "devices provisioned at once")
	c.Flags().Int64Var(&first, "first", -1, "number of the first serial (default random)")
	c.Flags().StringVar(&prefix, "prefix", "DEMO-", "serial prefix")
	c.Flags().IntVar(&digits, "digits", 8, "digits of the serial number")
	c.Flags().BoolVar(&renew, "renew", false, "renew each device after enrolling it (simplereenroll)")
	c.Flags().BoolVar(&rekey, "rekey", false, "with --renew, renew with a new key")
	c.Flags().BoolVar(&force, "force", false, "with --renew, allow each renewal before the profile's renewal window ('device force-renew' on --data)")
	g.addJSON(c)
	return c
}

// simulateDevice enrolls one device through station and, with renew, renews it with its own certificate; allow,
// when not nil, lets the renewal happen before the renewal window (the operator's force-renew).
func simulateDevice(ctx context.Context, station *est.Client, f *estFlags, trust []byte, serial string, renew, rekey bool, allow func(string) error, res *SimulateResult) error {
	key, err := newDeviceKey()
	if err != nil {
		return err
	}
	csr, err := est.NewCSR(key, serial)
	if err != nil {
		return err
	}
	cert, err := station.SimpleEnroll(ctx, csr, nil)
	if err != nil {
		return err
	}
	atomic.AddInt64(&res.Enrolled, 1)
	if !renew {
		return nil
	}
	if allow != nil {
		if err := allow(serial); err != nil {
			return fmt.Errorf("force-renew: %w", err)
		}
	}
	cfg, err := est.TLSConfig(trust, &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key})
	if err != nil {
		return err
	}
	dev, err := est.NewClient(f.server, f.product, cfg)
	if err != nil {
		return err
	}
	defer dev.Close()
	newKey := crypto.Signer(key)
	if rekey {
		if newKey, err = newDeviceKey(); err != nil {
			return err
		}
	}
	csr, err = est.NewCSR(newKey, serial)
	if err != nil {
		return err
	}
	renewed, err := dev.SimpleReenroll(ctx, csr, nil)
	if err != nil {
		var e *est.Error
		if allow == nil && errors.As(err, &e) && e.StatusCode == http.StatusForbidden {
			return fmt.Errorf("renew: %w (--force renews before the profile's renewal window)", err)
		}
		return fmt.Errorf("renew: %w", err)
	}
	if renewed.Subject.CommonName != serial {
		return fmt.Errorf("renewed certificate names %q", renewed.Subject.CommonName)
	}
	atomic.AddInt64(&res.Renewed, 1)
	return nil
}

func deviceListCmd(g *globals) *cobra.Command {
	var f store.DeviceFilter
	c := &cobra.Command{
		Use:   "list",
		Short: "List the device registry: serial, state, who enrolled it, current certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []api.Device
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				// The API answers at most 10000 devices a request.
				limit := f.Limit
				if limit <= 0 || limit > 10000 {
					limit = 10000
				}
				devs, err := c.Devices(cmd.Context(), client.DeviceFilter{Environment: f.Environment, ProductLine: f.ProductLine, State: f.State, Station: f.StationID,
					Site: f.Site, HardwareSerial: f.HardwareSerial, Limit: limit})
				if err != nil {
					return remoteErr(err)
				}
				if list, err = viewOf[[]api.Device](devs); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				rows, err := n.Store.ListDevices(cmd.Context(), f)
				if err != nil {
					return err
				}
				list = make([]api.Device, 0, len(rows))
				for _, d := range rows {
					list = append(list, api.NewDevice(d))
				}
			}
			if g.json {
				return g.printJSON(list)
			}
			tw := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ENV\tPRODUCT\tSERIAL\tSTATE\tSTATION\tSITE\tENROLLED\tCERTIFICATE")
			for _, d := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Environment, d.ProductLine, d.Serial, d.State, d.Station, d.Site, d.EnrolledAt.Format(time.RFC3339), d.Certificate)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&f.Environment, "env", "", "only this environment")
	c.Flags().StringVar(&f.ProductLine, "product", "", "only this product line")
	c.Flags().StringVar(&f.State, "state", "", "only this state (active, suspended, decommissioned)")
	c.Flags().StringVar(&f.StationID, "station", "", "only devices this station enrolled")
	c.Flags().StringVar(&f.Site, "site", "", "only devices provisioned at this factory site")
	c.Flags().StringVar(&f.HardwareSerial, "hardware-serial", "", "only the device a pre-issued credential was injected into with this hardware serial")
	c.Flags().IntVar(&f.Limit, "limit", 0, "at most this many (0: all)")
	g.addJSON(c)
	return c
}

func deviceActionCmd(g *globals, action ra.DeviceAction, short string) *cobra.Command {
	var ref ra.DeviceRef
	c := &cobra.Command{
		Use:   string(action) + " SERIAL",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref.Serial = args[0]
			var d api.Device
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				cref, err := resolveDevice(cmd.Context(), c, ref)
				if err != nil {
					return err
				}
				v, err := c.DeviceAction(cmd.Context(), cref, string(action))
				if err != nil {
					return remoteErr(err)
				}
				if d, err = viewOf[api.Device](v); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				row, err := n.RA.ApplyDeviceAction(cmd.Context(), principal(), ref, action)
				if err != nil {
					return err
				}
				d = api.NewDevice(row)
			}
			if g.json {
				return g.printJSON(d)
			}
			fmt.Fprintf(g.env.Stdout, "device %s of %s/%s: %s done (state %s)\n", d.Serial, d.Environment, d.ProductLine, action, d.State)
			return nil
		},
	}
	c.Flags().StringVar(&ref.Environment, "env", "", "environment (needed only if the serial is in several)")
	c.Flags().StringVar(&ref.ProductLine, "product", "", "product line (needed only if the serial is in several)")
	g.addJSON(c)
	return c
}

func deviceDecommissionCmd(g *globals) *cobra.Command {
	var req ra.DecommissionRequest
	c := &cobra.Command{
		Use:   "decommission SERIAL --attested-by NAME",
		Short: "Decommission a device for good: revoke its certificates, record its keys destroyed; its serial is never provisioned again",
		Long: `Retire a device at the end of its life, in one transaction with its audit events:

  - every certificate of the device that is valid, superseded but not expired, or on certificateHold is
    revoked with reason cessationOfOperation (RFC 5280 5.3.1);
  - the device becomes decommissioned, which is final: its serial is never enrolled or re-provisioned again;
  - each of its keys in the key glossary (spki:sha256:<hex>, location device) is recorded as destroyed, with
    the time and, in the audit event, who attested the destruction (--attested-by, required: Keyward never
    held the key, so the record rests on that person's or procedure's word).

Running it again on a decommissioned device changes nothing and exits 6. A running 'keyward serve' learns of
the revocations from the change feed within moments and publishes the next delta CRL; OCSP answers follow.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(req.AttestedBy) == "" {
				return usageError{errors.New("--attested-by is required: who attests that the device's keys were destroyed (a person, or a destruction record)")}
			}
			req.Device.Serial = args[0]
			var res *ra.DecommissionResult
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				cref, err := resolveDevice(cmd.Context(), c, req.Device)
				if err != nil {
					return err
				}
				v, err := c.Decommission(cmd.Context(), cref, req.AttestedBy)
				if err != nil {
					return remoteErr(err)
				}
				if res, err = viewOf[*ra.DecommissionResult](v); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				if res, err = n.RA.Decommission(cmd.Context(), principal(), req); err != nil {
					return err
				}
			}
			if g.json {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.env.Stdout, "device %s of %s/%s decommissioned: %d certificate(s) revoked (cessationOfOperation), %d device key(s) recorded destroyed, attested by %s\n",
				res.Serial, res.Environment, res.ProductLine, len(res.Revoked), len(res.KeysDestroyed), res.AttestedBy)
			return nil
		},
	}
	c.Flags().StringVar(&req.Device.Environment, "env", "", "environment (needed only if the serial is in several)")
	c.Flags().StringVar(&req.Device.ProductLine, "product", "", "product line (needed only if the serial is in several)")
	c.Flags().StringVar(&req.AttestedBy, "attested-by", "", "who attests that the device's keys were destroyed (required)")
	g.addJSON(c)
	return c
}

func certExpiringCmd(g *globals) *cobra.Command {
	var within string
	var limit int
	c := &cobra.Command{
		Use:   "expiring",
		Short: "List valid certificates that expire within a period: what must renew",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := hierarchy.ParseDuration(within)
			if err != nil {
				return usageError{fmt.Errorf("--within: %w", err)}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			list, err := n.Store.ExpiringCertificates(cmd.Context(), n.Now().Add(d), limit)
			if err != nil {
				return err
			}
			if g.json {
				out := make([]api.Certificate, 0, len(list))
				for _, c := range list {
					out = append(out, api.NewCertificate(c, false))
				}
				return g.printJSON(out)
			}
			tw := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tSUBJECT\tPROFILE\tISSUER\tNOT AFTER\tLEFT")
			for _, c := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Serial, c.Subject, c.Profile, c.IssuerID, c.NotAfter.Format(time.RFC3339), c.NotAfter.Sub(n.Now()).Round(time.Hour))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&within, "within", "90d", "period from now (90d, 720h, 1y)")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many, soonest first (0: all)")
	g.addJSON(c)
	return c
}
