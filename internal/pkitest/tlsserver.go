package pkitest

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// ServeTLS runs a TLS server on a loopback port until the test ends, as a device's endpoint would: each
// connection is handshaken with the configuration config returns for it and then read until the peer closes.
// It returns the address.
func ServeTLS(t testing.TB, config func() *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, config())
				defer tc.Close()
				_ = tc.SetDeadline(time.Now().Add(15 * time.Second))
				if tc.Handshake() == nil {
					_, _ = io.Copy(io.Discard, tc)
				}
			}()
		}
	}()
	return ln.Addr().String()
}
