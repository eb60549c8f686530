package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/keyward/keyward/internal/ra"
)

// Timeouts of one connection.
const (
	dialTimeout      = 5 * time.Second
	handshakeTimeout = 10 * time.Second
)

// outcome is what one connection showed.
type outcome struct {
	// kind is accepted, refused, or notPresented (the probe could not put the case to the target).
	kind     string
	observed string
	alert    string
}

const (
	accepted     = "accepted"
	refused      = "refused"
	notPresented = "not-presented"
)

// judge turns an outcome into a result.
func judge(expected string, out outcome) string {
	switch out.kind {
	case notPresented:
		return NA
	case expected:
		return Pass
	}
	return Fail
}

// remoteAlert returns the name of the TLS alert the peer sent, if err is one (crypto/tls reports a received
// alert as a net.OpError "remote error").
func remoteAlert(err error) (string, bool) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		return strings.TrimPrefix(op.Err.Error(), "tls: "), true
	}
	return "", false
}

// closed reports whether err is the peer closing or resetting the connection.
func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func serverName(target string) string {
	host, _, _ := net.SplitHostPort(target)
	if net.ParseIP(host) != nil {
		return ""
	}
	return host
}

// preflight checks that the target is up and speaks TLS: a handshake that completes, or an alert, shows it.
func preflight(ctx context.Context, target string) error {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return ra.Wrap(ra.KindUnavailable, fmt.Errorf("%w: cannot connect to %s: %v; is the device up and serving TLS there?", ErrTarget, target, err))
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{
		// The probe tests the target's checks of the probe, not the target's certificate.
		InsecureSkipVerify: true, //nolint:gosec // a negative tester of the peer, which verifies nothing itself
		ServerName:         serverName(target),
	})
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	err = tc.HandshakeContext(ctx)
	if _, ok := remoteAlert(err); err == nil || ok {
		return nil
	}
	return ra.Wrap(ra.KindUnavailable, fmt.Errorf("%w: %s does not speak TLS: the handshake failed with %v", ErrTarget, target, err))
}

// dial runs one case as a TLS client.
func dial(ctx context.Context, o Options, c probeCase) outcome {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", o.Target)
	if err != nil {
		return outcome{kind: notPresented, observed: fmt.Sprintf("could not connect: %v", err)}
	}
	defer conn.Close()
	requested := false
	cfg := &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // a negative tester of the peer, which verifies nothing itself
		ServerName:         serverName(o.Target),
		MinVersion:         c.minVersion,
		MaxVersion:         c.maxVersion,
		CipherSuites:       c.cipherSuites,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			requested = true
			return &c.id.cert, nil
		},
	}
	tc := tls.Client(conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		return failed(err, "the handshake")
	}
	// TLS 1.3 (RFC 8446 4.4.2.4): the server checks the client's certificate after the client's handshake is
	// complete, and answers a bad one with an alert; wait for it.
	_ = tc.SetReadDeadline(time.Now().Add(o.Settle))
	var buf [1]byte
	_, err = tc.Read(buf[:])
	version := tls.VersionName(tc.ConnectionState().Version)
	note := ""
	if !requested {
		note = "; the target asked for no client certificate"
	}
	switch {
	case err == nil:
		return outcome{kind: accepted, observed: fmt.Sprintf("accepted (%s): the target sent application data%s", version, note)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return outcome{kind: accepted, observed: fmt.Sprintf("accepted (%s): no refusal within %s of the handshake%s", version, o.Settle, note)}
	}
	return failed(err, "after the handshake")
}

// failed classifies a connection that ended in err.
func failed(err error, when string) outcome {
	if alert, ok := remoteAlert(err); ok {
		return outcome{kind: refused, alert: alert, observed: fmt.Sprintf("refused %s with the alert %q", when, alert)}
	}
	if closed(err) {
		return outcome{kind: refused, observed: fmt.Sprintf("refused: the target closed the connection %s without an alert", when)}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return outcome{kind: notPresented, observed: fmt.Sprintf("no answer within %s (%s)", handshakeTimeout, when)}
	}
	// A local failure: the probe could not put the case (a key the target's signature algorithms exclude,
	// say), which shows nothing.
	return outcome{kind: notPresented, observed: fmt.Sprintf("the probe could not present the case: %v", err)}
}

// offerRefusals are crypto/tls's own errors when the device's ClientHello leaves the probe, as a server,
// nothing to choose: the device does not offer what the case offers, which is its refusal.
var offerRefusals = []string{
	"client offered only unsupported versions",
	"no cipher suite supported by both client and server",
	"unsupported versions",
	"no mutual cipher suite",
	"protocol version not supported",
}

// serve runs one case as a TLS server on conn.
func serve(ctx context.Context, o Options, c probeCase, conn net.Conn) outcome {
	defer conn.Close()
	cfg := &tls.Config{
		Certificates: []tls.Certificate{c.id.cert},
		MinVersion:   c.minVersion,
		MaxVersion:   c.maxVersion,
		CipherSuites: c.cipherSuites,
	}
	rec := &recordingConn{Conn: conn}
	tc := tls.Server(rec, cfg)
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	err := tc.HandshakeContext(ctx)
	if err == nil {
		// The client sent its Finished (RFC 8446 4.4.4) only after it checked the probe's certificate.
		return outcome{kind: accepted, observed: fmt.Sprintf("accepted (%s): the device completed the handshake", tls.VersionName(tc.ConnectionState().Version))}
	}
	if _, ok := remoteAlert(err); !ok {
		// A client that refuses the server's certificate before it has switched its own writes to the
		// handshake keys (OpenSSL does) sends its alert as a plaintext record (RFC 8446 5.1, 6), which
		// crypto/tls, reading with the keys, cannot decrypt: read the alert from the record itself.
		if alert, ok := plaintextAlert(rec.last()); ok {
			return outcome{kind: refused, alert: alert, observed: fmt.Sprintf("refused the handshake with the alert %q (sent unencrypted)", alert)}
		}
		for _, s := range offerRefusals {
			if strings.Contains(err.Error(), s) {
				return outcome{kind: refused, observed: fmt.Sprintf("refused: the device's hello offers none of it (%v)", err)}
			}
		}
	}
	return failed(err, "the handshake")
}

// recordingConn keeps the last bytes read from the peer.
type recordingConn struct {
	net.Conn
	tail []byte
}

// recordTail is enough for the last record of an alert (5 bytes of header, 2 of alert).
const recordTail = 64

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.tail = append(c.tail, p[:n]...)
		if len(c.tail) > recordTail {
			c.tail = c.tail[len(c.tail)-recordTail:]
		}
	}
	return n, err
}

func (c *recordingConn) last() []byte { return c.tail }

// plaintextAlert returns the name of the alert in b if b ends with a plaintext TLS alert record: content
// type alert (21), a legacy version 3.x, length 2, a level of warning (1) or fatal (2) and the description
// (RFC 8446 5.1 and 6).
func plaintextAlert(b []byte) (string, bool) {
	if len(b) < 7 {
		return "", false
	}
	r := b[len(b)-7:]
	if r[0] != 21 || r[1] != 3 || r[3] != 0 || r[4] != 2 || (r[5] != 1 && r[5] != 2) {
		return "", false
	}
	return strings.TrimPrefix(tls.AlertError(r[6]).Error(), "tls: "), true
}
