package verify_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"filippo.io/mldsa"

	"github.com/keyward/keyward/pkg/firmware/manifest"
	"github.com/keyward/keyward/pkg/firmware/verify"
)

// env is one environment's firmware PKI, built in memory the way Keyward's firmware signing (internal/ra) builds it.
type env struct {
	name     string
	rootKey  *ecdsa.PrivateKey
	root     *x509.Certificate
	pqRoot   *mldsa.PrivateKey
	signKey  *ecdsa.PrivateKey
	signCert []byte
	pqKey    *mldsa.PrivateKey
	pqCert   []byte
}

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// must returns v, panicking on a fixture error: fixtures are built before any assertion, and a panic names
// the failing call in its stack.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func newEnv(t testing.TB, name string) *env {
	t.Helper()
	e := &env{name: name}
	e.rootKey = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) // as internal/ra makes it
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Keyward " + name + " Firmware Root"},
		NotBefore: t0.AddDate(0, -1, 0), NotAfter: t0.AddDate(25, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}
	e.root = must(x509.ParseCertificate(must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, e.rootKey.Public(), e.rootKey))))
	e.pqRoot = must(mldsa.GenerateKey(mldsa.MLDSA65()))
	e.newSigningKey(t)
	return e
}

// newSigningKey replaces the signing keys with fresh ones certified by the current roots.
func (e *env) newSigningKey(t testing.TB) {
	t.Helper()
	e.signKey = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	e.signCert = signingCert(t, e.root, e.rootKey, e.signKey.Public(), x509.ExtKeyUsageCodeSigning)
	e.pqKey = must(mldsa.GenerateKey(mldsa.MLDSA65()))
	e.pqCert = must(manifest.SignPQKeyCert(&manifest.PQKeyCert{
		Environment: e.name, PublicKey: e.pqKey.PublicKey().Bytes(), NotBefore: t0.AddDate(0, -1, 0).Unix(), NotAfter: t0.AddDate(10, 0, 0).Unix(),
	}, e.pqRoot))
}

func signingCert(t testing.TB, root *x509.Certificate, rootKey crypto.Signer, pub crypto.PublicKey, eku x509.ExtKeyUsage) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "fw signing"},
		NotBefore: t0.AddDate(0, -1, 0), NotAfter: t0.AddDate(10, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{eku},
	}
	return must(x509.CreateCertificate(rand.Reader, tmpl, root, pub, rootKey))
}

func (e *env) trust(t testing.TB) *verify.Trust {
	t.Helper()
	return must(verify.NewTrust(e.name, 1, e.root, e.pqRoot.PublicKey(), nil))
}

// manifestFor returns a valid manifest for image, signed by e's current keys (hybrid if asked).
func (e *env) manifestFor(t testing.TB, image []byte, seq uint64, hybrid bool, edit func(*manifest.Manifest)) *manifest.Manifest {
	t.Helper()
	m := &manifest.Manifest{
		DeviceClass: "demo-implant", Sequence: seq, Version: "1.2.3", ImageSHA256: sha256.Sum256(image),
		ImageSize: uint64(len(image)), NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(24 * time.Hour),
		SignerKID: must(manifest.KeyID(e.signKey.Public())),
	}
	if hybrid {
		m.PQSignerKID = must(manifest.KeyID(e.pqKey.Public()))
	}
	if edit != nil {
		edit(m)
	}
	return m
}

func (e *env) sign(t testing.TB, m *manifest.Manifest, hybrid bool) []byte {
	t.Helper()
	payload := must(manifest.Marshal(m))
	var pq *manifest.PQSigner
	if hybrid {
		pq = &manifest.PQSigner{Key: e.pqKey, KeyCert: e.pqCert}
	}
	return must(manifest.SignManifest(payload, manifest.ClassicalSigner{Key: e.signKey, CertDER: e.signCert}, pq))
}

func opts(seq uint64) verify.Options {
	return verify.Options{DeviceClass: "demo-implant", InstalledSequence: seq, Now: t0}
}
