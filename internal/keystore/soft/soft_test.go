package soft_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/keystoretest"
	"github.com/keyward/keyward/internal/keystore/soft"
)

// fast keeps scrypt cheap in tests; production keystores use the defaults.
var fast = &soft.Options{ScryptN: 1 << 10}

const (
	passphrase = "correct-horse-battery-staple-7f3a"
	wrong      = "WRONG-passphrase-91c2"
)

func newStore(t testing.TB) (*soft.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := soft.Create(dir, []byte(passphrase), fast)
	if err != nil {
		t.Fatalf("Create(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func reopen(t testing.TB, dir string) *soft.Store {
	t.Helper()
	s, err := soft.Open(dir, []byte(passphrase))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) keystore.Keystore {
		s, _ := newStore(t)
		return s
	})
}

// TestReopen checks the sealed form of every algorithm: keys generated, the store closed, reopened, unsealed.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	var keys []keystore.Key
	for _, alg := range keystore.Algorithms {
		if alg == keystore.RSA4096 && testing.Short() {
			continue
		}
		k, err := s.Generate(ctx, keystore.PurposeCASigning, alg, "reopen "+string(alg))
		if err != nil {
			t.Fatalf("Generate(%s): %v", alg, err)
		}
		keys = append(keys, k)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Signer(ctx, keys[0].URI, keystore.PurposeCASigning); err == nil {
		t.Error("Signer on a closed store succeeded")
	}
	s2 := reopen(t, dir)
	for _, k := range keys {
		sg, err := s2.Signer(ctx, k.URI, keystore.PurposeCASigning)
		if err != nil {
			t.Fatalf("Signer(%s) after reopen: %v", k.Algorithm, err)
		}
		keystoretest.SignAndVerify(t, sg, k.Public, k.Algorithm)
		if _, err := s2.Signer(ctx, k.URI, keystore.PurposeCRLSigning); !errors.Is(err, keystore.ErrWrongPurpose) {
			t.Errorf("Signer(%s, crl-signing) after reopen: %v; want ErrWrongPurpose", k.URI, err)
		}
	}
}

func TestKeystoreJSON(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := soft.Create(dir, []byte(passphrase), nil) // defaults: the real scrypt cost, once
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data, err := os.ReadFile(filepath.Join(dir, "keystore.json"))
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Version int
		KDF     struct {
			Name    string
			Salt    []byte
			N, R, P int
		}
		Verifier struct{ Nonce, Ciphertext []byte }
	}
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	if h.Version != 1 || h.KDF.Name != "scrypt" || len(h.KDF.Salt) != 32 || h.KDF.N != 32768 || h.KDF.R != 8 || h.KDF.P != 1 {
		t.Errorf("keystore.json = %s; want version 1, scrypt, 32-byte salt, N=32768 r=8 p=1", data)
	}
	if len(h.Verifier.Nonce) != 12 || len(h.Verifier.Ciphertext) == 0 {
		t.Errorf("verifier nonce %d bytes, ciphertext %d bytes", len(h.Verifier.Nonce), len(h.Verifier.Ciphertext))
	}
	if bytes.Contains(data, []byte(passphrase)) {
		t.Error("keystore.json contains the passphrase")
	}
	if _, err := soft.Create(dir, []byte(passphrase), fast); err == nil {
		t.Error("Create over an existing keystore succeeded")
	}
}

func TestWrongPassphrase(t *testing.T) {
	_, dir := newStore(t)
	_, err := soft.Open(dir, []byte(wrong))
	if !errors.Is(err, keystore.ErrUnseal) {
		t.Fatalf("Open with the wrong passphrase: %v; want ErrUnseal", err)
	}
	want := fmt.Sprintf("cannot unseal keystore at %s: wrong passphrase or corrupted keystore.json", dir)
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	if _, err := soft.Open(dir, nil); !errors.Is(err, keystore.ErrUnseal) {
		t.Errorf("Open with an empty passphrase: %v; want ErrUnseal", err)
	}
}

