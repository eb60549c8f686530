package edhoc_test

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/edhoc"
)

// trace holds the values of testdata/rfc9529.txt by section.
type trace map[string][]traceValue

type traceValue struct {
	label string
	data  []byte
}

func loadTrace(t *testing.T) trace {
	t.Helper()
	tr, err := readTrace()
	if err != nil {
		t.Fatal(err)
	}
	if len(tr["2.2"]) < 10 || len(tr["3.4"]) < 10 {
		t.Fatal("testdata/rfc9529.txt holds too few values; the parser is broken")
	}
	return tr
}

func readTrace() (trace, error) {
	f, err := os.Open("testdata/rfc9529.txt")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := trace{}
	var sec string
	var cur *traceValue
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "#") || l == "":
		case strings.HasPrefix(l, "== "):
			sec = strings.Fields(l)[1]
			cur = nil
		case strings.HasPrefix(l, "-- "):
			tr[sec] = append(tr[sec], traceValue{label: l[3:]})
			cur = &tr[sec][len(tr[sec])-1]
		default:
			b, err := hex.DecodeString(strings.ReplaceAll(l, " ", ""))
			if err != nil || cur == nil {
				return nil, fmt.Errorf("testdata/rfc9529.txt: bad line %q", l)
			}
			cur.data = append(cur.data, b...)
		}
	}
	return tr, sc.Err()
}

// get returns the one value in section sec whose label starts with prefix.
func (tr trace) get(t *testing.T, sec, prefix string) []byte {
	t.Helper()
	var found []byte
	n := 0
	for _, v := range tr[sec] {
		if strings.HasPrefix(v.label, prefix) {
			found, n = v.data, n+1
		}
	}
	if n != 1 {
		t.Fatalf("RFC 9529 section %s: %d values labelled %q", sec, n, prefix)
	}
	return found
}

func equal(t *testing.T, sec, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("RFC 9529 section %s %s:\n got %x\nwant %x", sec, what, got, want)
	}
}

// TestRFC9529Trace1 runs method 0, suite 0, x5t-identified X.509 certificates (RFC 9529 section 2) and
// compares every value the trace lists that the API exposes.
func TestRFC9529Trace1(t *testing.T) {
	tr := loadTrace(t)
	skI := ed25519.NewKeyFromSeed(tr.get(t, "2.3", "Initiator's private authentication key"))
	skR := ed25519.NewKeyFromSeed(tr.get(t, "2.2", "Responder's private authentication key"))
	equal(t, "2.3", "PK_I", skI.Public().(ed25519.PublicKey), tr.get(t, "2.3", "Initiator's public authentication key"))
	certI := tr.get(t, "2.3", "CRED_I (Raw Value)")
	certR := tr.get(t, "2.2", "CRED_R (Raw Value)")
	credI, err := edhoc.X509Credential([][]byte{certI}, skI, false)
	if err != nil {
		t.Fatal(err)
	}
	credR, err := edhoc.X509Credential([][]byte{certR}, skR, false)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "2.3", "ID_CRED_I", credI.IDCred, tr.get(t, "2.3", "ID_CRED_I"))
	equal(t, "2.2", "ID_CRED_R", credR.IDCred, tr.get(t, "2.2", "ID_CRED_R"))
	equal(t, "2.3", "CRED_I", credI.Cred, tr.get(t, "2.3", "CRED_I (CBOR Data Item)"))
	var pinI, pinR edhoc.KeySet
	if err := pinI.AddCertificate(certR); err != nil {
		t.Fatal(err)
	}
	if err := pinR.AddCertificate(certI); err != nil {
		t.Fatal(err)
	}
	init, err := edhoc.NewInitiator(edhoc.Config{Method: edhoc.MethodSigSig, Suites: []edhoc.Suite{edhoc.Suite0},
		Credential: credI, Verifier: &pinI, ConnectionID: tr.get(t, "2.1", "Connection identifier chosen by Initiator / C_I (Raw Value)")})
	if err != nil {
		t.Fatal(err)
	}
	x, err := ecdh.X25519().NewPrivateKey(tr.get(t, "2.1", "Initiator's ephemeral private key"))
	if err != nil {
		t.Fatal(err)
	}
	init.SetEphemeral(x)
	resp, err := edhoc.NewResponder(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite0}, Credential: credR, Verifier: &pinR})
	if err != nil {
		t.Fatal(err)
	}
	y, err := ecdh.X25519().NewPrivateKey(tr.get(t, "2.2", "Responder's ephemeral private key"))
	if err != nil {
		t.Fatal(err)
	}
	resp.SetNext(y, tr.get(t, "2.2", "Connection identifier chosen by Responder / C_R (Raw Value)"))
	runTrace(t, tr, "2", init, resp)
}

