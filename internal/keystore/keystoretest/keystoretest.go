package keystoretest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/internal/keystore"
)

// Run runs the conformance suite against the backend newKS returns. newKS is called once per subtest and must
// give a fresh, empty keystore and register its Close with t.Cleanup. A backend may refuse an algorithm with an
// error wrapping errors.ErrUnsupported; the suite then skips that algorithm, but every backend must support
// keystore.ECDSAP256. RSA-4096 generation is skipped under -short.
func Run(t *testing.T, newKS func(t *testing.T) keystore.Keystore) {
	t.Run("GenerateSignVerify", func(t *testing.T) {
		for _, alg := range keystore.Algorithms {
			t.Run(string(alg), func(t *testing.T) {
				if alg == keystore.RSA4096 && testing.Short() {
					t.Skip("RSA-4096 generation is slow; skipped under -short")
				}
				testGenerateSignVerify(t, newKS(t), alg)
			})
		}
	})
	t.Run("RefusesUnknownPurposeAndAlgorithm", func(t *testing.T) { testRefusesUnknown(t, newKS(t)) })
	t.Run("WrongPurpose", func(t *testing.T) { testWrongPurpose(t, newKS(t)) })
	t.Run("Destroy", func(t *testing.T) { testDestroy(t, newKS(t)) })
	t.Run("UnknownURI", func(t *testing.T) { testUnknownURI(t, newKS(t)) })
	t.Run("ConcurrentSign", func(t *testing.T) { testConcurrentSign(t, newKS(t)) })
}

// generate generates a key and fails the test on any error.
func generate(t *testing.T, ks keystore.Keystore, purpose keystore.Purpose, alg keystore.Algorithm) keystore.Key {
	t.Helper()
	key, err := ks.Generate(context.Background(), purpose, alg, fmt.Sprintf("conformance %s %s", purpose, alg))
	if err != nil {
		t.Fatalf("Generate(%s, %s): %v", purpose, alg, err)
	}
	return key
}

func testGenerateSignVerify(t *testing.T, ks keystore.Keystore, alg keystore.Algorithm) {
	ctx := context.Background()
	key, err := ks.Generate(ctx, keystore.PurposeCASigning, alg, "conformance "+string(alg))
	if errors.Is(err, errors.ErrUnsupported) && alg != keystore.ECDSAP256 {
		// A backend may lack an algorithm (an exportable Ed25519 key on PKCS#11, say); it must then refuse clearly, naming it,
		// rather than fail obscurely or generate something else.
		if !strings.Contains(err.Error(), string(alg)) && !strings.Contains(strings.ToLower(err.Error()), strings.TrimPrefix(string(alg), "ecdsa-")) {
			t.Fatalf("unsupported %s: the error %q does not name the algorithm", alg, err)
		}
		t.Logf("%s backend refuses %s as unsupported: %v", ks.Location(), alg, err)
		return
	}
	if err != nil {
		t.Fatalf("Generate(%s): %v", alg, err)
	}
	if key.URI == "" {
		t.Fatal("Generate returned an empty URI")
	}
	if !ks.Handles(key.URI) {
		t.Errorf("Handles(%q) = false for a key it generated", key.URI)
	}
	if strings.Contains(key.URI, "pin") || strings.Contains(key.URI, "module-path") || strings.Contains(key.URI, "?") {
		t.Errorf("key URI %q carries configuration (PIN, module path or a query); it must be safe to store and log", key.URI)
	}
	if key.Purpose != keystore.PurposeCASigning || key.Algorithm != alg {
		t.Errorf("Generate returned purpose %q algorithm %q; want %q %q", key.Purpose, key.Algorithm, keystore.PurposeCASigning, alg)
	}
	if got, err := keystore.AlgorithmOf(key.Public); err != nil || got != alg {
		t.Errorf("AlgorithmOf(Key.Public) = %q, %v; want %q", got, err, alg)
	}

	signer, err := ks.Signer(ctx, key.URI, keystore.PurposeCASigning)
	if err != nil {
		t.Fatalf("Signer(%s): %v", key.URI, err)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public) {
		t.Errorf("Signer.Public() differs from Key.Public")
	}
	SignAndVerify(t, signer, key.Public, alg)
}

