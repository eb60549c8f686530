package pkcs11

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ThalesGroup/crypto11"
	p11 "github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/keystoretest"
	"github.com/keyward/keyward/internal/keystore/pkcs11/pkcs11test"
)

func TestMain(m *testing.M) { pkcs11test.Main(m) }

// newStore opens a Store on a fresh SoftHSM2 token and returns it with its configuration URI.
func newStore(t testing.TB) (*Store, string) {
	t.Helper()
	cfg := pkcs11test.NewToken(t)
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cfg
}

func mustParse(t testing.TB, uri string) *URI {
	t.Helper()
	u, err := ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestConformance(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) keystore.Keystore {
		s, _ := newStore(t)
		return s
	})
}

// TestEd25519 generates an Ed25519 key through the raw module handle (crypto11 has none), signs with
// CKM_EDDSA, finds it again from a second Store on the token, and destroys it; an exportable Ed25519 key is
// refused as unsupported.
func TestEd25519(t *testing.T) {
	ctx := context.Background()
	s, cfg := newStore(t)
	k, err := s.Generate(ctx, keystore.PurposeAuditSigning, keystore.Ed25519, "")
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := k.Public.(ed25519.PublicKey)
	if !ok {
		t.Fatalf("public key %T", k.Public)
	}
	other, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	sg, err := other.Signer(ctx, k.URI, keystore.PurposeAuditSigning)
	if err != nil {
		t.Fatalf("find the Ed25519 key from another Store: %v", err)
	}
	msg := []byte("c2sp signed note")
	sig, err := sg.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil || !ed25519.Verify(pub, msg, sig) {
		t.Fatalf("CKM_EDDSA signature: %v, verifies %v", err, ed25519.Verify(pub, msg, sig))
	}
	if _, err := sg.Sign(rand.Reader, msg, crypto.SHA256); err == nil {
		t.Error("Ed25519ph accepted")
	}
	if _, err := other.Signer(ctx, k.URI, keystore.PurposeCASigning); !errors.Is(err, keystore.ErrWrongPurpose) {
		t.Errorf("wrong purpose: %v", err)
	}
	if err := s.Destroy(ctx, k.URI); err != nil {
		t.Fatal(err)
	}
	third, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if _, err := third.Signer(ctx, k.URI, keystore.PurposeAuditSigning); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("destroyed Ed25519 key: %v, want ErrNotFound", err)
	}
	if _, err := s.GenerateWrappable(ctx, keystore.PurposeDeviceIdentity, keystore.Ed25519, ""); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("exportable Ed25519: %v, want ErrUnsupported", err)
	}
}

func TestKeyURIAndAttributes(t *testing.T) {
	ctx := context.Background()
	s, cfg := newStore(t)
	token := mustParse(t, cfg).Token
	for _, alg := range []keystore.Algorithm{keystore.ECDSAP256, keystore.RSA3072} {
		k, err := s.Generate(ctx, keystore.PurposeCRLSigning, alg, "attributes")
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`^pkcs11:token=` + token + `;id=((?:%[0-9A-F]{2}){16});object=keyward:crl-signing:([0-9a-f]{32})$`)
		m := re.FindStringSubmatch(k.URI)
		if m == nil {
			t.Fatalf("key URI %q; want pkcs11:token=%s;id=<16 pct-encoded bytes>;object=keyward:crl-signing:<hex id>", k.URI, token)
		}
		if strings.ToLower(strings.ReplaceAll(m[1], "%", "")) != m[2] {
			t.Errorf("id %s and label id %s differ", m[1], m[2])
		}

		e := s.cache[m[2]]
		if e == nil {
			t.Fatalf("generated key %s not cached", m[2])
		}
		want := map[crypto11.AttributeType]bool{
			crypto11.CkaSensitive:        true,
			crypto11.CkaAlwaysSensitive:  true,
			crypto11.CkaExtractable:      false,
			crypto11.CkaNeverExtractable: true,
			crypto11.CkaModifiable:       false,
			crypto11.CkaToken:            true,
			crypto11.CkaPrivate:          true,
			crypto11.CkaSign:             true,
			crypto11.CkaDecrypt:          false,
			crypto11.CkaUnwrap:           false,
			crypto11.CkaDerive:           false,
		}
		for typ, v := range want {
			a, err := s.ctx.GetAttribute(e.signer, typ)
			if err != nil {
				t.Fatalf("%s: GetAttribute(%#x): %v", alg, typ, err)
			}
			if got := len(a.Value) == 1 && a.Value[0] == 1; got != v {
				t.Errorf("%s: private key attribute %#x = %v; want %v", alg, typ, a.Value, v)
			}
		}
		label, err := s.ctx.GetAttribute(e.signer, crypto11.CkaLabel)
		if err != nil || string(label.Value) != "keyward:crl-signing:"+m[2] {
			t.Errorf("%s: CKA_LABEL = %q, %v", alg, label.Value, err)
		}
	}
}

