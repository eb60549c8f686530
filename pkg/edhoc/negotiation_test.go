package edhoc_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"slices"
	"testing"

	"github.com/keyward/keyward/pkg/edhoc"
)

// p256Party is an endpoint with a P-256 key in a CCS, identified by kid.
type p256Party struct {
	key  *ecdsa.PrivateKey
	kid  []byte
	ccs  []byte
	cred *edhoc.Credential
}

func newP256Party(t *testing.T, kid byte) *p256Party {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// {8: {1: {1: 2, -1: 1, -2: x, -3: y}}}
	ccs := append([]byte{0xa1, 0x08, 0xa1, 0x01, 0xa4, 0x01, 0x02, 0x20, 0x01, 0x21, 0x58, 0x20}, pt[1:33]...)
	ccs = append(append(ccs, 0x22, 0x58, 0x20), pt[33:]...)
	return &p256Party{key: k, kid: []byte{kid}, ccs: ccs, cred: edhoc.KIDCredential([]byte{kid}, ccs, k)}
}

func pair(t *testing.T, iSuites []edhoc.Suite, selected edhoc.Suite, rSuites []edhoc.Suite, method edhoc.Method, hooks edhoc.EADHooks) (*edhoc.Initiator, *edhoc.Responder) {
	t.Helper()
	i, r := newP256Party(t, 0x0a), newP256Party(t, 0x0b)
	var ki, kr edhoc.KeySet
	if err := ki.AddCCS(r.kid, r.ccs); err != nil {
		t.Fatal(err)
	}
	if err := kr.AddCCS(i.kid, i.ccs); err != nil {
		t.Fatal(err)
	}
	init, err := edhoc.NewInitiator(edhoc.Config{Method: method, Suites: iSuites, Selected: &selected, Credential: i.cred, Verifier: &ki, EAD: hooks})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := edhoc.NewResponder(edhoc.Config{Suites: rSuites, Credential: r.cred, Verifier: &kr, EAD: hooks})
	if err != nil {
		t.Fatal(err)
	}
	return init, resp
}

// TestDowngradeRefused: an Initiator that selected suite 2 after a forged error, while both ends support
// its preferred suite 6, is refused by the Responder, which names suite 6 (RFC 9528 section 6.3.2).
func TestDowngradeRefused(t *testing.T) {
	init, resp := pair(t, []edhoc.Suite{edhoc.Suite6, edhoc.Suite2}, edhoc.Suite2, []edhoc.Suite{edhoc.Suite2, edhoc.Suite6}, edhoc.MethodSigSig, edhoc.EADHooks{})
	m1, err := init.Message1()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = resp.ProcessMessage1(m1)
	var se *edhoc.SuiteError
	if !errors.As(err, &se) || !slices.Equal(se.Supported, []edhoc.Suite{edhoc.Suite6}) {
		t.Fatalf("ProcessMessage1 = %v; want a refusal naming suite 6", err)
	}
	// The error reply was lost and message_1 comes again: the same refusal, not a replay error.
	if _, _, err2 := resp.ProcessMessage1(m1); !errors.Is(err2, edhoc.ErrWrongSuite) || !bytes.Equal(edhoc.ErrorReply(err2), edhoc.ErrorReply(err)) {
		t.Fatalf("retransmitted message_1: %v", err2)
	}
	if err := init.ProcessMessage2(edhoc.ErrorReply(err)); !errors.Is(err, edhoc.ErrWrongSuite) {
		t.Fatalf("Initiator on error 2: %v", err)
	}
}

// TestTamperedMessage1 changes message_1 in transit (the attacker drops the Initiator's preferred suite
// from SUITES_I, or changes C_I): the Responder cannot tell, but TH_2 no longer matches, so the Initiator
// refuses message_2 (RFC 9528 section 9: the transcript covers message_1).
func TestTamperedMessage1(t *testing.T) {
	for _, method := range []edhoc.Method{edhoc.MethodSigSig, edhoc.MethodSigDH, edhoc.MethodDHSig, edhoc.MethodDHDH} {
		init, resp := pair(t, []edhoc.Suite{edhoc.Suite2}, edhoc.Suite2, []edhoc.Suite{edhoc.Suite2}, method, edhoc.EADHooks{})
		m1, err := init.Message1()
		if err != nil {
			t.Fatal(err)
		}
		forged := slices.Clone(m1)
		forged[len(forged)-1] ^= 0x01 // C_I, a one-byte integer, becomes another one
		_, m2, err := resp.ProcessMessage1(forged)
		if err != nil {
			t.Fatalf("method %d: %v", method, err)
		}
		// Under the wrong TH_2 the keystream is wrong, so PLAINTEXT_2 decodes as garbage, or, by chance,
		// as something whose credential or MAC does not verify.
		err = init.ProcessMessage2(m2)
		if !errors.Is(err, edhoc.ErrMalformed) && !errors.Is(err, edhoc.ErrAuthentication) && !errors.Is(err, edhoc.ErrUnknownCredential) {
			t.Fatalf("method %d: message_2 answering a forged message_1: %v", method, err)
		}
	}
}

// TestMethodsAndEAD runs every method with suite 2 and EAD in every message; a critical item nobody
// understands aborts the session.
func TestMethodsAndEAD(t *testing.T) {
	got := map[int][]byte{}
	hooks := edhoc.EADHooks{
		Send: func(n int) []edhoc.EAD {
			return []edhoc.EAD{{Label: 0, Value: []byte{0, 0}}, {Label: 77, Value: []byte{byte(n)}}}
		},
		Receive: func(n int, e edhoc.EAD) (bool, error) {
			got[n] = e.Value
			return e.Label == 77, nil
		},
	}
	for _, method := range []edhoc.Method{edhoc.MethodSigSig, edhoc.MethodSigDH, edhoc.MethodDHSig, edhoc.MethodDHDH} {
		clear(got)
		init, resp := pair(t, []edhoc.Suite{edhoc.Suite2}, edhoc.Suite2, []edhoc.Suite{edhoc.Suite2}, method, hooks)
		m1, _ := init.Message1()
		rs, m2, err := resp.ProcessMessage1(m1)
		if err != nil {
			t.Fatal(err)
		}
		if err := init.ProcessMessage2(m2); err != nil {
			t.Fatalf("method %d: %v", method, err)
		}
		m3, _ := init.Message3()
		if err := rs.ProcessMessage3(m3); err != nil {
			t.Fatalf("method %d: %v", method, err)
		}
		m4, _ := rs.Message4()
		if err := init.ProcessMessage4(m4); err != nil {
			t.Fatalf("method %d: %v", method, err)
		}
		for n := 1; n <= 4; n++ {
			if !slices.Equal(got[n], []byte{byte(n)}) {
				t.Fatalf("method %d: EAD_%d received %x", method, n, got[n])
			}
		}
		if !slices.Equal(init.PRKOut(), rs.PRKOut()) {
			t.Fatalf("method %d: PRK_out differs", method)
		}
	}
	critical := edhoc.EADHooks{Send: func(n int) []edhoc.EAD { return []edhoc.EAD{{Label: -5}} }}
	init, resp := pair(t, []edhoc.Suite{edhoc.Suite2}, edhoc.Suite2, []edhoc.Suite{edhoc.Suite2}, edhoc.MethodSigSig, critical)
	m1, _ := init.Message1()
	if _, _, err := resp.ProcessMessage1(m1); !errors.Is(err, edhoc.ErrCriticalEAD) {
		t.Fatalf("critical EAD_1 nobody understands: %v", err)
	}
}
