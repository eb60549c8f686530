package hierarchy

import (
	"strings"
	"testing"
)

func TestFirmwarePolicy(t *testing.T) {
	base := "organization: O\nenvironments:\n  dev:\n    root: {algorithm: ecdsa-p256, validity: 10y}\n    product_lines:\n      p:\n        algorithm: ecdsa-p256\n        validity: 5y\n        profiles: [x]\n"
	tests := []struct {
		name, firmware, wantErr string
	}{
		{"none", "", ""},
		{"2 of 3", "        firmware: {threshold: 2, signers: [a, b, c]}\n", ""},
		{"hybrid", "        firmware: {threshold: 3, signers: [a, b, c], hybrid: true, validity: 90d}\n", ""},
		{"1 of 3", "        firmware: {threshold: 1, signers: [a, b, c]}\n", "at least 2"},
		{"3 of 2", "        firmware: {threshold: 3, signers: [a, b]}\n", "at most the 2"},
		{"duplicate signer", "        firmware: {threshold: 2, signers: [a, a]}\n", "listed twice"},
		{"bad name", "        firmware: {threshold: 2, signers: [a, B c]}\n", "signer names"},
		{"unknown field", "        firmware: {threshold: 2, signers: [a, b], quorum: 2}\n", "quorum"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(base + tc.firmware))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.firmware != "" && c.Environments["dev"].ProductLines["p"].Firmware == nil {
					t.Fatal("firmware policy not parsed")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseConfig error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	d, err := ParseConfig(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	p := d.Environments["dev"].ProductLines["demo-implant"].Firmware
	if p == nil || p.Threshold != 2 || strings.Join(p.Signers, ",") != "signer-a,signer-b,signer-c" {
		t.Fatalf("default demo-implant firmware policy = %+v, want 2 of signer-a, signer-b, signer-c", p)
	}
}