// TestFreshStore finds keys on the token rather than in the cache of the Store that made them.
func TestFreshStore(t *testing.T) {
	ctx := context.Background()
	a, cfg := newStore(t)
	k, err := a.Generate(ctx, keystore.PurposeAuditSigning, keystore.ECDSAP384, "fresh")
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Signer(ctx, k.URI, keystore.PurposeCASigning); !errors.Is(err, keystore.ErrWrongPurpose) {
		t.Errorf("wrong purpose from the token: %v; want ErrWrongPurpose", err)
	}
	sg, err := b.Signer(ctx, k.URI, keystore.PurposeAuditSigning)
	if err != nil {
		t.Fatal(err)
	}
	keystoretest.SignAndVerify(t, sg, k.Public, k.Algorithm)
	// A URI without the object label finds the key by id alone.
	u := mustParse(t, k.URI)
	u.Object = ""
	if _, err := b.Signer(ctx, u.String(), keystore.PurposeAuditSigning); err != nil {
		t.Errorf("Signer by id only: %v", err)
	}
	if err := b.Destroy(ctx, k.URI); err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx, k.URI); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("second Destroy: %v; want ErrNotFound", err)
	}
}

// TestForeignKey: a key pair on the token that Keyward did not label has no purpose and is refused.
func TestForeignKey(t *testing.T) {
	s, cfg := newStore(t)
	id := []byte{0xde, 0xad, 0xbe, 0xef}
	if _, err := s.ctx.GenerateECDSAKeyPairWithLabel(id, []byte("somebody-else"), elliptic.P256()); err != nil {
		t.Fatal(err)
	}
	// Also a key that claims a purpose in its label but for another id, as a copied label would.
	id2 := []byte{0xca, 0xfe}
	if _, err := s.ctx.GenerateECDSAKeyPairWithLabel(id2, []byte("keyward:ca-signing:00112233445566778899aabbccddeeff"), elliptic.P256()); err != nil {
		t.Fatal(err)
	}
	token := mustParse(t, cfg).Token
	for _, id := range [][]byte{id, id2} {
		uri := (&URI{Token: token, ID: id}).String()
		if _, err := s.Signer(context.Background(), uri, keystore.PurposeCASigning); !errors.Is(err, keystore.ErrWrongPurpose) {
			t.Errorf("Signer(%s): %v; want ErrWrongPurpose", uri, err)
		}
	}
}

func TestHandles(t *testing.T) {
	s, cfg := newStore(t)
	k, err := s.Generate(context.Background(), keystore.PurposeCASigning, keystore.ECDSAP256, "")
	if err != nil {
		t.Fatal(err)
	}
	token := mustParse(t, cfg).Token
	for uri, want := range map[string]bool{
		k.URI:                                true,
		cfg:                                  true,
		"pkcs11:token=" + token:              true,
		"pkcs11:token=other;id=%01":          false,
		"pkcs11:serial=1;id=%01":             false,
		"pkcs11:id=%01":                      false,
		"soft:00112233445566778899aabb":      false,
		"pkcs11:token=" + token + ";bogus=1": false,
	} {
		if got := s.Handles(uri); got != want {
			t.Errorf("Handles(%q) = %v; want %v", uri, got, want)
		}
	}
	if s.Location() != keystore.LocationPKCS11 {
		t.Errorf("Location() = %q", s.Location())
	}
}

func TestOpenErrors(t *testing.T) {
	cfg := pkcs11test.NewToken(t)
	u := mustParse(t, cfg)
	const badPIN = "271828"

	wrongPIN := *u
	wrongPIN.PINValue = badPIN
	missingModule := *u
	missingModule.ModulePath = "/nonexistent/libnope.so"
	notAModule := *u
	notAModule.ModulePath = "/etc/hostname"
	if _, err := os.Stat(notAModule.ModulePath); err != nil {
		notAModule.ModulePath = os.Args[0] // an executable, not a shared object
	}
	unknownToken := *u
	unknownToken.Token = "no-such-token"

	tests := []struct {
		name string
		uri  string
		want string
	}{
		{"wrong PIN", wrongPIN.String(), "refused the PIN"},
		{"missing module", missingModule.String(), "cannot load PKCS#11 module /nonexistent/libnope.so: no such file or directory"},
		{"not a module", notAModule.String(), "cannot load PKCS#11 module " + notAModule.ModulePath},
		{"unknown token", unknownToken.String(), `PKCS#11 token "no-such-token" not found in module`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.uri)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded")
			}
			if !errors.Is(err, keystore.ErrBackend) {
				t.Errorf("Open: %v; want ErrBackend", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open: %q; want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), badPIN) || strings.Contains(err.Error(), pkcs11test.PIN) {
				t.Errorf("error contains a PIN: %q", err)
			}
		})
	}
}

