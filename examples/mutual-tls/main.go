// Command mutual-tls shows Keyward-issued identities in mutual TLS between an implant, its clinician
// programmer and a cloud service, each checking its peer with pkg/verify: the chain to the environment's
// root, the peer's role (by certificate policy), the TLS side it plays, its validity, and its revocation under
// a policy the operator chooses. TCP stands in for the BLE link between programmer and implant. README.md
// walks through it with the keyward CLI.
//
//	mutual-tls implant    --cert implant.pem --key implant.key --anchors root.pem --chain chain.pem --listen ADDR
//	mutual-tls cloud      --cert cloud.pem   --key cloud.key   --anchors root.pem --chain chain.pem --listen ADDR
//	mutual-tls programmer --cert prog.pem    --key prog.key    --anchors root.pem --chain chain.pem \
//	                      --implant ADDR --implant-serial DEMO-00000001 --cloud https://HOST:PORT/ [--cloud-addr ADDR]
//
// Every command takes --revocation fail-open|fail-closed (required) and --filter F.kwf (a signed revocation
// filter of the environment, checked against --anchors), and --arc (keyward.yaml's policy_arc).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/revocation/filter"
	"github.com/keyward/keyward/pkg/verify"
)

func main() { os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }

// config is what every command reads from its flags.
type config struct {
	cert, key, anchors, chain, filter, arc, revocation, env string
	listen, implant, implantSerial, cloud, cloudAddr        string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: mutual-tls implant|cloud|programmer [flags] (see -h of each)")
		return 2
	}
	var c config
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.cert, "cert", "", "this party's certificate (PEM), optionally followed by its CA certificates")
	fs.StringVar(&c.key, "key", "", "this party's private key (PEM)")
	fs.StringVar(&c.anchors, "anchors", "", "the environment's root certificate(s) to pin (PEM)")
	fs.StringVar(&c.chain, "chain", "", "CA certificates that may complete a peer's chain (PEM; the issuing CA)")
	fs.StringVar(&c.filter, "filter", "", "signed revocation filter of the environment (.kwf)")
	fs.StringVar(&c.env, "env", "dev", "environment of the filter")
	fs.StringVar(&c.arc, "arc", certpolicy.DefaultArc, "policy arc (keyward.yaml policy_arc)")
	fs.StringVar(&c.revocation, "revocation", "", "when no revocation source answers: fail-open or fail-closed (required)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:0", "address to listen on (implant, cloud)")
	fs.StringVar(&c.implant, "implant", "", "implant address (programmer)")
	fs.StringVar(&c.implantSerial, "implant-serial", "", "the implant's serial, which its certificate must name (programmer)")
	fs.StringVar(&c.cloud, "cloud", "", "cloud service URL (programmer)")
	fs.StringVar(&c.cloudAddr, "cloud-addr", "", "address to dial for the cloud URL's host, if DNS does not resolve it (programmer)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if c.cert == "" || c.key == "" || c.anchors == "" || c.revocation == "" {
		fmt.Fprintln(stderr, "mutual-tls: --cert, --key, --anchors and --revocation are required")
		return 2
	}
	var err error
	switch args[0] {
	case "implant", "cloud":
		var ln net.Listener
		if ln, err = net.Listen("tcp", c.listen); err == nil {
			fmt.Fprintf(stdout, "%s listening on %s\n", args[0], ln.Addr())
			if args[0] == "implant" {
				err = serveImplant(ctx, ln, c, stderr)
			} else {
				err = serveCloud(ctx, ln, c, stderr)
			}
		}
	case "programmer":
		err = programmer(ctx, c, stdout)
	default:
		fmt.Fprintf(stderr, "mutual-tls: unknown command %q (implant, cloud, programmer)\n", args[0])
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "mutual-tls %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// The roles each party accepts as its peer (docs/trust-anchors.md).
var (
	// An implant talks only to a programmer or gateway: never to a factory station, a service or another
	// device.
	implantAccepts = []certpolicy.Role{certpolicy.Gateway}
	// The cloud serves programmers, gateways and devices.
	cloudAccepts = []certpolicy.Role{certpolicy.Gateway, certpolicy.Device}
)

// newVerifier builds the verifier of one party from the files c names.
func newVerifier(c config, roles []certpolicy.Role, usage x509.ExtKeyUsage) (*verify.Verifier, error) {
	anchors, err := readCerts(c.anchors)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	if c.chain != "" {
		if chain, err = readCerts(c.chain); err != nil {
			return nil, err
		}
	}
	o := verify.Options{Anchors: anchors, Intermediates: chain, Arc: c.arc, Roles: roles, Usage: usage, ClockSkew: 5 * time.Minute}
	switch c.revocation {
	case "fail-open":
		o.Revocation.Policy = verify.FailOpen
	case "fail-closed":
		o.Revocation.Policy = verify.FailClosed
	default:
		return nil, fmt.Errorf("--revocation %q: use fail-open or fail-closed", c.revocation)
	}
	if c.filter != "" {
		data, err := os.ReadFile(c.filter)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		for _, a := range anchors {
			pool.AddCert(a)
		}
		if o.Revocation.Filter, err = filter.Verify(data, filter.VerifyOptions{Roots: pool, Environment: c.env}); err != nil {
			return nil, fmt.Errorf("%s: %w", c.filter, err)
		}
	}
	return verify.New(o)
}

func readCerts(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
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
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return out, nil
}

// serveImplant answers programmers over TLS: one line in ("INTERROGATE"), one line out. It is the TLS
// server (as over BLE), and requires the programmer's certificate: a gateway's.
func serveImplant(ctx context.Context, ln net.Listener, c config, logw io.Writer) error {
	id, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return err
	}
	v, err := newVerifier(c, implantAccepts, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	cfg, err := v.ServerConfig(id)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { _ = ln.Close() })
	serial := id.Leaf.Subject.CommonName
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil //nolint:nilerr // the listener was closed because ctx ended: a clean stop
			}
			return err
		}
		go func() {
			tc := tls.Server(conn, cfg)
			defer tc.Close() // sends close_notify: peers such as OpenSSL treat a bare EOF as truncation
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.HandshakeContext(ctx); err != nil {
				fmt.Fprintf(logw, "implant %s: refused a programmer: %v\n", serial, err)
				return
			}
			peer := tc.ConnectionState().PeerCertificates[0].Subject.CommonName
			line, err := bufio.NewReader(tc).ReadString('\n')
			if err != nil || strings.TrimSpace(line) != "INTERROGATE" {
				fmt.Fprintf(logw, "implant %s: %s sent %q\n", serial, peer, line)
				return
			}
			fmt.Fprintf(tc, "%s: lead impedance 520 ohm, battery 87%%, for %s\n", serial, peer)
		}()
	}
}

