package pkcs11test

import (
	"crypto/elliptic"
	"fmt"
	"strings"
	"testing"

	"github.com/ThalesGroup/crypto11"
)

// recorder is a testing.TB that records how a helper gave up instead of giving up on the real test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	panic(r)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

func run(f func(testing.TB)) (r *recorder) {
	r = &recorder{}
	defer func() {
		if v := recover(); v != nil && v != r {
			panic(v)
		}
	}()
	f(r)
	return r
}

func TestMissingSoftHSM(t *testing.T) {
	t.Setenv(ModuleEnv, "/nonexistent/libsofthsm2.so")

	t.Setenv(RequireEnv, "")
	r := run(func(tb testing.TB) { ModulePath(tb) })
	if r.skipped == "" || r.failed != "" {
		t.Errorf("without %s: skipped %q, failed %q; want a skip", RequireEnv, r.skipped, r.failed)
	}

	t.Setenv(RequireEnv, "1")
	r = run(func(tb testing.TB) { NewToken(tb) })
	if r.failed == "" || r.skipped != "" {
		t.Errorf("with %s=1: skipped %q, failed %q; want a failure", RequireEnv, r.skipped, r.failed)
	}
	t.Logf("skip message: %s", r.failed)
}

func TestEscapeQuery(t *testing.T) {
	if got := escapeQuery("/opt/my lib/libsofthsm2.so&x"); got != "/opt/my%20lib/libsofthsm2.so%26x" {
		t.Errorf("escapeQuery = %q", got)
	}
}

// TestTokensWhileOthersOpen creates tokens one after another while the contexts on the earlier ones stay open,
// which a token made by softhsm2-util after the module loaded would not survive. The tokens are made in
// sequence: SoftHSM2 does not tolerate C_InitToken concurrent with another thread listing slots (it can fail
// with CKR_BUFFER_TOO_SMALL or crash).
func TestTokensWhileOthersOpen(t *testing.T) {
	for i := 0; i < 4; i++ {
		cfg := NewToken(t)
		label := cfg[len("pkcs11:token="):strings.Index(cfg, "?")]
		ctx, err := crypto11.Configure(&crypto11.Config{Path: ModulePath(t), TokenLabel: label, Pin: PIN})
		if err != nil {
			t.Fatalf("open %s: %v", label, err)
		}
		defer ctx.Close()
		if _, err := ctx.GenerateECDSAKeyPair([]byte{byte(i + 1)}, elliptic.P256()); err != nil {
			t.Fatalf("generate on %s: %v", label, err)
		}
		if _, err := crypto11.Configure(&crypto11.Config{Path: ModulePath(t), TokenLabel: label + "x", Pin: PIN}); err == nil {
			t.Error("opened a token that does not exist")
		}
	}
}

func TestMain(m *testing.M) { Main(m) }
