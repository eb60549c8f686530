package probe

import (
	"testing"
)

func TestPlaintextAlert(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
		ok   bool
	}{
		{[]byte{21, 3, 3, 0, 2, 2, 48}, "unknown certificate authority", true},
		{[]byte{0xff, 0xfe, 21, 3, 1, 0, 2, 2, 42}, "bad certificate", true},
		{[]byte{21, 3, 3, 0, 2, 1, 0}, "close notify", true},
		{[]byte{23, 3, 3, 0, 2, 2, 48}, "", false},  // application data: an encrypted record
		{[]byte{21, 3, 3, 0, 19, 2, 48}, "", false}, // an encrypted alert is longer than 2
		{[]byte{21, 3, 3, 0, 2, 3, 48}, "", false},  // no such level
		{[]byte{21, 3, 3}, "", false},
		{nil, "", false},
	} {
		got, ok := plaintextAlert(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%v: %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzPlaintextAlert: the bytes are the peer's; no input panics or names an alert but from a well-formed
// record.
func FuzzPlaintextAlert(f *testing.F) {
	f.Add([]byte{21, 3, 3, 0, 2, 2, 48})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, ok := plaintextAlert(b)
		if ok && (len(b) < 7 || b[len(b)-7] != 21 || name == "") {
			t.Fatalf("%v named %q", b, name)
		}
	})
}
