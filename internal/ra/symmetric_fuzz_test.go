package ra_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/ra"
)

// FuzzParseSymmetricList: an export record's symmetric key list parses only in its one canonical form (what
// the factory writes), and never panics.
func FuzzParseSymmetricList(f *testing.F) {
	for _, s := range []string{"device-link:1", "device-link:2,device-storage:1", "device-link:01", "device-link:1,device-link:2",
		"kek:1", "device-link:0", "device-link:-1", "", ",", "device-link", "device-link:99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		refs, err := ra.ParseSymmetricList(s)
		if err != nil {
			return
		}
		items := make([]string, len(refs))
		for i, r := range refs {
			items[i] = fmt.Sprintf("%s:%d", r.Purpose, r.Version)
		}
		if back := strings.Join(items, ","); back != s {
			t.Fatalf("%q parsed, but reads back as %q", s, back)
		}
	})
}

func TestParseSymmetricList(t *testing.T) {
	if refs, err := ra.ParseSymmetricList("device-link:2,device-storage:1"); err != nil || len(refs) != 2 || refs[0].Version != 2 || refs[1].Purpose != "device-storage" {
		t.Fatalf("%+v, %v", refs, err)
	}
	for _, bad := range []string{"", "device-link:01", "device-link:0", "kek:1", "device-link:1,device-link:2", "device-link"} {
		if _, err := ra.ParseSymmetricList(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
