package postgres_test

import (
	"testing"

	"github.com/keyward/keyward/internal/store/storetest"
)

func TestFactoryConformance(t *testing.T) {
	storetest.RunFactory(t, func(t *testing.T) storetest.Backend { return open(t) })
}
