package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
)

// ---- Test-only AES key unwrap (RFC 3394, RFC 5649) ----
//
// What follows is test code: the device's secure element unwraps in production, and Keyward never unwraps a
// device key. It is written from the RFCs with crypto/aes, since golang.org/x/crypto has no RFC 5649, and
// TestKeyUnwrapVectors checks it against the RFCs' published vectors.

// The unwrap of AES key wrap (RFC 3394) and key wrap with padding (RFC 5649) lives in pkcs11test, where other
// packages' tests use it too.
var (
	unwrapRFC3394 = pkcs11test.UnwrapRFC3394
	unwrapRFC5649 = pkcs11test.UnwrapRFC5649
)

func unhexT(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeyUnwrapVectors checks the test-only unwrap against RFC 3394 section 4 and RFC 5649 section 6.
func TestKeyUnwrapVectors(t *testing.T) {
	tests := []struct {
		name, kek, wrapped, key string
		unwrap                  func(kek, c []byte) ([]byte, error)
	}{
		{"RFC 3394 4.1 (128-bit KEK, 128 bits)", "000102030405060708090A0B0C0D0E0F",
			"1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5", "00112233445566778899AABBCCDDEEFF", unwrapRFC3394},
		{"RFC 3394 4.6 (256-bit KEK, 256 bits)", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
			"28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21",
			"00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F", unwrapRFC3394},
		{"RFC 5649 6 (192-bit KEK, 20 octets)", "5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8",
			"138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a",
			"c37b7e6492584340 bed1220780894115 5068f738", unwrapRFC5649},
		{"RFC 5649 6 (192-bit KEK, 7 octets)", "5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8",
			"afbeb0f07dfbf541 9200f2ccb50bb24f", "466f7250617369", unwrapRFC5649},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kek, c := unhexT(t, tt.kek), unhexT(t, tt.wrapped)
			got, err := tt.unwrap(kek, c)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhexT(t, tt.key); !bytes.Equal(got, want) {
				t.Fatalf("unwrapped %x; want %x", got, want)
			}
			for i := range c { // any altered byte fails the integrity check
				bad := bytes.Clone(c)
				bad[i] ^= 0x01
				if _, err := tt.unwrap(kek, bad); err == nil {
					t.Fatalf("byte %d altered: unwrap succeeded", i)
				}
			}
		})
	}
}

// ---- SoftHSM2 integration ----

// attrs reads attributes of the object of class with the id of uri, through the Store's own session.
func attrs(t testing.TB, s *Store, uri string, class uint, types ...uint) ([]*p11.Attribute, error) {
	t.Helper()
	u := mustParse(t, uri)
	sh, release, err := s.session()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	obj, _, err := s.lookup(sh, u, class)
	if err != nil {
		t.Fatalf("lookup %s: %v", uri, err)
	}
	tmpl := make([]*p11.Attribute, len(types))
	for i, typ := range types {
		tmpl[i] = p11.NewAttribute(typ, nil)
	}
	return s.raw.ctx.GetAttributeValue(sh, obj, tmpl)
}

// checkBools asserts boolean attributes of an object.
func checkBools(t *testing.T, s *Store, uri string, class uint, want map[uint]bool) {
	t.Helper()
	for typ, v := range want {
		a, err := attrs(t, s, uri, class, typ)
		if err != nil {
			t.Errorf("%s: read attribute %#x: %v", uri, typ, err)
			continue
		}
		if got := len(a[0].Value) == 1 && a[0].Value[0] == 1; got != v {
			t.Errorf("%s: attribute %#x = %v; want %v", uri, typ, a[0].Value, v)
		}
	}
}

// newTransportKey imports a random transport key and returns its URI and bytes.
func newTransportKey(t testing.TB, s *Store) (string, []byte) {
	t.Helper()
	kek := make([]byte, TransportKeySize)
	rand.Read(kek)
	uri, err := s.ImportTransportKey(context.Background(), "test transport", kek)
	if err != nil {
		t.Fatalf("ImportTransportKey: %v", err)
	}
	return uri, kek
}

