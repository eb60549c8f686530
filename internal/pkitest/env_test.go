package pkitest

import (
	"os"
	"testing"
)

func TestHermetic(t *testing.T) {
	t.Setenv("KEYWARD_PASSPHRASE", "from-the-shell")
	t.Setenv("KEYWARD_DATA", "/nonexistent")
	t.Setenv("KEYWARD_SOMETHING_NEW", "x")
	t.Setenv("KEYWARD_TEST_POSTGRES", "postgres://127.0.0.1/test")
	t.Setenv("KEYWARD_REQUIRE_INTEGRATION", "1")
	t.Setenv("NOT_KEYWARD_PASSPHRASE", "kept")
	Hermetic()
	for _, name := range []string{"KEYWARD_PASSPHRASE", "KEYWARD_DATA", "KEYWARD_SOMETHING_NEW"} {
		if v, ok := os.LookupEnv(name); ok {
			t.Errorf("%s=%q survived", name, v)
		}
	}
	for _, name := range []string{"KEYWARD_TEST_POSTGRES", "KEYWARD_REQUIRE_INTEGRATION", "NOT_KEYWARD_PASSPHRASE"} {
		if _, ok := os.LookupEnv(name); !ok {
			t.Errorf("%s was removed", name)
		}
	}
}
