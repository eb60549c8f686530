package bench

import (
	"context"
	"testing"
)

// TestAudit runs the audit log benchmark small: the log built with checkpoints verifies, and both issuance
// runs complete with their audit chains verified.
func TestAudit(t *testing.T) {
	res, err := Audit(context.Background(), AuditOptions{Events: 2500, Batch: 100, Checkpoint: 1000, Issue: 40})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 2500 || res.Checkpoints != 3 || res.VerifyEvents < 2500 || res.AppendsPerSecond <= 0 {
		t.Fatalf("result %+v", res)
	}
	if res.IssueWithLogPerSecond <= 0 || res.IssueWithoutPerSecond <= 0 || !res.IssueWithLogAuditValid {
		t.Fatalf("issuance runs: %+v", res)
	}
	if _, err := Audit(context.Background(), AuditOptions{Events: 10, DB: "postgres://x", Issue: 1}); err == nil {
		t.Fatal("an issuance comparison on one database URL was accepted")
	}
}