func TestGenerateWrappable(t *testing.T) {
	ctx := context.Background()
	s, cfg := newStore(t)
	k, err := s.GenerateWrappable(ctx, keystore.PurposeDeviceIdentity, keystore.ECDSAP256, "batch-1/0")
	if err != nil {
		t.Fatal(err)
	}
	token := mustParse(t, cfg).Token
	if !regexp.MustCompile(`^pkcs11:token=` + token + `;id=(%[0-9A-F]{2}){16};object=keyward:device-identity:[0-9a-f]{32}$`).MatchString(k.URI) {
		t.Errorf("key URI %q; want the form of Generate's", k.URI)
	}
	if k.Purpose != keystore.PurposeDeviceIdentity || k.Algorithm != keystore.ECDSAP256 || k.Public == nil {
		t.Errorf("key = %+v", k)
	}
	checkBools(t, s, k.URI, p11.CKO_PRIVATE_KEY, map[uint]bool{
		p11.CKA_SENSITIVE:         true,
		p11.CKA_ALWAYS_SENSITIVE:  true,
		p11.CKA_EXTRACTABLE:       true,
		p11.CKA_NEVER_EXTRACTABLE: false,
		p11.CKA_WRAP_WITH_TRUSTED: false, // see the top of wrap.go
		p11.CKA_SIGN:              false,
		p11.CKA_TOKEN:             true,
		p11.CKA_PRIVATE:           true,
		p11.CKA_MODIFIABLE:        false,
		p11.CKA_DECRYPT:           false,
		p11.CKA_UNWRAP:            false,
		p11.CKA_DERIVE:            false,
	})
	// Sensitive: the token never reveals the private value (PKCS#11 v2.40 section 5.7, C_GetAttributeValue).
	if _, err := attrs(t, s, k.URI, p11.CKO_PRIVATE_KEY, p11.CKA_VALUE); !errors.Is(err, p11.Error(p11.CKR_ATTRIBUTE_SENSITIVE)) {
		t.Errorf("read CKA_VALUE of the private key: %v; want CKR_ATTRIBUTE_SENSITIVE", err)
	}
	// The site cannot sign with a device's key.
	sg, err := s.Signer(ctx, k.URI, keystore.PurposeDeviceIdentity)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := sg.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
		t.Error("signed with a wrappable device key; want CKA_SIGN false to refuse")
	}
	if err := s.Destroy(ctx, k.URI); err != nil {
		t.Errorf("Destroy: %v", err)
	}

	for _, p := range []keystore.Purpose{keystore.PurposeCASigning, keystore.PurposeRootSigning, keystore.PurposeKEK, keystore.PurposeTLSServer} {
		if _, err := s.GenerateWrappable(ctx, p, keystore.ECDSAP256, ""); !errors.Is(err, keystore.ErrWrongPurpose) {
			t.Errorf("GenerateWrappable(%s): %v; want ErrWrongPurpose", p, err)
		}
	}
	if _, err := s.GenerateWrappable(ctx, "bogus", keystore.ECDSAP256, ""); err == nil || !strings.Contains(err.Error(), "unknown purpose") {
		t.Errorf("GenerateWrappable(bogus): %v", err)
	}
	if _, err := s.GenerateWrappable(ctx, keystore.PurposeFactoryStation, keystore.ECDSAP384, ""); err != nil {
		t.Errorf("GenerateWrappable(factory-station): %v", err)
	}
}

