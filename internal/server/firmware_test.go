package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/firmware/verify"
)

// TestFirmwareApprovalOverAPI: over the API a release signer approves as the authenticated principal, never
// in another's name; the release is signed only after 2 of 3 distinct signers approved, and the manifest
// verifies against the environment's firmware trust.
func TestFirmwareApprovalOverAPI(t *testing.T) {
	ts := start(t)
	ctx := context.Background()
	tokens := map[string]string{}
	for _, name := range []string{"signer-a", "signer-b", "mallory"} {
		tok, err := ts.n.RA.CreateToken(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.TokenRequest{Name: name, Role: ra.RoleReleaseSigner})
		if err != nil {
			t.Fatal(err)
		}
		tokens[name] = tok
	}
	image := make([]byte, 4096)
	rand.Read(image)
	rel, err := ts.n.RA.CreateRelease(ctx, ra.Principal{ID: "test", Role: ra.RoleAdmin}, ra.FirmwareReleaseRequest{Environment: "dev", ProductLine: "demo-implant", Version: "1.2.3", Image: bytes.NewReader(image)})
	if err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/firmware/releases/" + rel.ID
	if code, body := ts.do(t, "POST", path+"/sign", tokens["signer-a"], nil); code != http.StatusConflict {
		t.Fatalf("sign before threshold: %d %s", code, body)
	}
	if code, body := ts.do(t, "POST", path+"/approve", tokens["mallory"], nil); code != http.StatusForbidden {
		t.Fatalf("approval by a non-signer: %d %s", code, body)
	}
	if code, body := ts.do(t, "POST", path+"/approve", tokens["signer-a"], nil); code != http.StatusOK {
		t.Fatalf("approve signer-a: %d %s", code, body)
	}
	if code, body := ts.do(t, "POST", path+"/approve", tokens["signer-a"], nil); code != http.StatusConflict {
		t.Fatalf("second approval by signer-a: %d %s", code, body)
	}
	code, body := ts.do(t, "POST", path+"/approve", tokens["signer-b"], nil)
	var v api.FirmwareRelease
	if code != http.StatusOK || json.Unmarshal(body, &v) != nil || len(v.Approvers) != 2 {
		t.Fatalf("approve signer-b: %d %s", code, body)
	}
	code, m := ts.do(t, "POST", path+"/sign", ts.admin, nil)
	if code != http.StatusOK {
		t.Fatalf("sign: %d %s", code, m)
	}
	trust, _, err := ts.n.RA.FirmwareTrust(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify.Verify(m, bytes.NewReader(image), trust, verify.Options{DeviceClass: "demo-implant"}); err != nil {
		t.Fatalf("manifest signed over the API does not verify: %v", err)
	}
}
