package trust_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/veraison/go-cose"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/pkg/firmware/manifest"
	"github.com/keyward/keyward/pkg/firmware/verify"
	"github.com/keyward/keyward/pkg/trust"
)

var sentinels = []error{
	trust.ErrMalformed, trust.ErrInvalidAnchor, trust.ErrWrongEnvironment, trust.ErrNotNewer, trust.ErrNotYetValid,
	trust.ErrExpired, trust.ErrNotSignedByHeld, trust.ErrNotSignedByNew, trust.ErrBadSignature,
}

// wraps returns the sentinels err wraps.
func wraps(err error) []error {
	var out []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			out = append(out, s)
		}
	}
	return out
}

// TestApplyRollover walks a device through a root rollover: the overlap update (old and new root, signed by
// both), then the retirement of the old root (signed by the new one, which the device now holds).
func TestApplyRollover(t *testing.T) {
	oldRoot := pkitest.NewRoot(t, "Keyward dev Root CA", nil)
	newRoot := pkitest.NewRoot(t, "Keyward dev Root CA 2", nil)
	factory := held(t, "dev", 0, oldRoot)

	overlap := signUpdate(t, newUpdate("dev", 1, oldRoot, newRoot), oldRoot.Key, newRoot.Key)
	v1, err := factory.Apply(overlap, now)
	if err != nil {
		t.Fatalf("apply overlap: %v", err)
	}
	if v1.Environment != "dev" || v1.Version != 1 || len(v1.Certificates()) != 2 || !v1.Certificates()[1].Equal(newRoot.Cert) {
		t.Fatalf("after overlap: %s version %d, %d anchors", v1.Environment, v1.Version, len(v1.Certificates()))
	}
	if factory.Version != 0 || len(factory.Certificates()) != 1 || !factory.Certificates()[0].Equal(oldRoot.Cert) {
		t.Fatal("Apply modified the anchors it was called on")
	}

	retire := signUpdate(t, newUpdate("dev", 2, newRoot), newRoot.Key)
	v2, err := v1.Apply(retire, now)
	if err != nil {
		t.Fatalf("apply retirement: %v", err)
	}
	if v2.Version != 2 || len(v2.Certificates()) != 1 || !v2.Certificates()[0].Equal(newRoot.Cert) {
		t.Fatalf("after retirement: version %d, %d anchors", v2.Version, len(v2.Certificates()))
	}
	// A device that missed the overlap cannot take the retirement: nothing it holds signed it.
	if _, err := factory.Apply(retire, now); !errors.Is(err, trust.ErrNotSignedByHeld) {
		t.Fatalf("retirement on a factory device = %v, want ErrNotSignedByHeld", err)
	}
	// Versions need not be consecutive: a device that missed updates takes a later one its root signed.
	skip := signUpdate(t, newUpdate("dev", 7, oldRoot, newRoot), oldRoot.Key, newRoot.Key)
	if v7, err := factory.Apply(skip, now); err != nil || v7.Version != 7 {
		t.Fatalf("skipping to version 7: %v", err)
	}
	// Sign makes one signature per distinct key.
	var msg cose.SignMessage
	if err := msg.UnmarshalCBOR(signUpdate(t, newUpdate("dev", 1, oldRoot, newRoot), oldRoot.Key, newRoot.Key, oldRoot.Key)); err != nil {
		t.Fatal(err)
	}
	if len(msg.Signatures) != 2 {
		t.Fatalf("Sign with a key given twice made %d signatures, want 2", len(msg.Signatures))
	}
}

