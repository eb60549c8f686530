package sqlite_test

import (
	"testing"

	"github.com/keyward/keyward/internal/store/storetest"
)

func TestAuditSinkConformance(t *testing.T) {
	storetest.RunAuditSink(t, func(t *testing.T) storetest.Backend { return open(t) })
}
