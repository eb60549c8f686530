package postgres_test

import (
	"testing"

	"github.com/keyward/keyward/internal/store/storetest"
)

func TestEnrollmentConformance(t *testing.T) {
	storetest.PostgresDSN(t) // skip (or fail) once if PostgreSQL is unreachable
	storetest.RunEnrollment(t, func(t *testing.T) storetest.Backend { return open(t) })
}
