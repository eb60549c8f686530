package edhoc_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/keyward/keyward/pkg/edhoc"
)

// addSeeds adds every RFC 9529 value whose label starts with one of prefixes.
func addSeeds(f *testing.F, prefixes ...string) {
	tr, err := readTrace()
	if err != nil {
		f.Fatal(err)
	}
	for _, vs := range tr {
		for _, v := range vs {
			for _, p := range prefixes {
				if len(v.label) >= len(p) && v.label[:len(p)] == p {
					f.Add(v.data)
				}
			}
		}
	}
}

// mustRefuse checks that an error is one of the package's classified errors, never a panic or a bare one.
func classified(err error) bool {
	for _, e := range []error{edhoc.ErrMalformed, edhoc.ErrUnsupportedSuite, edhoc.ErrWrongSuite, edhoc.ErrInvalidKey,
		edhoc.ErrUnknownCredential, edhoc.ErrCredential, edhoc.ErrAuthentication, edhoc.ErrDecrypt, edhoc.ErrReplay,
		edhoc.ErrUnknownConnection, edhoc.ErrCriticalEAD, edhoc.ErrPeer, edhoc.ErrState} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func FuzzMessage1(f *testing.F) {
	addSeeds(f, "message_1", "Invalid message_1")
	sk := ed25519.NewKeyFromSeed(make([]byte, 32))
	ccs := append([]byte{0xa1, 0x08, 0xa1, 0x01, 0xa3, 0x01, 0x01, 0x20, 0x06, 0x21, 0x58, 0x20}, sk.Public().(ed25519.PublicKey)...)
	var ks edhoc.KeySet
	if err := ks.AddCCS([]byte{1}, ccs); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		perr := edhoc.ParseMessage1ForTest(msg)
		r, err := edhoc.NewResponder(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite0, edhoc.Suite6}, Verifier: &ks,
			Credential: edhoc.KIDCredential([]byte{1}, ccs, sk)})
		if err != nil {
			t.Fatal(err)
		}
		s, m2, err := r.ProcessMessage1(msg)
		if perr != nil && err == nil {
			t.Fatalf("the parser refused %x (%v) but the Responder answered it", msg, perr)
		}
		if err != nil && (s != nil || m2 != nil || !classified(err)) {
			t.Fatalf("ProcessMessage1(%x) = %v, %x, %v", msg, s, m2, err)
		}
	})
}

func FuzzMessage2(f *testing.F) {
	addSeeds(f, "message_2", "Invalid message_2", "error")
	f.Fuzz(func(t *testing.T, msg []byte) {
		sk := ed25519.NewKeyFromSeed(make([]byte, 32))
		var ks edhoc.KeySet
		i, err := edhoc.NewInitiator(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite0}, Verifier: &ks,
			Credential: edhoc.KIDCredential([]byte{1}, []byte{0xa0}, sk)})
		if err != nil {
			t.Fatal(err)
		}
		x, _ := ecdh.X25519().NewPrivateKey(make([]byte, 32))
		i.SetEphemeral(x)
		if _, err := i.Message1(); err != nil {
			t.Fatal(err)
		}
		_ = edhoc.ParseMessage2ForTest(msg)
		if err := i.ProcessMessage2(msg); err == nil || !classified(err) {
			t.Fatalf("ProcessMessage2(%x) = %v", msg, err)
		}
	})
}

func FuzzPlaintext(f *testing.F) {
	addSeeds(f, "PLAINTEXT_2", "PLAINTEXT_3", "Invalid PLAINTEXT_2", "ID_CRED")
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, parse := range map[string]func([]byte) error{"PLAINTEXT_2": edhoc.ParsePlaintext2ForTest,
			"PLAINTEXT_3": edhoc.ParsePlaintext3ForTest, "ID_CRED": edhoc.ParseIDCredForTest} {
			if err := parse(b); err != nil && !classified(err) {
				t.Fatalf("%s(%x): unclassified error %v", name, b, err)
			}
		}
		if _, err := edhoc.ParseCCS(b); err != nil && !classified(err) {
			t.Fatalf("ParseCCS(%x): unclassified error %v", b, err)
		}
	})
}

func FuzzError(f *testing.F) {
	addSeeds(f, "error")
	f.Add([]byte{0x01, 0x63, 'a', 'b', 'c'})
	f.Add([]byte{0x03, 0xf5})
	f.Add([]byte{0x02, 0x82, 0x06, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		em, err := edhoc.ParseError(b)
		if err != nil {
			if !errors.Is(err, edhoc.ErrMalformed) {
				t.Fatalf("ParseError(%x): %v", b, err)
			}
			return
		}
		if em.Code >= 1 && em.Code <= 3 {
			again, err := em.Marshal()
			if err != nil {
				return // a diagnostic longer than this package sends is read, truncated
			}
			if em2, err := edhoc.ParseError(again); err != nil || em2.Code != em.Code {
				t.Fatalf("re-encoding %+v gives %x, %v", em, again, err)
			}
		}
	})
}

