package pkcs11test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ThalesGroup/crypto11"
	p11 "github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/pkitest"
)

// PIN and SOPIN are the user and security-officer PINs of every token NewToken creates. They protect
// throwaway test tokens only.
const (
	PIN   = "1234"
	SOPIN = "5678"
)

// RequireEnv names the environment variable that turns a missing SoftHSM2 from a skip into a failure, as CI sets it.
const RequireEnv = "KEYWARD_REQUIRE_INTEGRATION"

// ModuleEnv names an environment variable that overrides where the SoftHSM2 PKCS#11 module is looked for.
const ModuleEnv = "KEYWARD_SOFTHSM2_MODULE"

// modulePaths are where distributions install the SoftHSM2 module (Debian/Ubuntu first).
var modulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

const anchorLabel = "keyward-test-anchor"

// process is the process-wide SoftHSM2 set-up. It is package state only because SOFTHSM2_CONF and a loaded
// PKCS#11 module are process state.
var process struct {
	once   sync.Once
	err    error
	dir    string            // temporary directory holding softhsm2.conf and tokens/
	module string            // module path every Context must use
	anchor *crypto11.Context // keeps the module initialised for the life of the process
	ctx    *p11.Ctx          // second handle on the same initialised module, to create tokens in-process
	mu     sync.Mutex        // serialises token creation (finding the free slot, then initialising it)
}

// ModulePath returns the path of the SoftHSM2 module, or skips the test (fails it when KEYWARD_REQUIRE_INTEGRATION=1)
// if SoftHSM2 is not installed.
func ModulePath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(ModuleEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			unavailable(t, fmt.Sprintf("SoftHSM2 module %s (from %s): %v", p, ModuleEnv, err))
		}
		return p
	}
	for _, p := range modulePaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	unavailable(t, fmt.Sprintf("SoftHSM2 module libsofthsm2.so not found in %s; install softhsm2 (Debian: apt-get install softhsm2) or set %s",
		strings.Join(modulePaths, ", "), ModuleEnv))
	return ""
}

// NewToken initialises a fresh SoftHSM2 token with a random label and the user PIN PIN, and returns the keystore
// configuration URI for it, e.g.
// "pkcs11:token=keyward-test-1a2b3c4d5e6f?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234".
// It skips the test if softhsm2-util or the module is missing, unless KEYWARD_REQUIRE_INTEGRATION=1, in which case
// it fails it. Calls are serialised among themselves, but SoftHSM2 does not tolerate a token being initialised
// while another goroutine opens a store (lists slots): do not run such tests in parallel.
func NewToken(t testing.TB) (configURI string) {
	t.Helper()
	module := ModulePath(t)
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		unavailable(t, "softhsm2-util not found in PATH; install softhsm2 (Debian: apt-get install softhsm2)")
	}
	if err := setup(util, module); err != nil {
		t.Fatalf("pkcs11test: set up SoftHSM2: %v", err)
	}
	if module != process.module {
		t.Fatalf("pkcs11test: SoftHSM2 module %s differs from %s, loaded earlier in this process", module, process.module)
	}

	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("pkcs11test: random token label: %v", err)
	}
	label := "keyward-test-" + hex.EncodeToString(rnd[:]) // at most 32 bytes, the size of CK_TOKEN_INFO.label
	if err := initToken(label); err != nil {
		t.Fatalf("pkcs11test: create token %s: %v", label, err)
	}
	return "pkcs11:token=" + label + "?module-path=" + escapeQuery(module) + "&pin-value=" + PIN
}

// Main runs the tests of a package in a hermetic environment (pkitest.Hermetic: no KEYWARD_* variable of the
// caller's shell but the test knobs) and then removes the process-wide SoftHSM2 directory. Use it from TestMain:
//
//	func TestMain(m *testing.M) { pkcs11test.Main(m) }
func Main(m *testing.M) {
	pkitest.Hermetic()
	code := m.Run()
	if process.anchor != nil {
		_ = process.anchor.Close()
	}
	if process.dir != "" {
		_ = os.RemoveAll(process.dir)
	}
	os.Exit(code)
}

