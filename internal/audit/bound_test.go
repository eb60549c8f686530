package audit

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBound(t *testing.T) {
	long := strings.Repeat("A", 60<<10)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "DEMO-00000001", "DEMO-00000001"},
		{"NUL", "DEMO\x00-1", `DEMO\x00-1`},
		{"newline", "a\nb\r", `a\nb\r`},
		{"backslash", `a\x00`, `a\\x00`},
		{"invalid UTF-8", "a\xffb", `a\xffb`},
		{"zero width", "a\u200bb", `a\u200bb`},
		{"unicode kept", "Zürich", "Zürich"},
		{"60 KB", long, strings.Repeat("A", MaxDetail-len("...(61440 bytes)")) + "...(61440 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Bound(tc.in, MaxDetail)
			if got != tc.want {
				t.Fatalf("Bound(%.40q) = %.80q, want %.80q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzBound(f *testing.F) {
	f.Add("DEMO\x00\n\\\xff\u200b", 256)
	f.Add(strings.Repeat("é", 300), 40)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 4096 {
			return
		}
		got := Bound(s, max)
		limit := max
		if limit < 32 {
			limit = 32
		}
		if len(got) > limit {
			t.Fatalf("Bound(%q, %d) is %d bytes", s, max, len(got))
		}
		if !utf8.ValidString(got) || strings.ContainsAny(got, "\x00\n\r") {
			t.Fatalf("Bound(%q) = %q is not printable UTF-8", s, got)
		}
	})
}