// FuzzHandle drives the Responder's transport entry point, message_1 and message_3/4 alike.
func FuzzHandle(f *testing.F) {
	addSeeds(f, "message_1", "message_3", "Invalid message_1")
	f.Add([]byte{0xf5, 0x00})
	f.Add([]byte{0x2d, 0x41, 0x00})
	sk := ed25519.NewKeyFromSeed(make([]byte, 32))
	ccs := append([]byte{0xa1, 0x08, 0xa1, 0x01, 0xa3, 0x01, 0x01, 0x20, 0x06, 0x21, 0x58, 0x20}, sk.Public().(ed25519.PublicKey)...)
	var ks edhoc.KeySet
	if err := ks.AddCCS([]byte{1}, ccs); err != nil {
		f.Fatal(err)
	}
	r, err := edhoc.NewResponder(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite0}, Verifier: &ks, Credential: edhoc.KIDCredential([]byte{1}, ccs, sk)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		reply, err := r.Handle(req, true)
		if err != nil {
			if _, perr := edhoc.ParseError(reply); perr != nil {
				t.Fatalf("Handle(%x) failed with %v but replied %x, not an error message", req, err, reply)
			}
		}
	})
}

// edPair returns an Initiator and a Responder with Ed25519 CCS credentials, suite 0, method 0.
func edPair(t testing.TB) (*edhoc.Initiator, *edhoc.Responder) {
	t.Helper()
	mk := func(seed byte) (ed25519.PrivateKey, []byte) {
		sk := ed25519.NewKeyFromSeed(bytes32(seed))
		return sk, append([]byte{0xa1, 0x08, 0xa1, 0x01, 0xa3, 0x01, 0x01, 0x20, 0x06, 0x21, 0x58, 0x20}, sk.Public().(ed25519.PublicKey)...)
	}
	skI, ccsI := mk(1)
	skR, ccsR := mk(2)
	var ki, kr edhoc.KeySet
	if err := ki.AddCCS([]byte{0x0b}, ccsR); err != nil {
		t.Fatal(err)
	}
	if err := kr.AddCCS([]byte{0x0a}, ccsI); err != nil {
		t.Fatal(err)
	}
	i, err := edhoc.NewInitiator(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite0}, Credential: edhoc.KIDCredential([]byte{0x0a}, ccsI, skI), Verifier: &ki})
	if err != nil {
		t.Fatal(err)
	}
	r, err := edhoc.NewResponder(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite0}, Credential: edhoc.KIDCredential([]byte{0x0b}, ccsR, skR), Verifier: &kr})
	if err != nil {
		t.Fatal(err)
	}
	return i, r
}

func bytes32(b byte) []byte {
	s := make([]byte, 32)
	s[0] = b
	return s
}

// FuzzMessage3 gives a Responder session that awaits message_3 arbitrary bytes in its place.
func FuzzMessage3(f *testing.F) {
	addSeeds(f, "message_3", "PLAINTEXT_3", "error")
	f.Fuzz(func(t *testing.T, msg []byte) {
		i, r := edPair(t)
		m1, _ := i.Message1()
		rs, m2, err := r.ProcessMessage1(m1)
		if err != nil {
			t.Fatal(err)
		}
		if err := i.ProcessMessage2(m2); err != nil {
			t.Fatal(err)
		}
		m3, _ := i.Message3()
		err = rs.ProcessMessage3(msg)
		if bytes.Equal(msg, m3) {
			if err != nil {
				t.Fatalf("the genuine message_3 was refused: %v", err)
			}
			return
		}
		if err == nil || !classified(err) || rs.Complete() {
			t.Fatalf("ProcessMessage3(%x) = %v", msg, err)
		}
	})
}

// FuzzMessage4 gives an Initiator that sent message_3 arbitrary bytes as message_4.
func FuzzMessage4(f *testing.F) {
	addSeeds(f, "message_4", "error")
	f.Fuzz(func(t *testing.T, msg []byte) {
		i, r := edPair(t)
		m1, _ := i.Message1()
		rs, m2, err := r.ProcessMessage1(m1)
		if err != nil {
			t.Fatal(err)
		}
		if err := i.ProcessMessage2(m2); err != nil {
			t.Fatal(err)
		}
		m3, _ := i.Message3()
		if err := rs.ProcessMessage3(m3); err != nil {
			t.Fatal(err)
		}
		m4, _ := rs.Message4()
		err = i.ProcessMessage4(msg)
		if bytes.Equal(msg, m4) {
			if err != nil {
				t.Fatalf("the genuine message_4 was refused: %v", err)
			}
			return
		}
		if err == nil || !classified(err) {
			t.Fatalf("ProcessMessage4(%x) = %v", msg, err)
		}
	})
}