// TestApplyRefusals: every refusal, with the error a caller tells it by.
func TestApplyRefusals(t *testing.T) {
	oldRoot := pkitest.NewRoot(t, "Keyward dev Root CA", nil)
	newRoot := pkitest.NewRoot(t, "Keyward dev Root CA 2", nil)
	attacker := pkitest.NewRoot(t, "Keyward dev Root CA", nil) // same name, other key
	staging := pkitest.NewRoot(t, "Keyward staging Root CA", nil)
	factory := held(t, "dev", 0, oldRoot)
	atV2 := held(t, "dev", 2, oldRoot)

	good := newUpdate("dev", 2, oldRoot, newRoot)
	signed := signUpdate(t, good, oldRoot.Key, newRoot.Key)

	expired := newUpdate("dev", 3, oldRoot, newRoot)
	expired.NotBefore, expired.NotAfter = now.Add(-60*24*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	early := newUpdate("dev", 3, oldRoot, newRoot)
	early.NotBefore = now.Add(time.Hour).Unix()

	leafKey := pkitest.Key(t)
	selfSignedLeaf := pkitest.SelfSigned(t, &x509.Certificate{Subject: pkix.Name{CommonName: "not a CA"}, KeyUsage: x509.KeyUsageDigitalSignature}, leafKey)
	issuing := newRoot.Sub(t, "demo-implant dev CA", nil)
	noCertSignKey := pkitest.Key(t)
	noCertSign := pkitest.SelfSigned(t, &x509.Certificate{Subject: pkix.Name{CommonName: "CA without certSign"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature}, noCertSignKey)
	withAnchor := func(c *x509.Certificate, key crypto.Signer) []byte {
		u := newUpdate("dev", 2, oldRoot)
		u.Anchors = append(u.Anchors, c.Raw)
		return must(trust.SignUnchecked(u, oldRoot.Key, key))
	}
	unchecked := func(change func(*trust.Update)) []byte {
		u := newUpdate("dev", 2, oldRoot, newRoot)
		change(u)
		return must(trust.SignUnchecked(u, oldRoot.Key, newRoot.Key))
	}
	fwTrust := must(manifest.SignTrustUpdate(&manifest.TrustUpdate{Environment: "dev", Version: 2, RootCert: newRoot.Cert.Raw, IssuedAt: now.Unix()}, oldRoot.Key, newRoot.Key))
	oldSpec, newSpec := spec(oldRoot.Key, cose.AlgorithmES256), spec(newRoot.Key, cose.AlgorithmES256)
	tooMany := []sigSpec{oldSpec, newSpec}
	for len(tooMany) <= trust.MaxSignatures {
		tooMany = append(tooMany, spec(pkitest.Key(t), cose.AlgorithmES256))
	}
	manySigs := build(t, trust.ContentType, payload(t, good), tooMany...)

	tests := []struct {
		name   string
		from   *trust.Anchors
		update []byte
		want   error
		msg    string // a part of the message
	}{
		// Signatures.
		{"forged signature of the held root", factory, tamper(t, signed, func(m *cose.SignMessage) { m.Signatures[0].Signature[5] ^= 1 }), trust.ErrBadSignature, "Keyward dev Root CA,O=Keyward Test"},
		{"forged signature of the new root", factory, tamper(t, signed, func(m *cose.SignMessage) { m.Signatures[1].Signature[5] ^= 1 }), trust.ErrBadSignature, "Root CA 2"},
		{"payload changed after signing", factory, tamper(t, signed, func(m *cose.SignMessage) {
			m.Payload = payload(t, newUpdate("dev", 9, oldRoot, newRoot))
		}), trust.ErrBadSignature, "signature 1"},
		{"extra signature by an unknown key", factory, signUpdate(t, good, oldRoot.Key, newRoot.Key, attacker.Key), trust.ErrBadSignature, "neither a held anchor nor one the update lists"},
		{"two signatures naming the held root's key", factory, build(t, trust.ContentType, payload(t, good), oldSpec, newSpec,
			sigSpec{key: pkitest.Key(t), alg: cose.AlgorithmES256, kid: oldSpec.kid}), trust.ErrBadSignature, "signs twice"},
		{"algorithm the key does not use", factory, build(t, trust.ContentType, payload(t, good), sigSpec{key: oldRoot.Key, alg: cose.AlgorithmES384, kid: oldSpec.kid}, newSpec),
			trust.ErrBadSignature, "claims algorithm ES384"},
		{"signature header with extra parameters", factory, build(t, trust.ContentType, payload(t, good), oldSpec,
			sigSpec{key: newRoot.Key, alg: cose.AlgorithmES256, kid: newSpec.kid, extra: map[any]any{int64(33): []byte{1}}}), trust.ErrBadSignature, "want exactly alg (1) and kid (4)"},
		{"signed only by the old root, introducing a new one", factory, signUpdate(t, good, oldRoot.Key), trust.ErrNotSignedByNew, "introduces CN=Keyward dev Root CA 2"},
		{"signed only by the new root", factory, signUpdate(t, good, newRoot.Key), trust.ErrNotSignedByHeld, "no valid signature"},
		{"attacker root of the same name, self-signed", factory, signUpdate(t, newUpdate("dev", 2, attacker), attacker.Key), trust.ErrNotSignedByHeld, ""},
		{"nothing held", &trust.Anchors{Environment: "dev"}, signed, trust.ErrNotSignedByHeld, "holds no anchors"},

		// Version, environment, validity.
		{"replay of the held version", atV2, signed, trust.ErrNotNewer, "version 2 and the held anchors are version 2"},
		{"rollback to an older version", atV2, signUpdate(t, newUpdate("dev", 1, oldRoot, newRoot), oldRoot.Key, newRoot.Key), trust.ErrNotNewer, "a replay or a rollback"},
		{"another environment", factory, signUpdate(t, newUpdate("staging", 2, staging), staging.Key), trust.ErrWrongEnvironment, `for "staging", this device holds "dev"`},
		{"unnamed factory set", held(t, "", 0, oldRoot), signed, trust.ErrWrongEnvironment, "name no environment"},
		{"expired", factory, signUpdate(t, expired, oldRoot.Key, newRoot.Key), trust.ErrExpired, "was valid until"},
		{"not yet valid", factory, signUpdate(t, early, oldRoot.Key, newRoot.Key), trust.ErrNotYetValid, "is valid from"},

		// Anchors.
		{"a self-signed certificate that is not a CA", factory, withAnchor(selfSignedLeaf, leafKey), trust.ErrInvalidAnchor, "not a CA certificate"},
		{"an issuing CA, not self-signed", factory, withAnchor(issuing.Cert, issuing.Key), trust.ErrInvalidAnchor, "not self-issued"},
		{"a link certificate", factory, withAnchor(oldRoot.Link(t, newRoot), newRoot.Key), trust.ErrInvalidAnchor, "not self-issued"},
		{"a CA certificate that may not sign certificates", factory, withAnchor(noCertSign, noCertSignKey), trust.ErrInvalidAnchor, "not self-signed"},
		{"an anchor listed twice", factory, unchecked(func(u *trust.Update) { u.Anchors = append(u.Anchors, u.Anchors[1]) }), trust.ErrMalformed, "listed twice"},

		// Malformed.
		{"empty", factory, nil, trust.ErrMalformed, "not a COSE_Sign"},
		{"garbage", factory, []byte{0xd8, 0x62, 0x84, 0x40}, trust.ErrMalformed, "not a COSE_Sign"},
		{"truncated", factory, signed[:len(signed)-3], trust.ErrMalformed, ""},
		{"too large", factory, make([]byte, trust.MaxUpdateSize+1), trust.ErrMalformed, "limit"},
		{"a firmware trust update", factory, fwTrust, trust.ErrMalformed, `content type "application/kw-fw-trust+cbor"`},
		{"numeric content type", factory, build(t, 60, payload(t, good), oldSpec, newSpec), trust.ErrMalformed, "content type 60"},
		{"version 0", factory, unchecked(func(u *trust.Update) { u.Version = 0 }), trust.ErrMalformed, "at least 1"},
		{"no environment", factory, unchecked(func(u *trust.Update) { u.Environment = "" }), trust.ErrMalformed, "environment (key 1)"},
		{"no anchors", factory, unchecked(func(u *trust.Update) { u.Anchors = nil }), trust.ErrMalformed, "lists 0 certificates"},
		{"window ends before it begins", factory, unchecked(func(u *trust.Update) { u.NotAfter = u.NotBefore - 1 }), trust.ErrMalformed, "not after it begins"},
		{"an anchor that is not DER", factory, unchecked(func(u *trust.Update) { u.Anchors[1] = []byte("not a certificate") }), trust.ErrMalformed, "anchor 2"},
		{"payload not deterministic", factory, build(t, trust.ContentType, append(payload(t, good), 0), oldSpec, newSpec), trust.ErrMalformed, "payload"},
		{"too many signatures", factory, manySigs, trust.ErrMalformed, "signatures, limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next, err := tc.from.Apply(tc.update, now)
			if next != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Apply = %v, %v; want %v", next, err, tc.want)
			}
			if w := wraps(err); len(w) != 1 {
				t.Errorf("error %q wraps %d sentinels, want exactly 1", err, len(w))
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}

	// Sign refuses what Apply would refuse as malformed or not an anchor.
	if _, err := trust.Sign(&trust.Update{Environment: "dev", Version: 1, Anchors: [][]byte{selfSignedLeaf.Raw}, NotAfter: 1}, oldRoot.Key); !errors.Is(err, trust.ErrInvalidAnchor) {
		t.Errorf("Sign with a non-CA anchor = %v, want ErrInvalidAnchor", err)
	}
	if _, err := trust.Sign(good); err == nil {
		t.Error("Sign without a key succeeded")
	}
	// Neither signed trust structure passes for the other.
	fw, err := verify.NewTrust("dev", 1, oldRoot.Cert, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Apply(signed); !errors.Is(err, verify.ErrTrustMalformed) {
		t.Errorf("firmware trust took a trust-anchor update: %v", err)
	}
}

// TestClockSkew: the validity window stretches by ClockSkew on both ends, no further.
func TestClockSkew(t *testing.T) {
	root := pkitest.NewRoot(t, "Keyward dev Root CA", nil)
	device := held(t, "dev", 0, root)
	u := newUpdate("dev", 1, root)
	data := signUpdate(t, u, root.Key)
	nb, na := time.Unix(u.NotBefore, 0), time.Unix(u.NotAfter, 0)
	for _, tc := range []struct {
		at   time.Time
		want error
	}{
		{nb.Add(-trust.ClockSkew), nil},
		{nb.Add(-trust.ClockSkew - time.Second), trust.ErrNotYetValid},
		{na.Add(trust.ClockSkew), nil},
		{na.Add(trust.ClockSkew + time.Second), trust.ErrExpired},
	} {
		if _, err := device.Apply(data, tc.at); !errors.Is(err, tc.want) && (tc.want != nil || err != nil) {
			t.Errorf("Apply at %s = %v, want %v", tc.at.UTC().Format(time.RFC3339), err, tc.want)
		}
	}
}

// TestAlgorithms rolls roots of every accepted key kind over to each other.
func TestAlgorithms(t *testing.T) {
	kinds := []string{"P-256", "P-384", "P-521", "Ed25519", "RSA-2048"}
	roots := map[string]*pkitest.CA{}
	for _, k := range kinds {
		roots[k] = pkitest.NewRoot(t, "Keyward dev Root CA "+k, pkitest.KeyOf(t, k))
	}
	for i, from := range kinds {
		to := kinds[(i+1)%len(kinds)]
		t.Run(from+" to "+to, func(t *testing.T) {
			oldRoot, newRoot := roots[from], roots[to]
			data := signUpdate(t, newUpdate("dev", 1, oldRoot, newRoot), oldRoot.Key, newRoot.Key)
			if _, err := held(t, "dev", 0, oldRoot).Apply(data, now); err != nil {
				t.Fatal(err)
			}
			forged := tamper(t, data, func(m *cose.SignMessage) { m.Signatures[1].Signature[3] ^= 0x10 })
			if _, err := held(t, "dev", 0, oldRoot).Apply(forged, now); !errors.Is(err, trust.ErrBadSignature) {
				t.Fatalf("forged %s signature: %v", to, err)
			}
		})
	}
	weak := pkitest.NewRoot(t, "RSA-1024 root", pkitest.KeyOf(t, "RSA-1024"))
	if _, err := trust.NewAnchors("dev", 0, weak.Cert); !errors.Is(err, trust.ErrInvalidAnchor) {
		t.Errorf("RSA-1024 anchor = %v, want ErrInvalidAnchor", err)
	}
}

// TestOverlap: during a root overlap a device verifies chains under the old and the new root. One that holds
// only the old root reaches the new one through the link certificate before the update, and directly after it.
func TestOverlap(t *testing.T) {
	oldRoot := pkitest.NewRoot(t, "Keyward dev Root CA", nil)
	newRoot := pkitest.NewRoot(t, "Keyward dev Root CA 2", pkitest.KeyOf(t, "P-384"))
	oldIssuing := oldRoot.Sub(t, "demo-implant dev CA", nil)
	newIssuing := newRoot.Sub(t, "demo-implant dev CA", nil)
	link := oldRoot.Link(t, newRoot) // NewWithOld, RFC 4210 section 4.4
	leaf := func(ca *pkitest.CA, serial string) *x509.Certificate {
		return ca.Leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: "DEMO-" + serial}, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, pkitest.Key(t).Public())
	}
	oldLeaf, newLeaf := leaf(oldIssuing, "00000001"), leaf(newIssuing, "00000002")
	staging := pkitest.NewRoot(t, "Keyward staging Root CA", nil)
	stagingLeaf := leaf(staging.Sub(t, "demo-implant staging CA", nil), "00000003")

	check := func(t *testing.T, a *trust.Anchors, l *x509.Certificate, inter []*x509.Certificate, wantRoot *x509.Certificate) {
		t.Helper()
		chains, err := a.Verify(l, inter, now, x509.ExtKeyUsageClientAuth)
		if wantRoot == nil {
			if err == nil {
				t.Fatalf("%s verified under version %d", l.Subject, a.Version)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s under version %d: %v", l.Subject, a.Version, err)
		}
		for _, c := range chains {
			if c[len(c)-1].Equal(wantRoot) {
				return
			}
		}
		t.Fatalf("%s: no chain ends at %s", l.Subject, wantRoot.Subject)
	}

	device := held(t, "dev", 0, oldRoot)
	check(t, device, oldLeaf, []*x509.Certificate{oldIssuing.Cert}, oldRoot.Cert)
	check(t, device, newLeaf, []*x509.Certificate{newIssuing.Cert}, nil)
	check(t, device, newLeaf, []*x509.Certificate{newIssuing.Cert, link}, oldRoot.Cert)

	updated, err := device.Apply(signUpdate(t, newUpdate("dev", 1, oldRoot, newRoot), oldRoot.Key, newRoot.Key), now)
	if err != nil {
		t.Fatal(err)
	}
	check(t, updated, newLeaf, []*x509.Certificate{newIssuing.Cert}, newRoot.Cert)
	check(t, updated, oldLeaf, []*x509.Certificate{oldIssuing.Cert}, oldRoot.Cert)
	check(t, updated, stagingLeaf, nil, nil)
	if _, err := updated.Verify(newLeaf, []*x509.Certificate{newIssuing.Cert}, now, x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("a client certificate verified for server authentication")
	}
	if _, err := updated.Verify(newLeaf, []*x509.Certificate{newIssuing.Cert}, now.Add(48*time.Hour), x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("an expired chain verified")
	}

	both := held(t, "dev", 0, oldRoot, newRoot) // a factory set made during the overlap
	check(t, both, oldLeaf, []*x509.Certificate{oldIssuing.Cert}, oldRoot.Cert)
	check(t, both, newLeaf, []*x509.Certificate{newIssuing.Cert}, newRoot.Cert)

	retired, err := updated.Apply(signUpdate(t, newUpdate("dev", 2, newRoot), newRoot.Key), now)
	if err != nil {
		t.Fatal(err)
	}
	check(t, retired, newLeaf, []*x509.Certificate{newIssuing.Cert}, newRoot.Cert)
	check(t, retired, oldLeaf, []*x509.Certificate{oldIssuing.Cert}, nil)
}

func TestNewAnchors(t *testing.T) {
	root := pkitest.NewRoot(t, "Keyward dev Root CA", nil)
	sub := root.Sub(t, "issuing", nil)
	for _, tc := range []struct {
		name    string
		env     string
		version uint64
		certs   []*x509.Certificate
		want    error
	}{
		{"ok", "dev", 3, []*x509.Certificate{root.Cert}, nil},
		{"unnamed factory set", "", 0, []*x509.Certificate{root.Cert}, nil},
		{"unnamed at a version", "", 1, []*x509.Certificate{root.Cert}, trust.ErrMalformed},
		{"bad environment name", "Dev Env", 0, []*x509.Certificate{root.Cert}, trust.ErrMalformed},
		{"none", "dev", 0, nil, trust.ErrMalformed},
		{"nil", "dev", 0, []*x509.Certificate{nil}, trust.ErrMalformed},
		{"twice", "dev", 0, []*x509.Certificate{root.Cert, root.Cert}, trust.ErrMalformed},
		{"not self-signed", "dev", 0, []*x509.Certificate{sub.Cert}, trust.ErrInvalidAnchor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := trust.NewAnchors(tc.env, tc.version, tc.certs...)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("NewAnchors = %v, want %v", err, tc.want)
			}
			if err == nil && !bytes.Equal(a.Certificates()[0].Raw, root.Cert.Raw) {
				t.Fatal("certificates differ")
			}
		})
	}
}
