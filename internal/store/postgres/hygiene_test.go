package postgres_test

import (
	"testing"

	"github.com/keyward/keyward/internal/store/storetest"
)

func TestHygieneConformance(t *testing.T) {
	storetest.RunHygiene(t, func(t *testing.T) storetest.Backend { return open(t) })
}