// serveCloud is an HTTPS service that requires a programmer's, gateway's or device's certificate.
func serveCloud(ctx context.Context, ln net.Listener, c config, logw io.Writer) error {
	id, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return err
	}
	v, err := newVerifier(c, cloudAccepts, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	cfg, err := v.ServerConfig(id)
	if err != nil {
		return err
	}
	srv := &http.Server{
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logw, "cloud: ", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The handshake verified the client; its role is in its certificate's policy.
			res, err := v.Verify(r.Context(), r.TLS.PeerCertificates)
			if err != nil { // not reached: VerifyConnection refused the handshake already
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
			fmt.Fprintf(w, "cloud: hello %s %s\n", res.Role, res.Chain[0].Subject.CommonName)
		}),
	}
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	err = srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// programmer interrogates the implant (which must be a device named by --implant-serial) and reports to the
// cloud (which must be a service named by the URL's host).
func programmer(ctx context.Context, c config, out io.Writer) error {
	id, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return err
	}
	if c.implant != "" {
		v, err := newVerifier(c, []certpolicy.Role{certpolicy.Device}, x509.ExtKeyUsageServerAuth)
		if err != nil {
			return err
		}
		reply, err := interrogate(ctx, c.implant, c.implantSerial, id, v)
		if err != nil {
			return fmt.Errorf("implant %s: %w", c.implant, err)
		}
		fmt.Fprint(out, reply)
	}
	if c.cloud != "" {
		v, err := newVerifier(c, []certpolicy.Role{certpolicy.Service}, x509.ExtKeyUsageServerAuth)
		if err != nil {
			return err
		}
		body, err := report(ctx, c.cloud, c.cloudAddr, id, v)
		if err != nil {
			return fmt.Errorf("cloud %s: %w", c.cloud, err)
		}
		fmt.Fprint(out, body)
	}
	return nil
}

func interrogate(ctx context.Context, addr, serial string, id tls.Certificate, v *verify.Verifier) (string, error) {
	cfg, err := v.ClientConfig(&id, serial)
	if err != nil {
		return "", err
	}
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 10 * time.Second}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "INTERROGATE\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(conn).ReadString('\n')
}

func report(ctx context.Context, url, dialAddr string, id tls.Certificate, v *verify.Verifier) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	cfg, err := v.ClientConfig(&id, req.URL.Hostname())
	if err != nil {
		return "", err
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	if dialAddr != "" {
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, dialAddr)
		}
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}
