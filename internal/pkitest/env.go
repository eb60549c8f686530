package pkitest

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Knobs are the KEYWARD_* environment variables that steer the test suite itself, and which Hermetic keeps:
//
//   - KEYWARD_REQUIRE_INTEGRATION=1 turns a skipped integration test (PostgreSQL, SoftHSM2, OpenSSL, curl)
//     into a failure, as CI sets it;
//   - KEYWARD_TEST_POSTGRES is the PostgreSQL DSN the store tests create their schemas in;
//   - KEYWARD_SOFTHSM2_MODULE is where the SoftHSM2 PKCS#11 module is, when not in a usual place;
//   - KEYWARD_FLEET_SIZE is the size of the fleet internal/cli's fleet test enrolls and renews;
//   - KEYWARD_FACTORY_E2E_N and KEYWARD_FACTORY_E2E_INJECT size cmd/keyward's factory batch test.
var Knobs = []string{
	"KEYWARD_REQUIRE_INTEGRATION",
	"KEYWARD_TEST_POSTGRES",
	"KEYWARD_SOFTHSM2_MODULE",
	"KEYWARD_FLEET_SIZE",
	"KEYWARD_FACTORY_E2E_N",
	"KEYWARD_FACTORY_E2E_INJECT",
}

// Hermetic unsets every KEYWARD_* environment variable but the Knobs, so that an operator's shell
// (KEYWARD_PASSPHRASE, KEYWARD_DATA, KEYWARD_DB, KEYWARD_PKCS11_PIN, ...) changes no test's outcome: the product
// reads these as defaults, in-process and in every keyward process a test starts. A test that wants one sets it
// with t.Setenv. Call it first in TestMain, before any test runs; Main does.
func Hermetic() {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "KEYWARD_") && !slices.Contains(Knobs, name) {
			_ = os.Unsetenv(name)
		}
	}
}

// Main runs a package's tests in a hermetic environment: func TestMain(m *testing.M) { pkitest.Main(m) }.
func Main(m *testing.M) {
	Hermetic()
	os.Exit(m.Run())
}