// TestRFC9529Trace2 runs method 3, suites 6 then 2 with the negotiation error, CCS credentials by kid
// (RFC 9529 section 3).
func TestRFC9529Trace2(t *testing.T) {
	tr := loadTrace(t)
	p256 := ecdh.P256()
	skI, err := p256.NewPrivateKey(tr.get(t, "3.5", "Initiator's private authentication key"))
	if err != nil {
		t.Fatal(err)
	}
	skR, err := p256.NewPrivateKey(tr.get(t, "3.4", "Responder's private authentication key"))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "3.5", "PK_I x", skI.PublicKey().Bytes()[1:33], tr.get(t, "3.5", "Initiator's public authentication key, 'x'"))
	credIBytes, credRBytes := tr.get(t, "3.5", "CRED_I"), tr.get(t, "3.4", "CRED_R")
	kidI, kidR := kidOf(t, tr.get(t, "3.5", "ID_CRED_I")), kidOf(t, tr.get(t, "3.4", "ID_CRED_R"))
	credI, credR := edhoc.KIDCredential(kidI, credIBytes, skI), edhoc.KIDCredential(kidR, credRBytes, skR)
	equal(t, "3.5", "ID_CRED_I", credI.IDCred, tr.get(t, "3.5", "ID_CRED_I"))
	var pinI, pinR edhoc.KeySet
	if err := pinI.AddCCS(kidR, credRBytes); err != nil {
		t.Fatal(err)
	}
	if err := pinR.AddCCS(kidI, credIBytes); err != nil {
		t.Fatal(err)
	}
	resp, err := edhoc.NewResponder(edhoc.Config{Suites: []edhoc.Suite{edhoc.Suite2}, Credential: credR, Verifier: &pinR})
	if err != nil {
		t.Fatal(err)
	}

	// Section 3.1 and 3.2: the Responder refuses suite 6 with SUITES_R = 2.
	m1first := tr.get(t, "3.1", "message_1")
	_, _, err = resp.ProcessMessage1(m1first)
	var se *edhoc.SuiteError
	if !errors.As(err, &se) || !errors.Is(err, edhoc.ErrWrongSuite) {
		t.Fatalf("first message_1: got %v, want a SuiteError", err)
	}
	reply := edhoc.ErrorReply(err)
	equal(t, "3.2", "error", reply, tr.get(t, "3.2", "error"))
	em, err := edhoc.ParseError(reply)
	if err != nil || em.Code != edhoc.ErrCodeWrongSuite || len(em.Suites) != 1 || em.Suites[0] != edhoc.Suite2 {
		t.Fatalf("ParseError(%x) = %+v, %v", reply, em, err)
	}
	prefs := []edhoc.Suite{edhoc.Suite6, edhoc.Suite2}
	next, ok := edhoc.SelectSuite(prefs, em.Suites)
	if !ok || next != edhoc.Suite2 {
		t.Fatalf("SelectSuite = %v, %v; want suite 2", next, ok)
	}

	// Section 3.3 onwards: the second message_1, with SUITES_I = [6, 2].
	init, err := edhoc.NewInitiator(edhoc.Config{Method: edhoc.MethodDHDH, Suites: prefs, Selected: &next,
		Credential: credI, Verifier: &pinI, ConnectionID: tr.get(t, "3.3", "Connection identifier chosen by Initiator / C_I (Raw Value)")})
	if err != nil {
		t.Fatal(err)
	}
	x, err := p256.NewPrivateKey(tr.get(t, "3.3", "Initiator's ephemeral private key"))
	if err != nil {
		t.Fatal(err)
	}
	init.SetEphemeral(x)
	y, err := p256.NewPrivateKey(tr.get(t, "3.4", "Responder's ephemeral private key"))
	if err != nil {
		t.Fatal(err)
	}
	resp.SetNext(y, tr.get(t, "3.4", "Connection identifier chosen by Responder / C_R (raw value)"))
	runTrace(t, tr, "3", init, resp)
}

