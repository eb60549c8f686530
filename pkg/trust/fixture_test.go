package trust_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/pkg/trust"
)

// now is the device's clock in these tests; pkitest's CAs are valid from an hour before it for a day.
var now = time.Now()

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// newUpdate returns version v of env's anchors cas, valid from an hour ago for thirty days.
func newUpdate(env string, v uint64, cas ...*pkitest.CA) *trust.Update {
	u := &trust.Update{Environment: env, Version: v, NotBefore: now.Add(-time.Hour).Unix(), NotAfter: now.Add(30 * 24 * time.Hour).Unix(), IssuedAt: now.Unix()}
	for _, ca := range cas {
		u.Anchors = append(u.Anchors, ca.Cert.Raw)
	}
	return u
}

// signUpdate signs u with signers, failing the test on error.
func signUpdate(t testing.TB, u *trust.Update, signers ...crypto.Signer) []byte {
	t.Helper()
	data, err := trust.Sign(u, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// held returns the anchors cas of env at version, failing the test on error.
func held(t testing.TB, env string, version uint64, cas ...*pkitest.CA) *trust.Anchors {
	t.Helper()
	certs := make([]*x509.Certificate, 0, len(cas))
	for _, ca := range cas {
		certs = append(certs, ca.Cert)
	}
	a, err := trust.NewAnchors(env, version, certs...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tamper decodes a signed update, lets change alter it and encodes it again.
func tamper(t testing.TB, data []byte, change func(*cose.SignMessage)) []byte {
	t.Helper()
	var msg cose.SignMessage
	if err := msg.UnmarshalCBOR(data); err != nil {
		t.Fatal(err)
	}
	change(&msg)
	out, err := msg.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sigSpec is one signature of a hand-built message: the key that signs, the algorithm its header claims and
// signs with, the key id it names, and any extra protected parameters.
type sigSpec struct {
	key   crypto.Signer
	alg   cose.Algorithm
	kid   []byte
	extra map[any]any
}

// build makes a COSE_Sign with content type ct over payload, for messages Sign would never make.
func build(t testing.TB, ct any, payload []byte, sigs ...sigSpec) []byte {
	t.Helper()
	msg := cose.NewSignMessage()
	msg.Headers.Protected = cose.ProtectedHeader{cose.HeaderLabelContentType: ct}
	msg.Payload = payload
	var signers []cose.Signer
	for _, s := range sigs {
		cs, err := cose.NewSigner(s.alg, s.key)
		if err != nil {
			t.Fatal(err)
		}
		sig := cose.NewSignature()
		sig.Headers.Protected = cose.ProtectedHeader{cose.HeaderLabelAlgorithm: s.alg, cose.HeaderLabelKeyID: s.kid}
		for k, v := range s.extra {
			sig.Headers.Protected[k] = v
		}
		msg.Signatures = append(msg.Signatures, sig)
		signers = append(signers, cs)
	}
	if err := msg.Sign(rand.Reader, nil, signers...); err != nil {
		t.Fatal(err)
	}
	return must(msg.MarshalCBOR())
}

// payload returns u's deterministic encoding, as Sign puts it in the message.
func payload(t testing.TB, u *trust.Update) []byte {
	t.Helper()
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	return must(em.Marshal(u))
}

// spec is the signature Sign would make with key.
func spec(key crypto.Signer, alg cose.Algorithm) sigSpec {
	return sigSpec{key: key, alg: alg, kid: must(trust.KeyID(key.Public()))}
}

// Fixed fixtures: Ed25519 roots from fixed seeds and fixed certificate templates, so that their certificates
// and every update they sign are the same bytes on every run (Ed25519 signatures are deterministic). The wire
// golden file and the fuzz corpus depend on it.
var (
	fixedNow       = time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC)
	fixedNotBefore = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fixedNotAfter  = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
)

// fixedRoot returns a root CA named cn with the Ed25519 key of seed byte s.
func fixedRoot(t testing.TB, cn string, s byte) *pkitest.CA {
	t.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{s}, ed25519.SeedSize))
	cert := pkitest.SelfSigned(t, &x509.Certificate{SerialNumber: big.NewInt(int64(s)), Subject: pkix.Name{CommonName: cn, Organization: []string{"Keyward Test"}},
		NotBefore: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2045, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, key)
	return &pkitest.CA{Cert: cert, Key: key}
}

// fixedRollover returns the fixed old and new dev roots and the overlap update (version 1, both roots, signed
// by both).
func fixedRollover(t testing.TB) (oldRoot, newRoot *pkitest.CA, update []byte) {
	t.Helper()
	oldRoot, newRoot = fixedRoot(t, "Keyward dev Root CA", 1), fixedRoot(t, "Keyward dev Root CA 2", 2)
	u := &trust.Update{Environment: "dev", Version: 1, Anchors: [][]byte{oldRoot.Cert.Raw, newRoot.Cert.Raw},
		NotBefore: fixedNotBefore.Unix(), NotAfter: fixedNotAfter.Unix(), IssuedAt: fixedNotBefore.Unix()}
	return oldRoot, newRoot, signUpdate(t, u, oldRoot.Key, newRoot.Key)
}
