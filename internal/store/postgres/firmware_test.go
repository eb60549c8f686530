package postgres_test

import (
	"testing"

	"github.com/keyward/keyward/internal/store/storetest"
)

func TestFirmwareConformance(t *testing.T) {
	storetest.RunFirmware(t, func(t *testing.T) storetest.Backend { return open(t) })
}