func TestOpenMissingOrCorrupt(t *testing.T) {
	dir := t.TempDir()
	if _, err := soft.Open(dir, []byte(passphrase)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of an empty dir: %v; want fs.ErrNotExist", err)
	}
	_, good := newStore(t)
	orig, err := os.ReadFile(filepath.Join(good, "keystore.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"not json":     func(string) string { return "{" },
		"huge N":       func(s string) string { return strings.Replace(s, `"n": 1024`, `"n": 1073741824`, 1) },
		"N not pow2":   func(s string) string { return strings.Replace(s, `"n": 1024`, `"n": 1000`, 1) },
		"huge r":       func(s string) string { return strings.Replace(s, `"r": 8`, `"r": 100000`, 1) },
		"other kdf":    func(s string) string { return strings.Replace(s, `"scrypt"`, `"pbkdf2"`, 1) },
		"version 2":    func(s string) string { return strings.Replace(s, `"version": 1`, `"version": 2`, 1) },
		"null nonce":   func(s string) string { return strings.Replace(s, `"nonce": "`, `"nonce": null, "x": "`, 1) },
		"changed salt": func(s string) string { return strings.Replace(s, `"salt": "`, `"salt": "AAAA`, 1) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			edited := edit(string(orig))
			if edited == string(orig) {
				t.Fatalf("edit %q changed nothing in %s", name, orig)
			}
			if err := os.WriteFile(filepath.Join(dir, "keystore.json"), []byte(edited), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := soft.Open(dir, []byte(passphrase))
			if !errors.Is(err, keystore.ErrUnseal) {
				t.Fatalf("Open: %v; want ErrUnseal", err)
			}
			if !strings.HasPrefix(err.Error(), "cannot unseal keystore at "+dir+": ") {
				t.Errorf("error %q does not name the keystore", err)
			}
		})
	}
}

func TestFileModes(t *testing.T) {
	s, dir := newStore(t)
	k, err := s.Generate(context.Background(), keystore.PurposeCASigning, keystore.ECDSAP256, "modes")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(k.URI, "soft:")
	for name, want := range map[string]fs.FileMode{"": 0o700, "keystore.json": 0o600, id + ".key": 0o600} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("mode of %q = %v; want %v", filepath.Join(dir, name), got, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("keystore dir holds %d entries (temporary files left over?): %v", len(entries), entries)
	}
}

func TestKeyFileFormat(t *testing.T) {
	s, dir := newStore(t)
	k, err := s.Generate(context.Background(), keystore.PurposeFirmwareSigning, keystore.Ed25519, "release key 2026")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(k.URI, "soft:")
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("key URI %s: want soft:<32 hex digits>", k.URI)
	}
	data, err := os.ReadFile(filepath.Join(dir, id+".key"))
	if err != nil {
		t.Fatal(err)
	}
	var kf map[string]any
	if err := json.Unmarshal(data, &kf); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"version", "id", "purpose", "algorithm", "label", "created", "nonce", "sealed"} {
		if _, ok := kf[field]; !ok {
			t.Errorf("key file lacks %q: %s", field, data)
		}
	}
	if kf["id"] != id || kf["purpose"] != "firmware-signing" || kf["algorithm"] != "ed25519" || kf["label"] != "release key 2026" {
		t.Errorf("key file = %s", data)
	}
}

// TestTamperedKeyFile flips every byte of a key file in turn: each edit must be refused with ErrUnseal naming the key.
func TestTamperedKeyFile(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	k, err := s.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, "tamper")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(k.URI, "soft:")
	path := filepath.Join(dir, id+".key")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t, dir) // nothing cached
	for i := range orig {
		for _, bit := range []byte{0x01, 0x20} { // 0x20 flips letter case, which encoding/json would forgive in names
			tampered := bytes.Clone(orig)
			tampered[i] ^= bit
			if err := os.WriteFile(path, tampered, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := s2.Signer(ctx, k.URI, keystore.PurposeCASigning)
			if !errors.Is(err, keystore.ErrUnseal) || !strings.Contains(err.Error(), id) {
				t.Fatalf("byte %d ^ %#x (%q -> %q): Signer = %v; want ErrUnseal naming %s", i, bit, orig[i], tampered[i], err, id)
			}
		}
	}
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Signer(ctx, k.URI, keystore.PurposeCASigning); err != nil {
		t.Fatalf("restored key file: %v", err)
	}
}

func TestPurposeEditedInFile(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	k, err := s.Generate(ctx, keystore.PurposeDeviceIdentity, keystore.ECDSAP256, "device")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, strings.TrimPrefix(k.URI, "soft:")+".key")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Same length, so only the purpose differs: an attacker promoting a device key to a CA key.
	edited := bytes.Replace(data, []byte(`"purpose": "device-identity"`), []byte(`"purpose": "ca-signing"`), 1)
	if bytes.Equal(edited, data) {
		t.Fatal("purpose not found in key file")
	}
	if err := os.WriteFile(path, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t, dir)
	for _, p := range []keystore.Purpose{keystore.PurposeCASigning, keystore.PurposeDeviceIdentity} {
		if sg, err := s2.Signer(ctx, k.URI, p); err == nil {
			t.Errorf("Signer(%s) on an edited key file = %v; want refusal", p, sg)
		} else if !errors.Is(err, keystore.ErrUnseal) {
			t.Errorf("Signer(%s) on an edited key file: %v; want ErrUnseal", p, err)
		}
	}
}