func kidOf(t *testing.T, idCred []byte) []byte {
	t.Helper()
	// {4: h'..'} with a one-byte kid: a1 04 41 kk.
	if len(idCred) != 4 || idCred[0] != 0xa1 || idCred[1] != 0x04 || idCred[2] != 0x41 {
		t.Fatalf("ID_CRED %x is not a one-byte kid", idCred)
	}
	return idCred[3:]
}

// runTrace drives both sides and checks the values of the trace in section top (2 or 3).
func runTrace(t *testing.T, tr trace, top string, init *edhoc.Initiator, resp *edhoc.Responder) {
	t.Helper()
	s := func(n int) string { // section numbers: trace 1 has no negotiation sections
		if top == "2" {
			return top + "." + string(rune('0'+n))
		}
		return top + "." + string(rune('0'+n+2))
	}
	m1, err := init.Message1()
	if err != nil {
		t.Fatal(err)
	}
	equal(t, s(1), "message_1", m1, tr.get(t, s(1), "message_1"))
	rs, m2, err := resp.ProcessMessage1(m1)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, s(2), "message_2", m2, tr.get(t, s(2), "message_2"))
	if err := init.ProcessMessage2(m2); err != nil {
		t.Fatal(err)
	}
	m3, err := init.Message3()
	if err != nil {
		t.Fatal(err)
	}
	equal(t, s(3), "message_3", m3, tr.get(t, s(3), "message_3"))
	if err := rs.ProcessMessage3(m3); err != nil {
		t.Fatal(err)
	}
	m4, err := rs.Message4()
	if err != nil {
		t.Fatal(err)
	}
	equal(t, s(4), "message_4", m4, tr.get(t, s(4), "message_4"))
	if err := init.ProcessMessage4(m4); err != nil {
		t.Fatal(err)
	}
	for who, x := range map[string]edhoc.Transcript{"Initiator": init.Transcript(), "Responder": rs.Transcript()} {
		for _, c := range []struct {
			sec, label string
			got        []byte
		}{
			{s(2), "TH_2 (Raw Value)", x.TH2},
			{s(2), "PRK_2e", x.PRK2e},
			{s(2), "PRK_3e2m", x.PRK3e2m},
			{s(2), "MAC_2 (Raw Value)", x.MAC2},
			{s(2), "PLAINTEXT_2", x.Plaintext2},
			{s(2), "KEYSTREAM_2", x.Keystream2},
			{s(3), "TH_3 (Raw Value)", x.TH3},
			{s(3), "PRK_4e3m", x.PRK4e3m},
			{s(3), "MAC_3 (Raw Value)", x.MAC3},
			{s(3), "PLAINTEXT_3", x.Plaintext3},
			{s(3), "K_3", x.K3},
			{s(3), "IV_3", x.IV3},
			{s(3), "TH_4 (Raw Value)", x.TH4},
			{s(4), "K_4", x.K4},
			{s(4), "IV_4", x.IV4},
			{s(2), "G_XY", x.GXY},
			{s(2), "context_2 (CBOR Sequence)", x.Context2},
			{s(2), "Signature_or_MAC_2 (Raw Value)", x.SignatureOrMAC2},
			{s(2), "CIPHERTEXT_2", x.Ciphertext2},
			{s(3), "context_3 (CBOR Sequence)", x.Context3},
			{s(3), "Signature_or_MAC_3 (Raw Value)", x.SignatureOrMAC3},
			{s(3), "CIPHERTEXT_3", x.Ciphertext3},
			{s(4), "CIPHERTEXT_4", x.Ciphertext4},
			{s(5), "PRK_exporter (Raw Value)", x.PRKExporter},
		} {
			equal(t, c.sec, who+" "+c.label, c.got, tr.get(t, c.sec, c.label))
		}
	}
	if top == "3" { // static DH on both sides: the salts and the static-ephemeral secrets
		for who, x := range map[string]edhoc.Transcript{"Initiator": init.Transcript(), "Responder": rs.Transcript()} {
			equal(t, s(2), who+" SALT_3e2m", x.Salt3e2m, tr.get(t, s(2), "SALT_3e2m (Raw Value)"))
			equal(t, s(2), who+" G_RX", x.GRX, tr.get(t, s(2), "G_RX"))
			equal(t, s(3), who+" SALT_4e3m", x.Salt4e3m, tr.get(t, s(3), "SALT_4e3m (Raw Value)"))
			equal(t, s(3), who+" G_IY", x.GIY, tr.get(t, s(3), "G_IY"))
		}
	}
	type ends interface {
		PRKOut() []byte
		Exporter(uint16, []byte, int) ([]byte, error)
		OSCORE() (*edhoc.OSCORE, error)
		KeyUpdate([]byte) error
	}
	for who, k := range map[string]ends{"Initiator": init, "Responder": rs} {
		equal(t, s(5), who+" PRK_out", k.PRKOut(), tr.get(t, s(5), "PRK_out (Raw Value)"))
		o, err := k.OSCORE()
		if err != nil {
			t.Fatal(err)
		}
		equal(t, s(6), who+" OSCORE Master Secret", o.MasterSecret, tr.get(t, s(6), "OSCORE Master Secret (Raw Value)"))
		equal(t, s(6), who+" OSCORE Master Salt", o.MasterSalt, tr.get(t, s(6), "OSCORE Master Salt (Raw Value)"))
		client, server := tr.get(t, s(6), "Client's OSCORE Sender ID"), tr.get(t, s(6), "Server's OSCORE Sender ID")
		if who == "Initiator" {
			equal(t, s(6), who+" Sender ID", o.SenderID, client)
			equal(t, s(6), who+" Recipient ID", o.RecipientID, server)
		} else {
			equal(t, s(6), who+" Sender ID", o.SenderID, server)
		}
		// The trace writes the algorithm in decimal ("10"), which the hex reader took as the byte 0x10.
		if fmt.Sprintf("%x", tr.get(t, s(6), "Application AEAD Algorithm")) != strconv.Itoa(o.AEAD) {
			t.Errorf("%s application AEAD %d", who, o.AEAD)
		}
		if err := k.KeyUpdate(tr.get(t, s(7), "context for KeyUpdate (Raw Value)")); err != nil {
			t.Fatal(err)
		}
		equal(t, s(7), who+" PRK_out after KeyUpdate", k.PRKOut(), tr.get(t, s(7), "PRK_out after KeyUpdate"))
		o, err = k.OSCORE()
		if err != nil {
			t.Fatal(err)
		}
		equal(t, s(7), who+" OSCORE Master Secret after KeyUpdate", o.MasterSecret, tr.get(t, s(7), "OSCORE Master Secret after KeyUpdate"))
		equal(t, s(7), who+" OSCORE Master Salt after KeyUpdate", o.MasterSalt, tr.get(t, s(7), "OSCORE Master Salt after KeyUpdate"))
	}
}