// SignAndVerify signs a message with s in every scheme Keyward uses for alg (ECDSA with the curve's hash, Ed25519,
// RSA PKCS #1 v1.5 and PSS with SHA-256) and verifies each signature with pub, failing t otherwise.
func SignAndVerify(t testing.TB, s crypto.Signer, pub crypto.PublicKey, alg keystore.Algorithm) {
	t.Helper()
	msg := []byte("keyward conformance message for " + string(alg))
	for _, opts := range signerOpts(alg) {
		sig, err := sign(s, msg, opts)
		if err != nil {
			t.Fatalf("Sign(%s, %T): %v", alg, opts, err)
		}
		if err := verify(pub, msg, sig, opts); err != nil {
			t.Errorf("signature by %s (%T) does not verify with the public key: %v", alg, opts, err)
		}
	}
}

// signerOpts lists the signature schemes Keyward uses per algorithm.
func signerOpts(alg keystore.Algorithm) []crypto.SignerOpts {
	switch alg {
	case keystore.ECDSAP256:
		return []crypto.SignerOpts{crypto.SHA256}
	case keystore.ECDSAP384:
		return []crypto.SignerOpts{crypto.SHA384}
	case keystore.Ed25519:
		return []crypto.SignerOpts{crypto.Hash(0)}
	default: // RSA: PKCS #1 v1.5 and PSS as crypto/x509 uses them
		return []crypto.SignerOpts{crypto.SHA256, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}}
	}
}

func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	case 0:
		return msg // Ed25519 signs the message itself
	}
	panic("keystoretest: unexpected hash " + h.String())
}

func sign(s crypto.Signer, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.Sign(rand.Reader, digest(opts.HashFunc(), msg), opts)
}

func verify(pub crypto.PublicKey, msg, sig []byte, opts crypto.SignerOpts) error {
	d := digest(opts.HashFunc(), msg)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, d, sig) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	case ed25519.PublicKey:
		if !ed25519.Verify(k, d, sig) {
			return errors.New("Ed25519 verification failed")
		}
		return nil
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(k, pss.Hash, d, sig, pss)
		}
		return rsa.VerifyPKCS1v15(k, opts.HashFunc(), d, sig)
	}
	return fmt.Errorf("unexpected public key type %T", pub)
}

func testRefusesUnknown(t *testing.T, ks keystore.Keystore) {
	ctx := context.Background()
	if _, err := ks.Generate(ctx, keystore.Purpose("everything"), keystore.ECDSAP256, "bad purpose"); err == nil {
		t.Error(`Generate with purpose "everything" succeeded; want an error`)
	}
	if _, err := ks.Generate(ctx, keystore.PurposeCASigning, keystore.Algorithm("ecdsa-p192"), "bad algorithm"); err == nil {
		t.Error(`Generate with algorithm "ecdsa-p192" succeeded; want an error`)
	}
}

func testWrongPurpose(t *testing.T, ks keystore.Keystore) {
	ctx := context.Background()
	key := generate(t, ks, keystore.PurposeCRLSigning, keystore.ECDSAP256)
	for _, p := range keystore.Purposes {
		s, err := ks.Signer(ctx, key.URI, p)
		if p == keystore.PurposeCRLSigning {
			if err != nil {
				t.Errorf("Signer(%s, %s): %v", key.URI, p, err)
			}
			continue
		}
		if !errors.Is(err, keystore.ErrWrongPurpose) {
			t.Errorf("Signer(crl-signing key, %s) = %v, %v; want an error wrapping ErrWrongPurpose", p, s, err)
		}
		if errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("wrong-purpose error also matches ErrNotFound: %v", err)
		}
	}
	if _, err := ks.Signer(ctx, key.URI, keystore.Purpose("")); !errors.Is(err, keystore.ErrWrongPurpose) {
		t.Errorf(`Signer with empty purpose: %v; want ErrWrongPurpose`, err)
	}
}