func TestSwappedKeyFiles(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	ca, err := s.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, "ca")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := s.Generate(ctx, keystore.PurposeDeviceIdentity, keystore.ECDSAP256, "device")
	if err != nil {
		t.Fatal(err)
	}
	devPath := filepath.Join(dir, strings.TrimPrefix(dev.URI, "soft:")+".key")
	caData, err := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(ca.URI, "soft:")+".key"))
	if err != nil {
		t.Fatal(err)
	}
	// The CA key file under the device key's name, and with the id inside rewritten to match.
	for _, data := range [][]byte{caData, bytes.ReplaceAll(caData, []byte(strings.TrimPrefix(ca.URI, "soft:")), []byte(strings.TrimPrefix(dev.URI, "soft:")))} {
		if err := os.WriteFile(devPath, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s2 := reopen(t, dir)
		for _, p := range []keystore.Purpose{keystore.PurposeCASigning, keystore.PurposeDeviceIdentity} {
			if _, err := s2.Signer(ctx, dev.URI, p); !errors.Is(err, keystore.ErrUnseal) {
				t.Errorf("Signer(%s, %s) on a swapped key file: %v; want ErrUnseal", dev.URI, p, err)
			}
		}
	}
}

func TestOtherKeystoreFile(t *testing.T) {
	ctx := context.Background()
	a, dirA := newStore(t)
	_, dirB := newStore(t) // same passphrase, different salt, so a different KEK
	k, err := a.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, "a")
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(k.URI, "soft:") + ".key"
	data, err := os.ReadFile(filepath.Join(dirA, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := reopen(t, dirB).Signer(ctx, k.URI, keystore.PurposeCASigning); !errors.Is(err, keystore.ErrUnseal) {
		t.Errorf("key file copied from another keystore: %v; want ErrUnseal", err)
	}
}

// TestDestroyOverwrites checks through a second hard link that Destroy overwrote the file's blocks before unlinking.
func TestDestroyOverwrites(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	k, err := s.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, "destroy")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, strings.TrimPrefix(k.URI, "soft:")+".key")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Link(path, link); err != nil {
		t.Skipf("hard links unsupported here: %v", err)
	}
	if err := s.Destroy(ctx, k.URI); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("key file still exists after Destroy: %v", err)
	}
	after, err := os.ReadFile(link)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(orig) || bytes.Equal(after, orig) || bytes.Contains(after, []byte(`"sealed"`)) {
		t.Errorf("file contents after Destroy: %d bytes, same as before: %v", len(after), bytes.Equal(after, orig))
	}
	// A fresh store on the same dir agrees the key is gone.
	if _, err := reopen(t, dir).Signer(ctx, k.URI, keystore.PurposeCASigning); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Signer from a fresh store after Destroy: %v; want ErrNotFound", err)
	}
}

func TestClosedStore(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	k, err := s.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, "close")
	if err != nil {
		t.Fatal(err)
	}
	sg, err := s.Signer(ctx, k.URI, keystore.PurposeCASigning)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	d := sha256.Sum256([]byte("x"))
	if _, err := sg.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
		t.Error("signer still signs after Close")
	}
	if _, err := s.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, "after close"); err == nil {
		t.Error("Generate after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestNoPassphraseInErrors collects the errors of every failure path and checks none repeats a passphrase.
func TestNoPassphraseInErrors(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	k, err := s.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, "errors")
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	collect := func(_ any, err error) { errs = append(errs, err) }
	collect(soft.Open(dir, []byte(wrong)))
	collect(soft.Open(dir, []byte(passphrase+"x")))
	collect(soft.Open(t.TempDir(), []byte(passphrase)))
	collect(soft.Create(dir, []byte(passphrase), fast))
	collect(soft.Create(dir, nil, fast))
	collect(soft.Create(t.TempDir(), []byte(passphrase), &soft.Options{ScryptN: 1000}))
	collect(s.Signer(ctx, k.URI, keystore.PurposeCRLSigning))
	collect(s.Signer(ctx, "pkcs11:token=x?pin-value="+passphrase, keystore.PurposeCASigning))
	errs = append(errs, s.Destroy(ctx, "soft:00000000000000000000000000000000"))
	path := filepath.Join(dir, strings.TrimPrefix(k.URI, "soft:")+".key")
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(data, []byte(`"sealed": "`), []byte(`"sealed": "A`), 1), 0o600)
	collect(reopen(t, dir).Signer(ctx, k.URI, keystore.PurposeCASigning))
	t.Setenv("KEYWARD_TEST_PASSPHRASE_EMPTY", "")
	collect(soft.PassphraseFromEnvOrFile("KEYWARD_TEST_PASSPHRASE_EMPTY", ""))

	for _, err := range errs {
		if err == nil {
			t.Error("an expected failure succeeded")
			continue
		}
		if msg := err.Error(); strings.Contains(msg, passphrase) || strings.Contains(msg, wrong) {
			t.Errorf("error contains a passphrase: %q", msg)
		}
	}
}

