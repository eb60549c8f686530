package sqlite_test

import (
	"testing"

	"github.com/keyward/keyward/internal/store/storetest"
)

func TestEnrollmentConformance(t *testing.T) {
	storetest.RunEnrollment(t, func(t *testing.T) storetest.Backend { return open(t) })
}
