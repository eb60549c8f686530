package ra_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store/storetest"
)

// TestAuditLogOneTreeAcrossNodes: two nodes on one PostgreSQL database issue concurrently while both sign
// checkpoints; the log stays one tree: every stored checkpoint verifies and is consistent with the log, and
// the tables match the state the log recorded.
func TestAuditLogOneTreeAcrossNodes(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.PostgresDSN(t)
	dir := filepath.Join(t.TempDir(), "d")
	first, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: dir, DB: dsn, Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	second, err := node.Open(ctx, node.Options{Dir: dir, DB: dsn, Warn: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	admin := ra.Principal{ID: "test", Role: ra.RoleAdmin}
	sys := ra.System("test")

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i, n := range []*node.Node{first, second} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 15; j++ {
				if _, err := n.RA.Issue(ctx, admin, ra.IssueRequest{Profile: "implant-identity", CSR: csr(t, key(t), fmt.Sprintf("DEMO-%d%07d", i+1, j))}); err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				if _, err := n.RA.Checkpoint(ctx, sys, nil); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := first.RA.Checkpoint(ctx, sys, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := second.RA.VerifyAudit(ctx, sys, ra.AuditVerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checkpoints < 2 || rep.Records < 30 {
		t.Fatalf("verified %+v; want several checkpoints and every certificate", rep)
	}
	vk1, err1 := first.RA.AuditVerifierKey(ctx, sys)
	vk2, err2 := second.RA.AuditVerifierKey(ctx, sys)
	if err1 != nil || err2 != nil || vk1 != vk2 {
		t.Fatalf("the nodes' audit keys: %q (%v), %q (%v); want one key", vk1, err1, vk2, err2)
	}
}