func testDestroy(t *testing.T, ks keystore.Keystore) {
	ctx := context.Background()
	key := generate(t, ks, keystore.PurposeFirmwareSigning, keystore.ECDSAP256)
	keep := generate(t, ks, keystore.PurposeFirmwareSigning, keystore.ECDSAP256)
	before, err := ks.Signer(ctx, key.URI, keystore.PurposeFirmwareSigning)
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	if err := ks.Destroy(ctx, key.URI); err != nil {
		t.Fatalf("Destroy(%s): %v", key.URI, err)
	}
	if _, err := ks.Signer(ctx, key.URI, keystore.PurposeFirmwareSigning); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Signer after Destroy: %v; want ErrNotFound", err)
	}
	if _, err := sign(before, []byte("after destroy"), crypto.SHA256); err == nil {
		t.Error("a signer obtained before Destroy still signs afterwards")
	}
	if err := ks.Destroy(ctx, key.URI); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("second Destroy: %v; want ErrNotFound", err)
	}
	// The other key is untouched.
	s, err := ks.Signer(ctx, keep.URI, keystore.PurposeFirmwareSigning)
	if err != nil {
		t.Fatalf("Signer of the other key after Destroy: %v", err)
	}
	sig, err := sign(s, []byte("still here"), crypto.SHA256)
	if err != nil || verify(keep.Public, []byte("still here"), sig, crypto.SHA256) != nil {
		t.Errorf("the other key no longer signs after Destroy: %v", err)
	}
}

func testUnknownURI(t *testing.T, ks keystore.Keystore) {
	ctx := context.Background()
	key := generate(t, ks, keystore.PurposeAuditSigning, keystore.ECDSAP256)
	uris := []string{
		"",
		"nonsense",
		"soft:00000000000000000000000000000000",
		"soft:../../../etc/passwd",
		"pkcs11:token=no-such-token;id=%00%01",
		"pkcs11:id=%00",
		key.URI + "0",
		strings.TrimSuffix(key.URI, key.URI[len(key.URI)-1:]) + flip(key.URI[len(key.URI)-1]),
	}
	for _, uri := range uris {
		if uri == key.URI {
			continue
		}
		if _, err := ks.Signer(ctx, uri, keystore.PurposeAuditSigning); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("Signer(%q): %v; want ErrNotFound", uri, err)
		}
		if err := ks.Destroy(ctx, uri); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("Destroy(%q): %v; want ErrNotFound", uri, err)
		}
	}
	if _, err := ks.Signer(ctx, key.URI, keystore.PurposeAuditSigning); err != nil {
		t.Errorf("the real key was disturbed by lookups of unknown URIs: %v", err)
	}
}

// flip returns a different character of the same class, to mutate the last character of a URI.
func flip(c byte) string {
	switch {
	case c == '0':
		return "1"
	case c >= '1' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		return "0"
	}
	return "x"
}

func testConcurrentSign(t *testing.T, ks keystore.Keystore) {
	ctx := context.Background()
	key := generate(t, ks, keystore.PurposeOCSPSigning, keystore.ECDSAP256)
	const goroutines, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				// Ask for the signer each time too: the cache must be safe under concurrency.
				s, err := ks.Signer(ctx, key.URI, keystore.PurposeOCSPSigning)
				if err != nil {
					errs <- err
					return
				}
				msg := []byte(fmt.Sprintf("goroutine %d message %d", g, i))
				sig, err := sign(s, msg, crypto.SHA256)
				if err == nil {
					err = verify(key.Public, msg, sig, crypto.SHA256)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
