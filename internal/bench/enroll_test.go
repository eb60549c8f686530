package bench

import (
	"context"
	"testing"
	"time"
)

// TestEnrollSmall runs the EST enrollment benchmark briefly: real server, real clients, figures filled in.
func TestEnrollSmall(t *testing.T) {
	res, err := Enroll(context.Background(), EnrollOptions{Clients: 2, Duration: 500 * time.Millisecond, Prepare: 300, LimitTime: 200 * time.Millisecond, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Enrolled == 0 || res.Failed != 0 || res.PerSecond <= 0 || res.P50ms <= 0 || res.P99ms < res.P50ms || res.LimitPerSecond <= 0 || res.Ratio <= 0 || !res.AuditVerified {
		t.Fatalf("implausible result %+v", res)
	}
	// Every enrollment left one success event; plus the setup's events.
	if res.AuditEvents < res.Enrolled {
		t.Fatalf("%d audit events for %d enrollments", res.AuditEvents, res.Enrolled)
	}
}
