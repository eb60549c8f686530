package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
)

// Side is the TLS side the probe plays.
type Side string

// The sides: the probe as TLS client of a device that serves, or as TLS server a device connects to.
const (
	Client Side = "client"
	Server Side = "server"
)

// Default profiles of the probe's identities: a device serves programmers and gateways (gateway-identity,
// TLS client), and connects to cloud services (cloud-service, TLS server).
const (
	DefaultClientProfile = "gateway-identity"
	DefaultServerProfile = "cloud-service"
	// DefaultClientName is the subject common name of the probe's client identities under the demo
	// gateway-identity profile (^GW-[A-Z0-9-]{4,32}$).
	DefaultClientName = "GW-PROBE"
)

// Options configure one run.
type Options struct {
	// Env is the environment whose anchor the target trusts; production is refused.
	Env string
	// Product is the product line whose issuing CA issues the probe's certificates; empty: the one product
	// line of Env that issues under Profile.
	Product string
	// Side is the side the probe plays.
	Side Side
	// Target is the device's address, HOST:PORT (Side Client).
	Target string
	// Listener accepts the device's connections (Side Server); the caller made it, the run closes it.
	Listener net.Listener
	// Profile is the profile of the probe's good identity and of its variants; default DefaultClientProfile
	// or DefaultServerProfile by side.
	Profile string
	// Name is the subject common name (and, where the profile allows one that matches, DNS name) of the
	// probe's certificates; for Side Server, the name the device expects of its server. Default
	// DefaultClientName for Side Client; required for Side Server.
	Name string
	// ClientCert, if set (Side Client), is the good client identity of the control case and of the
	// protocol-version and cipher cases; otherwise the probe issues one.
	ClientCert *tls.Certificate
	// PeerHasIntermediates says the target holds the issuing CA itself, as an implant's programmer does: a
	// certificate sent without its intermediate is then expected to be accepted.
	PeerHasIntermediates bool
	// Settle is how long the probe, as a TLS client, waits after a completed handshake for the target's
	// refusal (TLS 1.3 servers check a client certificate after the client's handshake is done); default 1s.
	Settle time.Duration
	// Wait is how long the probe, as a TLS server, waits for each connection of the device; default 2m.
	Wait time.Duration
	// CRL configures the republished CRL (its base URL; a spool directory).
	CRL revocation.CRLConfig
	// Publish, if set, is called with each object republished for the revoked case, by the path the public
	// listener serves it at ("/crl/<issuer>.crl", "/filter/<scope>.kwf"), so a caller can hand them to the
	// device.
	Publish func(path string, data []byte) error
	// Progress, if set, receives one line per case.
	Progress io.Writer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Authority is what the probe issues, revokes and publishes through.
type Authority struct {
	RA         *ra.RA
	Revocation *revocation.Service
	// Principal is who runs the probe; its ID is recorded in every audit event of the run.
	Principal ra.Principal
}

// ErrTarget is matched (errors.Is) by the error Run returns when the target cannot be reached or does not
// speak TLS; it is wrapped in an ra.Error of kind unavailable.
var ErrTarget = errors.New("probe target unavailable")

func (o *Options) defaults() {
	if o.Profile == "" {
		o.Profile = DefaultClientProfile
		if o.Side == Server {
			o.Profile = DefaultServerProfile
		}
	}
	if o.Name == "" && o.Side == Client {
		o.Name = DefaultClientName
	}
	if o.Settle <= 0 {
		o.Settle = time.Second
	}
	if o.Wait <= 0 {
		o.Wait = 2 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// check refuses what no run may do, before anything is issued or any connection made.
func (o *Options) check(a Authority) error {
	if o.Env == "" {
		return ra.FieldErrorf(ra.KindBadRequest, "environment", "name the environment whose anchor the target trusts")
	}
	// The production environment's CAs sign only what devices and services use: probe certificates are made
	// in dev or staging (and under a throwaway CA), never with production keys.
	if o.Env == ra.ProductionEnvironment {
		return ra.FieldErrorf(ra.KindForbidden, "environment", "environment %q: probes are refused against production CAs, whose keys never sign a deliberately flawed certificate; probe a device provisioned for dev or staging", o.Env)
	}
	h := a.RA.Hierarchy()
	envSpec := h.Environments[o.Env]
	if envSpec == nil {
		return ra.FieldErrorf(ra.KindBadRequest, "environment", "unknown environment %q (configured: %s)", o.Env, strings.Join(h.EnvironmentNames(), ", "))
	}
	if a.RA.Profiles()[o.Profile] == nil {
		return ra.FieldErrorf(ra.KindBadRequest, "profile", "unknown profile %q", o.Profile)
	}
	if o.Product == "" {
		var users []string
		for _, pl := range h.ProductLineNames(o.Env) {
			if slices.Contains(envSpec.ProductLines[pl].Profiles, o.Profile) {
				users = append(users, pl)
			}
		}
		if len(users) != 1 {
			return ra.FieldErrorf(ra.KindBadRequest, "product_line", "profile %q is used by %d product lines of %q (%s): name one", o.Profile, len(users), o.Env, strings.Join(users, ", "))
		}
		o.Product = users[0]
	} else if pl := envSpec.ProductLines[o.Product]; pl == nil {
		return ra.FieldErrorf(ra.KindBadRequest, "product_line", "unknown product line %q in environment %q (configured: %s)", o.Product, o.Env, strings.Join(h.ProductLineNames(o.Env), ", "))
	} else if !slices.Contains(pl.Profiles, o.Profile) {
		return ra.FieldErrorf(ra.KindBadRequest, "profile", "product line %q of %q does not issue under profile %q (it allows: %s)", o.Product, o.Env, o.Profile, strings.Join(pl.Profiles, ", "))
	}
	switch o.Side {
	case Client:
		if o.Target == "" {
			return ra.FieldErrorf(ra.KindBadRequest, "target", "the probe as a TLS client needs the device's address, HOST:PORT")
		}
		if _, _, err := net.SplitHostPort(o.Target); err != nil {
			return ra.FieldErrorf(ra.KindBadRequest, "target", "target %q is not HOST:PORT: %v", o.Target, err)
		}
	case Server:
		if o.Listener == nil {
			return ra.FieldErrorf(ra.KindBadRequest, "listen", "the probe as a TLS server needs an address to listen on for the device")
		}
		if o.Name == "" {
			return ra.FieldErrorf(ra.KindBadRequest, "name", "the probe as a TLS server needs the name the device expects of its server (its certificates carry it)")
		}
		if o.ClientCert != nil {
			return ra.FieldErrorf(ra.KindBadRequest, "client_cert", "a client identity is for the probe as a TLS client; as a server it presents certificates it makes")
		}
	default:
		return ra.FieldErrorf(ra.KindBadRequest, "as", "side %q: use client (the device serves) or server (the device connects)", o.Side)
	}
	return nil
}

// Run runs the catalogue against the target and returns the report. It refuses production and bad options
// (ra.Error, kind bad request or forbidden) and a target that is down or does not speak TLS (ErrTarget, kind
// unavailable) before it issues anything.
func Run(ctx context.Context, a Authority, o Options) (*Report, error) {
	o.defaults()
	if err := o.check(a); err != nil {
		if o.Listener != nil {
			_ = o.Listener.Close()
		}
		return nil, err
	}
	r := &Report{Kind: Kind, Env: o.Env, Product: o.Product, Profile: o.Profile, As: o.Side, Cases: []Case{}}
	var first net.Conn
	switch o.Side {
	case Client:
		r.Target = o.Target
		if err := preflight(ctx, o.Target); err != nil {
			return nil, err
		}
	case Server:
		defer o.Listener.Close()
		r.Target = o.Listener.Addr().String()
		// The device's first connection shows it is there before anything is issued for it.
		progress(o, "waiting up to %s for the device to connect to %s", o.Wait, r.Target)
		c, err := accept(ctx, o.Listener, o.Wait)
		if err != nil {
			return nil, ra.Wrap(ra.KindUnavailable, fmt.Errorf("%w: no device connected to %s within %s: %v", ErrTarget, r.Target, o.Wait, err))
		}
		first = c
	}
	m, err := prepare(ctx, a, &o, r)
	if err != nil {
		if first != nil {
			_ = first.Close()
		}
		return nil, err
	}
	defer m.cleanup(ctx, a, r)
	cases := catalogue(&o, m)
	for i, c := range cases {
		res := Case{Name: c.name, Description: c.description, Expected: c.expected, Serial: c.serial}
		switch {
		case c.na != "":
			res.Observed, res.Result = "not run: "+c.na, NA
		case o.Side == Client:
			out := dial(ctx, o, c)
			res.Observed, res.Alert = out.observed, out.alert
			res.Result = judge(c.expected, out)
		default:
			conn := first
			first = nil
			if conn == nil {
				conn, err = accept(ctx, o.Listener, o.Wait)
				if err != nil {
					r.Notes = append(r.Notes, fmt.Sprintf("the device stopped connecting: no connection within %s for case %s", o.Wait, c.name))
					for _, rest := range cases[i:] {
						r.Cases = append(r.Cases, Case{Name: rest.name, Description: rest.description, Expected: rest.expected, Serial: rest.serial,
							Observed: "not run: the device did not connect", Result: NA})
					}
					r.GeneratedAt = o.Now().UTC().Truncate(time.Second)
					r.summarise()
					return r, ra.Wrap(ra.KindUnavailable, fmt.Errorf("%w: the device stopped connecting to %s: no connection within %s for case %s (%d of %d cases run)", ErrTarget, r.Target, o.Wait, c.name, i, len(cases)))
				}
			}
			out := serve(ctx, o, c, conn)
			res.Observed, res.Alert = out.observed, out.alert
			res.Result = judge(c.expected, out)
		}
		r.Cases = append(r.Cases, res)
		progress(o, "%-22s %-4s expected %s, observed %s", res.Name, res.Result, res.Expected, res.Observed)
	}
	if first != nil {
		_ = first.Close()
	}
	r.GeneratedAt = o.Now().UTC().Truncate(time.Second)
	r.summarise()
	if len(r.Cases) > 0 && r.Cases[0].Name == CaseControl && r.Cases[0].Result == Fail {
		r.Notes = append(r.Notes, "the control case failed: the target refused a good identity, so the refusals of the other cases show nothing about the flaws they carry")
	}
	return r, nil
}

func progress(o Options, format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "probe: "+format+"\n", args...)
	}
}

// accept waits up to wait for the next connection.
func accept(ctx context.Context, ln net.Listener, wait time.Duration) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
		_ = d.SetDeadline(time.Now().Add(wait))
		defer func() { _ = d.SetDeadline(time.Time{}) }()
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		_ = ln.Close()
		return nil, ctx.Err()
	}
}