func TestOpenConfigErrors(t *testing.T) {
	const pin = "S3CR3T-PIN-4711"
	for uri, want := range map[string]string{
		"pkcs11:token=a?pin-value=" + pin:                                      "needs module-path",
		"pkcs11:?module-path=/x.so&pin-value=" + pin:                           "exactly one of token=, serial= or slot-id=",
		"pkcs11:token=a;slot-id=1?module-path=/x.so&pin-value=" + pin:          "exactly one of token=, serial= or slot-id=",
		"pkcs11:token=a;id=%01?module-path=/x.so&pin-value=" + pin:             "selects a token, not an object",
		"pkcs11:token=a?module-path=/x.so&pin-value=" + pin + "&pin-source=/p": "both pin-value and pin-source",
		"pkcs11:token=a?module-path=/x.so&pin-source=relative/pin":             "want a file: URI or an absolute path",
		"pkcs11:token=a?module-path=/x.so&pin-source=file:/nonexistent/pin":    "read PKCS#11 PIN from pin-source",
		"pkcs11:token=a?module-path=/x.so&pin-value=" + pin + "&bogus=1":       `unknown PKCS#11 URI attribute "bogus"`,
	} {
		_, err := Open(uri)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v; want an error containing %q", uri, err, want)
		}
		if err != nil && strings.Contains(err.Error(), pin) {
			t.Errorf("Open(%q) error contains the PIN: %v", uri, err)
		}
	}
}

func TestPINSources(t *testing.T) {
	cfg := pkcs11test.NewToken(t)
	u := mustParse(t, cfg)
	u.PINValue = ""
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(pkcs11test.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(t *testing.T, uri string) {
		t.Helper()
		s, err := Open(uri)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		// Closing logs the token out again, so the next Open really checks its PIN.
		s.Close()
	}
	t.Run("file URI", func(t *testing.T) {
		v := *u
		v.PINSource = "file:" + pinFile
		open(t, v.String())
	})
	t.Run("file URI with empty authority", func(t *testing.T) {
		v := *u
		v.PINSource = "file://" + pinFile
		open(t, v.String())
	})
	t.Run("absolute path", func(t *testing.T) {
		v := *u
		v.PINSource = pinFile
		open(t, v.String())
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv(PINEnv, pkcs11test.PIN)
		open(t, u.String())
	})
	t.Run("none", func(t *testing.T) {
		t.Setenv(PINEnv, "")
		if _, err := Open(u.String()); err == nil || !strings.Contains(err.Error(), PINEnv) {
			t.Errorf("Open without a PIN: %v; want an error naming %s", err, PINEnv)
		}
	})
	t.Run("wrong PIN in file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad")
		os.WriteFile(bad, []byte("0000\n"), 0o600)
		v := *u
		v.PINSource = "file:" + bad
		if _, err := Open(v.String()); !errors.Is(err, keystore.ErrBackend) {
			t.Errorf("Open with a wrong PIN file: %v; want ErrBackend", err)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	k, err := s.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, "bench")
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("benchmark"))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sg, err := s.Signer(ctx, k.URI, keystore.PurposeCASigning)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := sg.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestSelectBySlotAndSerial opens the token by slot-id and by serial, and checks key URIs keep that selector.
func TestSelectBySlotAndSerial(t *testing.T) {
	cfg := pkcs11test.NewToken(t)
	u := mustParse(t, cfg)
	// A second handle on the module crypto11 (through pkcs11test) already initialised, to read slot and serial.
	// Never Finalize it: that would tear the module down under crypto11.
	mod := p11.New(u.ModulePath)
	if err := mod.Initialize(); err != nil && !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatal(err)
	}
	slots, err := mod.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	var slot uint64
	var serial string
	for _, s := range slots {
		info, err := mod.GetTokenInfo(s)
		if err != nil {
			t.Fatal(err)
		}
		if info.Label == u.Token {
			slot, serial = uint64(s), info.SerialNumber
		}
	}
	if serial == "" {
		t.Fatalf("token %s not in the slot list", u.Token)
	}
	for name, sel := range map[string]URI{"slot-id": {SlotID: &slot}, "serial": {Serial: serial}} {
		t.Run(name, func(t *testing.T) {
			v := sel
			v.ModulePath, v.PINValue = u.ModulePath, u.PINValue
			s, err := Open(v.String())
			if err != nil {
				t.Fatalf("Open(%s=...): %v", name, err)
			}
			defer s.Close()
			k, err := s.Generate(context.Background(), keystore.PurposeCASigning, keystore.ECDSAP256, "")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(k.URI, "pkcs11:"+name+"=") || !s.Handles(k.URI) {
				t.Errorf("key URI %s: want it to select the token by %s, and Handles to accept it", k.URI, name)
			}
			if s.Handles("pkcs11:token=" + u.Token) {
				t.Errorf("a store configured by %s claims a URI that selects by token label", name)
			}
			if _, err := s.Signer(context.Background(), k.URI, keystore.PurposeCASigning); err != nil {
				t.Error(err)
			}
		})
	}
}