func TestTransportKeys(t *testing.T) {
	ctx := context.Background()
	s, cfg := newStore(t)
	token := mustParse(t, cfg).Token
	imported, kek := newTransportKey(t, s)
	generated, err := s.GenerateTransportKey(ctx, "generated")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^pkcs11:token=` + token + `;id=(%[0-9A-F]{2}){16};object=keyward:kek:[0-9a-f]{32};type=secret-key$`)
	for _, uri := range []string{imported, generated} {
		if !re.MatchString(uri) {
			t.Errorf("transport key URI %q; want %s", uri, re)
		}
		checkBools(t, s, uri, p11.CKO_SECRET_KEY, map[uint]bool{
			p11.CKA_WRAP:        true,
			p11.CKA_UNWRAP:      false,
			p11.CKA_ENCRYPT:     false,
			p11.CKA_DECRYPT:     false,
			p11.CKA_SIGN:        false,
			p11.CKA_VERIFY:      false,
			p11.CKA_DERIVE:      false,
			p11.CKA_SENSITIVE:   true,
			p11.CKA_EXTRACTABLE: false,
			p11.CKA_TOKEN:       true,
			p11.CKA_PRIVATE:     true,
			p11.CKA_MODIFIABLE:  false,
			p11.CKA_COPYABLE:    false,
		})
		a, err := attrs(t, s, uri, p11.CKO_SECRET_KEY, p11.CKA_VALUE_LEN, p11.CKA_KEY_TYPE)
		if err != nil || binary.NativeEndian.Uint64(a[0].Value) != TransportKeySize || binary.NativeEndian.Uint64(a[1].Value) != p11.CKK_AES {
			t.Errorf("%s: CKA_VALUE_LEN, CKA_KEY_TYPE = %v, %v; want 32, CKK_AES", uri, a, err)
		}
		if _, err := attrs(t, s, uri, p11.CKO_SECRET_KEY, p11.CKA_VALUE); !errors.Is(err, p11.Error(p11.CKR_ATTRIBUTE_SENSITIVE)) {
			t.Errorf("%s: read CKA_VALUE: %v; want CKR_ATTRIBUTE_SENSITIVE", uri, err)
		}
		// Not a signing key, whatever the purpose asked.
		if _, err := s.Signer(ctx, uri, keystore.PurposeKEK); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("Signer(%s): %v; want ErrNotFound", uri, err)
		}
	}

	if _, err := s.ImportTransportKey(ctx, "", kek[:16]); err == nil || !strings.Contains(err.Error(), "AES-256, 32 bytes") {
		t.Errorf("ImportTransportKey(16 bytes): %v", err)
	} else if strings.Contains(err.Error(), hex.EncodeToString(kek[:16])) {
		t.Errorf("error carries the key: %v", err)
	}

	// Destroy deletes a transport key; a second Destroy finds nothing.
	if err := s.Destroy(ctx, generated); err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, generated); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("second Destroy: %v; want ErrNotFound", err)
	}
}

// TestWrapKey exports wrappable keys under a transport key the test knows, unwraps them (RFC 5649) and checks
// that the PKCS #8 inside is the key the token holds.
func TestWrapKey(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	transport, kek := newTransportKey(t, s)
	if m, _ := s.raw.mechanism(); m != p11.CKM_AES_KEY_WRAP_PAD && m != ckmAESKeyWrapKWP {
		t.Fatalf("wrap mechanism %s; SoftHSM2 2.x offers CKM_AES_KEY_WRAP_PAD", mechanismName(m))
	} else {
		t.Logf("wrap mechanism: %s", mechanismName(m))
	}
	for _, alg := range []keystore.Algorithm{keystore.ECDSAP256, keystore.ECDSAP384, keystore.RSA3072} {
		t.Run(string(alg), func(t *testing.T) {
			k, err := s.GenerateWrappable(ctx, keystore.PurposeDeviceIdentity, alg, "")
			if err != nil {
				t.Fatal(err)
			}
			wrapped, err := s.WrapKey(ctx, k.URI, transport)
			if err != nil {
				t.Fatal(err)
			}
			pkcs8, err := unwrapRFC5649(kek, wrapped)
			if err != nil {
				t.Fatalf("unwrap %d bytes with RFC 5649: %v", len(wrapped), err)
			}
			defer clear(pkcs8)
			t.Logf("%s: PKCS #8 %d bytes, wrapped %d bytes", alg, len(pkcs8), len(wrapped))
			priv, err := x509.ParsePKCS8PrivateKey(pkcs8)
			if err != nil {
				t.Fatalf("unwrapped key is not PKCS #8: %v", err)
			}
			pub := priv.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool })
			if !pub.Equal(k.Public) {
				t.Fatal("unwrapped private key does not match the token's public key")
			}
			if _, err := unwrapRFC5649(append(bytes.Clone(kek[:31]), kek[31]^1), wrapped); err == nil {
				t.Error("unwrapped with another transport key")
			}
			// AES key wrap is deterministic: a second export of the key is the same blob.
			again, err := s.WrapKey(ctx, k.URI, transport)
			if err != nil || !bytes.Equal(again, wrapped) {
				t.Errorf("second WrapKey: %v (same blob: %v)", err, bytes.Equal(again, wrapped))
			}
		})
	}

	// A transport key the token generated wraps as well; its twin would reach the device by other means.
	generated, err := s.GenerateTransportKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.GenerateWrappable(ctx, keystore.PurposeFactoryStation, keystore.ECDSAP256, "")
	if err != nil {
		t.Fatal(err)
	}
	if wrapped, err := s.WrapKey(ctx, k.URI, generated); err != nil || len(wrapped) < 24 {
		t.Errorf("WrapKey under a generated transport key: %d bytes, %v", len(wrapped), err)
	}
}

// TestWrapKeyFallback forces CKM_AES_KEY_WRAP (RFC 3394), the mechanism of a token without padding.
func TestWrapKeyFallback(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	transport, kek := newTransportKey(t, s) // opens the raw handle
	s.raw.mu.Lock()
	s.raw.mechs = map[uint]bool{p11.CKM_AES_KEY_WRAP: true}
	s.raw.mu.Unlock()
	k, err := s.GenerateWrappable(ctx, keystore.PurposeDeviceIdentity, keystore.ECDSAP256, "")
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := s.WrapKey(ctx, k.URI, transport)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unwrapRFC5649(kek, wrapped); err == nil {
		t.Fatal("an RFC 3394 blob passed the RFC 5649 check")
	}
	p, err := unwrapRFC3394(kek, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	// SoftHSM2 pads a PKCS #8 encoding that is not a multiple of 8 bytes with zeros (SoftHSMv2 PR #307), so
	// read the length from the DER header, as a device must.
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(p, &raw)
	if err != nil || len(rest) >= 8 || !bytes.Equal(rest, make([]byte, len(rest))) {
		t.Fatalf("RFC 3394 plaintext: %v, %d trailing bytes", err, len(rest))
	}
	priv, err := x509.ParsePKCS8PrivateKey(raw.FullBytes)
	if err != nil {
		t.Fatal(err)
	}
	if !priv.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public) {
		t.Fatal("unwrapped private key does not match the token's public key")
	}

	// A token with no AES key wrap at all.
	s.raw.mu.Lock()
	s.raw.mechs = map[uint]bool{}
	s.raw.mu.Unlock()
	if _, err := s.WrapKey(ctx, k.URI, transport); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("WrapKey without mechanisms: %v; want ErrUnsupported", err)
	}
}

func TestWrapKeyRefusals(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	transport, kek := newTransportKey(t, s)
	device, err := s.GenerateWrappable(ctx, keystore.PurposeDeviceIdentity, keystore.ECDSAP256, "")
	if err != nil {
		t.Fatal(err)
	}
	// Generate makes non-extractable keys: the token refuses to export them, whatever the purpose.
	sealed, err := s.Generate(ctx, keystore.PurposeDeviceIdentity, keystore.ECDSAP256, "")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := s.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, "")
	if err != nil {
		t.Fatal(err)
	}
	// A kek-labelled AES key that may not wrap, and an AES key Keyward did not label, both made behind the
	// Store's back.
	noWrap := rawSecretKey(t, s, "kek", false)
	foreign := rawSecretKey(t, s, "", true)
	other := mustParse(t, transport)
	other.ID = []byte{1, 2, 3}
	other.Object = ""
	elsewhere := mustParse(t, device.URI)
	elsewhere.Token = "another-token"
	typed := mustParse(t, transport)
	typed.Type = "private"
	destroyed, err := s.GenerateTransportKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, destroyed); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name           string
		key, transport string
		is             []error
		want           string
	}{
		{"key made by Generate", sealed.URI, transport, []error{ErrNotWrappable, p11.Error(p11.CKR_KEY_UNEXTRACTABLE)},
			"refuses to export it (CKR_KEY_UNEXTRACTABLE): it was generated non-extractable, with Generate rather than GenerateWrappable"},
		{"CA key", ca.URI, transport, []error{keystore.ErrWrongPurpose}, `it has purpose "ca-signing"; only [device-identity factory-station] keys leave the token`},
		{"device key as transport key", device.URI, device.URI, []error{keystore.ErrWrongPurpose},
			"is a device-identity key pair, not a transport key"},
		{"CA key as transport key", device.URI, ca.URI, []error{keystore.ErrWrongPurpose}, "is a ca-signing key pair, not a transport key"},
		{"transport key that may not wrap", device.URI, noWrap, []error{keystore.ErrWrongPurpose, p11.Error(p11.CKR_KEY_FUNCTION_NOT_PERMITTED)},
			"may not wrap keys (CKR_KEY_FUNCTION_NOT_PERMITTED: CKA_WRAP is not true)"},
		{"unlabelled secret key", device.URI, foreign, []error{keystore.ErrWrongPurpose}, "has no Keyward purpose"},
		{"unknown transport key", device.URI, other.String(), []error{keystore.ErrNotFound}, "no secret key with this id"},
		{"destroyed transport key", device.URI, destroyed, []error{keystore.ErrNotFound}, "no secret key with this id"},
		{"transport URI of another type", device.URI, typed.String(), []error{keystore.ErrNotFound}, "type=private is not a secret key"},
		{"key on another token", elsewhere.String(), transport, []error{keystore.ErrNotFound}, "not on PKCS#11 token"},
		{"transport key as key", transport, transport, []error{keystore.ErrNotFound}, "type=secret-key is not a private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.WrapKey(ctx, tt.key, tt.transport)
			if err == nil {
				t.Fatalf("WrapKey succeeded (%d bytes)", len(got))
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("WrapKey: %v; want it to match %v", err, target)
				}
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WrapKey: %q; want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), hex.EncodeToString(kek)) || strings.Contains(err.Error(), "pin-value") {
				t.Errorf("error carries secret material: %v", err)
			}
		})
	}
}

// rawSecretKey creates an AES-256 token key with CKA_WRAP wrap, labelled for purpose (unlabelled when ""),
// through the Store's own handle, and returns its URI.
func rawSecretKey(t testing.TB, s *Store, purpose string, wrap bool) string {
	t.Helper()
	id := make([]byte, idLen)
	rand.Read(id)
	label := "not-keyward"
	if purpose != "" {
		label = labelPrefix + purpose + ":" + hex.EncodeToString(id)
	}
	sh, release, err := s.session()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	_, err = s.raw.ctx.GenerateKey(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_ID, id),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_WRAP, wrap),
	})
	if err != nil {
		t.Fatal(err)
	}
	u := s.selector
	u.ID, u.Type = id, "secret-key"
	return u.String()
}

// TestWrapWithTrustedSoftHSM2 records what SoftHSM2 does with CKA_WRAP_WITH_TRUSTED, the reasons wrap.go
// gives for not setting it: the token honours it; only the SO can make a trusted key, and only a public one;
// the SO cannot log in while the keystore's user is.
func TestWrapWithTrustedSoftHSM2(t *testing.T) {
	ctx := context.Background()
	cfg := pkcs11test.NewToken(t)
	u := mustParse(t, cfg)
	mod := p11.New(u.ModulePath) // a second handle on the module pkcs11test keeps initialised; never Finalize it
	if err := mod.Initialize(); err != nil && !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatal(err)
	}
	defer mod.Destroy()
	slot := slotOf(t, mod, u.Token)
	so, err := mod.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer mod.CloseSession(so)

	// Before any user logs in, the SO makes a trusted transport key. It cannot be private.
	if err := mod.Login(so, p11.CKU_SO, pkcs11test.SOPIN); err != nil {
		t.Fatal(err)
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	trustedID := make([]byte, idLen)
	rand.Read(trustedID)
	trustedKey := func(private bool) error {
		_, err := mod.CreateObject(so, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
			p11.NewAttribute(p11.CKA_VALUE, kek),
			p11.NewAttribute(p11.CKA_ID, trustedID),
			p11.NewAttribute(p11.CKA_LABEL, labelPrefix+"kek:"+hex.EncodeToString(trustedID)),
			p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_PRIVATE, private),
			p11.NewAttribute(p11.CKA_TRUSTED, true),
			p11.NewAttribute(p11.CKA_WRAP, true),
			p11.NewAttribute(p11.CKA_SENSITIVE, true),
			p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		})
		return err
	}
	if err := trustedKey(true); !errors.Is(err, p11.Error(p11.CKR_USER_NOT_LOGGED_IN)) {
		t.Errorf("SO creates a private trusted key: %v; want CKR_USER_NOT_LOGGED_IN", err)
	}
	if err := trustedKey(false); err != nil {
		t.Fatalf("SO creates a public trusted key: %v", err)
	}
	if err := mod.Logout(so); err != nil {
		t.Fatal(err)
	}
	trusted := URI{Token: u.Token, ID: trustedID, Type: "secret-key"}

	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The user cannot make a trusted key, and the SO cannot log in while the user is.
	sh, release, err := s.session()
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.raw.ctx.CreateObject(sh, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY), p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE, kek), p11.NewAttribute(p11.CKA_TRUSTED, true), p11.NewAttribute(p11.CKA_WRAP, true),
	})
	if !errors.Is(err, p11.Error(p11.CKR_ATTRIBUTE_READ_ONLY)) {
		t.Errorf("user creates a trusted key: %v; want CKR_ATTRIBUTE_READ_ONLY", err)
	}
	if err := mod.Login(so, p11.CKU_SO, pkcs11test.SOPIN); !errors.Is(err, p11.Error(p11.CKR_USER_ANOTHER_ALREADY_LOGGED_IN)) {
		t.Errorf("SO login while the user is logged in: %v; want CKR_USER_ANOTHER_ALREADY_LOGGED_IN", err)
	}
	// A device key demanding a trusted wrapping key, as GenerateWrappable would make it with the attribute set.
	id := make([]byte, idLen)
	rand.Read(id)
	label := labelPrefix + string(keystore.PurposeDeviceIdentity) + ":" + hex.EncodeToString(id)
	p256, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})
	_, _, err = s.raw.ctx.GenerateKeyPair(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, p256), p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_ID, id), p11.NewAttribute(p11.CKA_LABEL, label)},
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_TOKEN, true), p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_SENSITIVE, true), p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
			p11.NewAttribute(p11.CKA_WRAP_WITH_TRUSTED, true), p11.NewAttribute(p11.CKA_SIGN, false),
			p11.NewAttribute(p11.CKA_ID, id), p11.NewAttribute(p11.CKA_LABEL, label)})
	release()
	if err != nil {
		t.Fatal(err)
	}
	device := URI{Token: u.Token, ID: id, Object: label}

	// The user's own transport key is refused; the SO's trusted one wraps.
	untrusted, _ := newTransportKey(t, s)
	if _, err := s.WrapKey(ctx, device.String(), untrusted); !errors.Is(err, ErrNotWrappable) || !errors.Is(err, p11.Error(p11.CKR_KEY_NOT_WRAPPABLE)) ||
		!strings.Contains(err.Error(), "CKA_WRAP_WITH_TRUSTED") {
		t.Errorf("WrapKey under an untrusted key: %v; want ErrNotWrappable naming CKA_WRAP_WITH_TRUSTED", err)
	}
	wrapped, err := s.WrapKey(ctx, device.String(), trusted.String())
	if err != nil {
		t.Fatalf("WrapKey under the SO's trusted key: %v", err)
	}
	if _, err := unwrapRFC5649(kek, wrapped); err != nil {
		t.Error(err)
	}
}

func slotOf(t testing.TB, mod *p11.Ctx, token string) uint {
	t.Helper()
	slots, err := mod.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if info, err := mod.GetTokenInfo(s); err == nil && info.Label == token {
			return s
		}
	}
	t.Fatalf("token %s not in the slot list", token)
	return 0
}

// TestWrapClose: Close waits for wrapping in flight, releases the raw sessions (so the token logs out and the
// next Open checks its PIN again), and later calls fail cleanly; a second Store on the token is unaffected.
func TestWrapClose(t *testing.T) {
	ctx := context.Background()
	a, cfg := newStore(t)
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	transport, _ := newTransportKey(t, a)
	k, err := a.GenerateWrappable(ctx, keystore.PurposeDeviceIdentity, keystore.ECDSAP256, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WrapKey(ctx, k.URI, transport); err != nil {
		t.Fatalf("second Store: %v", err)
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, err := a.WrapKey(ctx, k.URI, transport); err != nil {
					if !errors.Is(err, keystore.ErrBackend) || !strings.Contains(err.Error(), "store closed") {
						t.Errorf("WrapKey during Close: %v", err)
					}
					return
				}
			}
		}()
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := a.WrapKey(ctx, k.URI, transport); !errors.Is(err, keystore.ErrBackend) {
		t.Errorf("WrapKey after Close: %v; want ErrBackend", err)
	}
	if _, err := b.WrapKey(ctx, k.URI, transport); err != nil {
		t.Errorf("second Store after the first closed: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Every session is closed, so the token is logged out: a wrong PIN is refused again.
	wrong := mustParse(t, cfg)
	wrong.PINValue = "999999"
	if s, err := Open(wrong.String()); err == nil {
		s.Close()
		t.Fatal("Open with a wrong PIN succeeded: a session of a closed Store kept the token logged in")
	}
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WrapKey(ctx, k.URI, transport); err != nil {
		t.Errorf("a new Store: %v", err)
	}
}

func BenchmarkGenerateWrappable(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.GenerateWrappable(ctx, keystore.PurposeDeviceIdentity, keystore.ECDSAP256, "bench"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "keys/s")
}

func BenchmarkWrapKey(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	transport, _ := newTransportKey(b, s)
	k, err := s.GenerateWrappable(ctx, keystore.PurposeDeviceIdentity, keystore.ECDSAP256, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.WrapKey(ctx, k.URI, transport); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "keys/s")
}