func TestPassphraseFromEnvOrFile(t *testing.T) {
	dir := t.TempDir()
	file := func(content string) string {
		f, err := os.CreateTemp(dir, "pass")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(content)
		f.Close()
		return f.Name()
	}
	const env = "KEYWARD_TEST_PASSPHRASE"
	tests := []struct {
		name    string
		env     *string
		file    string
		want    string
		wantErr bool
	}{
		{name: "env wins", env: ptr("from-env"), file: file("from-file\n"), want: "from-env"},
		{name: "env set but empty", env: ptr(""), file: file("from-file\n"), wantErr: true},
		{name: "file", file: file("from-file\n"), want: "from-file"},
		{name: "file without newline", file: file("from-file"), want: "from-file"},
		{name: "file CRLF", file: file("from-file\r\n"), want: "from-file"},
		{name: "only one newline trimmed", file: file("from-file\n\n"), want: "from-file\n"},
		{name: "inner spaces kept", file: file(" a b \n"), want: " a b "},
		{name: "empty file", file: file(""), wantErr: true},
		{name: "newline only", file: file("\n"), wantErr: true},
		{name: "missing file", file: filepath.Join(dir, "missing"), wantErr: true},
		{name: "neither", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := env
			if tt.env != nil {
				t.Setenv(env, *tt.env)
			} else {
				name = env + "_UNSET_" + fmt.Sprint(os.Getpid())
			}
			got, err := soft.PassphraseFromEnvOrFile(name, tt.file)
			if tt.wantErr {
				if err == nil {
					t.Errorf("got %q; want an error", got)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestWriteRandomPassphraseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passphrase")
	pass, err := soft.WriteRandomPassphraseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(pass) != 43 {
		t.Errorf("passphrase is %d characters; want 43 (256 bits, base64url)", len(pass))
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v; want 0600", info.Mode().Perm())
	}
	got, err := soft.PassphraseFromEnvOrFile("KEYWARD_TEST_PASSPHRASE_UNSET_X", path)
	if err != nil || !bytes.Equal(got, pass) {
		t.Errorf("read back %q, %v; want %q", got, err, pass)
	}
	if _, err := soft.WriteRandomPassphraseFile(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second WriteRandomPassphraseFile: %v; want fs.ErrExist", err)
	}
	other, err := soft.WriteRandomPassphraseFile(path + "2")
	if err != nil || bytes.Equal(other, pass) {
		t.Errorf("two random passphrases are equal or failed: %v", err)
	}
	// The dev default end to end: a keystore sealed under the generated file.
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := soft.Create(dir, got, fast)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := soft.Open(dir, pass); err != nil {
		t.Errorf("Open with the generated passphrase: %v", err)
	} else {
		s.Close()
	}
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

// BenchmarkSignBaseline is crypto/ecdsa P-256 signing with no keystore around it: the in-process limit that
// BenchmarkSign is read against.
func BenchmarkSignBaseline(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("benchmark"))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := key.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestKDKConformance(t *testing.T) {
	keystoretest.RunKDK(t, func(t *testing.T) keystoretest.KDKBackend {
		s, _ := newStore(t)
		return s
	}, func(t *testing.T, ks keystoretest.KDKBackend, purpose keystore.Purpose, key []byte) string {
		uri, err := ks.(*soft.Store).ImportKDK(purpose, bytes.Clone(key))
		if err != nil {
			t.Fatal(err)
		}
		return uri
	})
}
