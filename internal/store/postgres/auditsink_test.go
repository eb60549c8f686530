package postgres_test

import (
	"testing"

	"github.com/keyward/keyward/internal/store/storetest"
)

func TestAuditSinkConformance(t *testing.T) {
	storetest.PostgresDSN(t) // skip (or fail) once, not in every subtest, if PostgreSQL is unreachable
	storetest.RunAuditSink(t, func(t *testing.T) storetest.Backend { return open(t) })
}
