package trust_test

import (
	"bytes"
	"testing"

	"github.com/veraison/go-cose"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/pkg/trust"
)

// FuzzApply feeds outside input to the update parser and every check after it, against a device holding the
// fixed old root. Whatever the input, Apply returns either new anchors that satisfy its rules or an error that
// wraps one of the package's sentinels, and never changes the device's anchors.
func FuzzApply(f *testing.F) {
	oldRoot, newRoot, good := fixedRollover(f)
	device := held(f, "dev", 0, oldRoot)
	before := must(device.MarshalPEM())
	f.Add(good)
	f.Add(tamper(f, good, func(m *cose.SignMessage) { m.Signatures[1].Signature[0] ^= 1 }))
	f.Add(signUpdate(f, &trust.Update{Environment: "dev", Version: 2, Anchors: [][]byte{newRoot.Cert.Raw},
		NotBefore: fixedNotBefore.Unix(), NotAfter: fixedNotAfter.Unix()}, newRoot.Key))
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xd8, 0x62, 0x84, 0x40, 0xa0, 0x40, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		next, err := device.Apply(data, fixedNow)
		if !bytes.Equal(must(device.MarshalPEM()), before) {
			t.Fatal("Apply changed the device's anchors")
		}
		if err != nil {
			if next != nil || len(wraps(err)) != 1 {
				t.Fatalf("Apply returned %v with error %v, which wraps %d sentinels", next, err, len(wraps(err)))
			}
			return
		}
		if next.Environment != "dev" || next.Version == 0 || len(next.Certificates()) == 0 {
			t.Fatalf("Apply accepted %s version %d with %d anchors", next.Environment, next.Version, len(next.Certificates()))
		}
		// Only the two fixed roots can have signed what Apply accepts, so only they can be its anchors.
		for _, c := range next.Certificates() {
			if !c.Equal(oldRoot.Cert) && !c.Equal(newRoot.Cert) {
				t.Fatalf("Apply accepted an anchor no fixed root is: %s", c.Subject)
			}
		}
		again, err := trust.ParseAnchorsPEM(must(next.MarshalPEM()), "dev")
		if err != nil || again.Version != next.Version {
			t.Fatalf("accepted anchors do not round-trip: %v", err)
		}
	})
}

// FuzzParseAnchorsPEM feeds outside input to the anchors-file parser: it returns anchors that re-encode and
// parse back the same, or an error that wraps one of the package's sentinels.
func FuzzParseAnchorsPEM(f *testing.F) {
	oldRoot, newRoot, _ := fixedRollover(f)
	f.Add(must(held(f, "dev", 3, oldRoot, newRoot).MarshalPEM()))
	f.Add(pkitest.PEM("CERTIFICATE", oldRoot.Cert.Raw))
	f.Add(pkitest.PEM(trust.PEMState, []byte{0xa2, 0x01, 0x63, 'd', 'e', 'v', 0x02, 0x01}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := trust.ParseAnchorsPEM(data, "dev")
		if err != nil {
			if a != nil || len(wraps(err)) != 1 {
				t.Fatalf("ParseAnchorsPEM returned %v with error %v, which wraps %d sentinels", a, err, len(wraps(err)))
			}
			return
		}
		out, err := a.MarshalPEM()
		if err != nil {
			t.Fatalf("parsed anchors do not encode: %v", err)
		}
		again, err := trust.ParseAnchorsPEM(out, "")
		if err != nil {
			t.Fatalf("re-encoded anchors do not parse: %v", err)
		}
		if again.Environment != a.Environment || again.Version != a.Version || len(again.Certificates()) != len(a.Certificates()) {
			t.Fatalf("round trip: %s/%d/%d, want %s/%d/%d", again.Environment, again.Version, len(again.Certificates()),
				a.Environment, a.Version, len(a.Certificates()))
		}
		for i, c := range again.Certificates() {
			if !c.Equal(a.Certificates()[i]) {
				t.Fatalf("certificate %d differs after the round trip", i+1)
			}
		}
	})
}
