package edhoc_test

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/keyward/keyward/pkg/edhoc"
)

// TestRFC9529InvalidTraces feeds every invalid message of RFC 9529 section 4 to the parser or the
// Responder and checks that each is refused for the right reason and leaves no session behind.
func TestRFC9529InvalidTraces(t *testing.T) {
	tr := loadTrace(t)
	sk := ed25519.NewKeyFromSeed(make([]byte, 32))
	pub := sk.Public().(ed25519.PublicKey)
	ccs := append([]byte{0xa1, 0x08, 0xa1, 0x01, 0xa3, 0x01, 0x01, 0x20, 0x06, 0x21, 0x58, 0x20}, pub...)
	var ks edhoc.KeySet
	if err := ks.AddCCS([]byte{1}, ccs); err != nil {
		t.Fatal(err)
	}
	newResponder := func() *edhoc.Responder {
		r, err := edhoc.NewResponder(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite0, edhoc.Suite2}, Verifier: &ks,
			Credential: edhoc.KIDCredential([]byte{1}, ccs, sk)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, c := range []struct {
		sec  string
		want error
	}{
		{"4.1.1", edhoc.ErrMalformed},
		{"4.1.2", edhoc.ErrMalformed},
		{"4.1.3", edhoc.ErrMalformed},
		{"4.1.4", edhoc.ErrMalformed},
		{"4.2.1", edhoc.ErrWrongSuite}, // suite 24 is not offered here, so it is refused before the key
		{"4.2.2", edhoc.ErrInvalidKey},
		{"4.2.3", edhoc.ErrInvalidKey},
		{"4.2.4", edhoc.ErrInvalidKey},
		{"4.2.6", edhoc.ErrInvalidKey},
		{"4.3.1", edhoc.ErrMalformed},
		{"4.3.2", edhoc.ErrMalformed},
	} {
		r := newResponder()
		msg := tr.get(t, c.sec, "Invalid message_1")
		s, m2, err := r.ProcessMessage1(msg)
		if !errors.Is(err, c.want) || s != nil || m2 != nil {
			t.Errorf("RFC 9529 section %s: ProcessMessage1 = %v, %x, %v; want %v", c.sec, s, m2, err, c.want)
		}
	}
	if err := edhoc.ParseMessage2ForTest(tr.get(t, "4.1.5", "Invalid message_2")); !errors.Is(err, edhoc.ErrMalformed) {
		t.Errorf("RFC 9529 section 4.1.5: %v", err)
	}
	for _, sec := range []string{"4.1.6", "4.1.7", "4.2.5"} {
		if err := edhoc.ParsePlaintext2ForTest(tr.get(t, sec, "Invalid PLAINTEXT_2")); !errors.Is(err, edhoc.ErrMalformed) {
			t.Errorf("RFC 9529 section %s: %v", sec, err)
		}
	}
}
