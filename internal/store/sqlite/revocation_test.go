package sqlite_test

import (
	"testing"

	"github.com/keyward/keyward/internal/store/storetest"
)

func TestRevocationConformance(t *testing.T) {
	storetest.RunRevocation(t, func(t *testing.T) storetest.Backend { return open(t) })
}
