package bench

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestAPISmall runs the API benchmark briefly against a real 'keyward serve' process built from this tree:
// figures filled in, every request answered 201, and every certificate in the audit trail.
func TestAPISmall(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "keyward")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/keyward").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	res, err := API(context.Background(), APIOptions{Binary: bin, Clients: 2, Duration: 500 * time.Millisecond, Prepare: 400,
		LimitTime: 200 * time.Millisecond, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Issued == 0 || res.Failed != 0 || res.PerSecond <= 0 || res.P50ms <= 0 || res.P99ms < res.P50ms || res.P999ms < res.P99ms ||
		res.MaxMs < res.P999ms || res.ServerCPUPer1k <= 0 || res.LimitPerSecond <= 0 || res.Ratio <= 0 || !res.AuditVerified {
		t.Fatalf("implausible result %+v", res)
	}
	if res.AuditEvents < res.Issued {
		t.Fatalf("%d audit events for %d certificates", res.AuditEvents, res.Issued)
	}
}

// TestAPIBadOptions: a run that cannot measure anything is refused before it starts a process.
func TestAPIBadOptions(t *testing.T) {
	for _, o := range []APIOptions{{Binary: "keyward", Clients: 0, Duration: time.Second}, {Binary: "keyward", Clients: 1}, {Clients: 1, Duration: time.Second}} {
		if _, err := API(context.Background(), o); err == nil {
			t.Fatalf("API(%+v) accepted", o)
		}
	}
}
