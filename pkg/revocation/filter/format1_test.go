package filter

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// v1Fixture is testdata/v1: files made by the format-1 encoder (see its README).
type v1Fixture struct {
	full, delta []byte
	roots       *x509.CertPool
	chain       [][]byte // signer certificate, then its issuer (DER)
	signer      crypto.Signer
	revoked     map[string]bool // hex serial -> revoked in full.kwf
}

// The corrections delta.kwf carries.
const (
	v1DeltaRevokes  = "5c162194e6a3f76ac456683182963fa4"
	v1DeltaReleases = "69b7366577b5a5c6d5f17b9546ce9f21"
)

func loadV1(t testing.TB) *v1Fixture {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "v1", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	fx := &v1Fixture{full: read("full.kwf"), delta: read("delta.kwf"), roots: x509.NewCertPool(), revoked: map[string]bool{}}
	if !fx.roots.AppendCertsFromPEM(read("root.pem")) {
		t.Fatal("root.pem holds no certificate")
	}
	for rest := read("chain.pem"); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		fx.chain = append(fx.chain, b.Bytes)
	}
	kb, _ := pem.Decode(read("signer-key.pem"))
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	fx.signer = k.(crypto.Signer)
	sc := bufio.NewScanner(bytes.NewReader(read("serials.txt")))
	for sc.Scan() {
		hexSerial, state, _ := strings.Cut(sc.Text(), " ")
		fx.revoked[hexSerial] = state == "revoked"
	}
	if len(fx.chain) != 2 || len(fx.revoked) != 300 {
		t.Fatalf("fixture: %d chain certificates, %d serials", len(fx.chain), len(fx.revoked))
	}
	return fx
}

func (fx *v1Fixture) vopts(at time.Duration) VerifyOptions {
	return VerifyOptions{Roots: fx.roots, Environment: "dev", Scope: "demo-implant", Now: now.Add(at)}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFormat1StillVerifies: full filters and deltas made by the format-1 encoder, which devices already hold,
// verify and answer exactly with the current reader.
func TestFormat1StillVerifies(t *testing.T) {
	fx := loadV1(t)
	base, err := Verify(fx.full, fx.vopts(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if base.Version() != 1 || base.Certificates() != 300 || base.RevokedCount() != 10 {
		t.Fatalf("version %d, %d certificates, %d revoked", base.Version(), base.Certificates(), base.RevokedCount())
	}
	for s, revoked := range fx.revoked {
		if base.RevokedBytes(mustHex(t, s)) != revoked {
			t.Fatalf("serial %s: got revoked=%v", s, !revoked)
		}
	}
	f, err := base.ApplyDelta(fx.delta, fx.vopts(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for s, revoked := range fx.revoked {
		switch s {
		case v1DeltaRevokes:
			revoked = true
		case v1DeltaReleases:
			revoked = false
		}
		if f.RevokedBytes(mustHex(t, s)) != revoked {
			t.Fatalf("serial %s with the delta: got revoked=%v", s, !revoked)
		}
	}
	if f.Version() != 2 {
		t.Fatalf("delta version %d", f.Version())
	}
}