// setup prepares the process-wide SoftHSM2 once: configuration, anchor token, module handles.
func setup(util, module string) error {
	process.once.Do(func() { process.err = setupOnce(util, module) })
	return process.err
}

func setupOnce(util, module string) error {
	dir, err := os.MkdirTemp("", "keyward-softhsm2-")
	if err != nil {
		return err
	}
	process.dir = dir
	process.module = module
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return err
	}
	// os.Setenv also calls setenv(3) in cgo binaries, so the module sees it when crypto11 loads it.
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return err
	}
	cmd := exec.Command(util, "--init-token", "--free", "--label", anchorLabel, "--pin", PIN, "--so-pin", SOPIN)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("softhsm2-util --init-token --label %s (SOFTHSM2_CONF=%s): %v\n%s", anchorLabel, conf, err, out)
	}
	process.anchor, err = crypto11.Configure(&crypto11.Config{Path: module, TokenLabel: anchorLabel, Pin: PIN})
	if err != nil {
		return fmt.Errorf("open anchor token %s with module %s (was SoftHSM2 loaded in this process before pkcs11test set SOFTHSM2_CONF?): %w",
			anchorLabel, module, err)
	}
	ctx := p11.New(module)
	if ctx == nil {
		return fmt.Errorf("load module %s a second time", module)
	}
	// crypto11 initialised the module already; this handle shares that instance, which is the point.
	var perr p11.Error
	if err := ctx.Initialize(); !errors.As(err, &perr) || perr != p11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
		return fmt.Errorf("module %s: second handle did not share the initialised instance (C_Initialize: %v)", module, err)
	}
	process.ctx = ctx
	return nil
}

// initToken initialises the first free slot as a token named label, with user PIN PIN.
func initToken(label string) error {
	process.mu.Lock()
	defer process.mu.Unlock()
	ctx := process.ctx
	slots, err := ctx.GetSlotList(false)
	if err != nil {
		return fmt.Errorf("C_GetSlotList: %w", err)
	}
	free, found := uint(0), false
	for _, s := range slots {
		info, err := ctx.GetTokenInfo(s)
		if err != nil {
			return fmt.Errorf("C_GetTokenInfo(slot %d): %w", s, err)
		}
		if info.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			free, found = s, true
			break
		}
	}
	if !found {
		return errors.New("SoftHSM2 offers no free slot")
	}
	if err := ctx.InitToken(free, SOPIN, label); err != nil {
		return fmt.Errorf("C_InitToken(slot %d): %w", free, err)
	}
	sh, err := ctx.OpenSession(free, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession(slot %d): %w", free, err)
	}
	defer func() { _ = ctx.CloseSession(sh) }()
	if err := ctx.Login(sh, p11.CKU_SO, SOPIN); err != nil {
		return fmt.Errorf("C_Login(SO): %w", err)
	}
	defer func() { _ = ctx.Logout(sh) }()
	if err := ctx.InitPIN(sh, PIN); err != nil {
		return fmt.Errorf("C_InitPIN: %w", err)
	}
	return nil
}

// unavailable skips the test, or fails it when integration tests are required.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("SoftHSM2 unavailable and %s=1: %s", RequireEnv, why)
	}
	t.Skipf("skipping SoftHSM2 integration test: %s (set %s=1 to make this a failure)", why, RequireEnv)
}

// escapeQuery percent-encodes what an RFC 7512 query value may not hold literally.
func escapeQuery(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isQueryChar(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// isQueryChar reports whether c is a pk11-qchar other than pct-encoded (RFC 7512 section 2.3).
func isQueryChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~:[]@!$'()*+,=/?|", c) >= 0
}
