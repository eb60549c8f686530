package node

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSiteKeystores: a site package names only the tokens that hold the site's keys, never headquarters' own
// HSMs (which are not at the site, and which the site would fail to open).
func TestSiteKeystores(t *testing.T) {
	hq, out := t.TempDir(), t.TempDir()
	const (
		hqHSM   = "pkcs11:token=hq-ca?module-path=/usr/lib/softhsm/libsofthsm2.so"
		siteHSM = "pkcs11:token=site-a?module-path=/usr/lib/softhsm/libsofthsm2.so"
	)
	for _, u := range []string{hqHSM, siteHSM} {
		if err := rememberKeystore(hq, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := siteKeystores(hq, out, "pkcs11:token=site-a;id=%01;object=keyward:ca-signing:01", "soft:abc"); err != nil {
		t.Fatal(err)
	}
	got, err := ReadKeystores(out)
	if err != nil || len(got) != 1 || got[0] != siteHSM {
		t.Fatalf("site keystores %v, %v; want only %s", got, err, siteHSM)
	}
	// Software-held site keys (dev): no keystores.yaml at all.
	out2 := t.TempDir()
	if err := siteKeystores(hq, out2, "soft:abc", "soft:def"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out2, KeystoresFile)); !os.IsNotExist(err) {
		t.Fatalf("a site with software keys got a keystores.yaml (%v)", err)
	}
}
