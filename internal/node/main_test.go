package node

import (
	"testing"

	"github.com/keyward/keyward/internal/pkitest"
)

// The node reads KEYWARD_PASSPHRASE: the caller's shell must not choose the tests' passphrase.
func TestMain(m *testing.M) { pkitest.Main(m) }
