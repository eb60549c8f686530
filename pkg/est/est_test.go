package est

import (
	"bytes"
	"strings"
	"testing"
)

func TestBase64Bodies(t *testing.T) {
	der := bytes.Repeat([]byte{0x30, 0x82, 0xff}, 100)
	enc := EncodeBase64(der)
	for _, line := range strings.Split(strings.TrimSpace(string(enc)), "\r\n") {
		if len(line) > 64 {
			t.Fatalf("line of %d characters", len(line))
		}
	}
	for _, body := range [][]byte{enc, bytes.ReplaceAll(enc, []byte("\r\n"), nil), bytes.ReplaceAll(enc, []byte("\r\n"), []byte("\n  \t"))} {
		got, err := DecodeBase64(body)
		if err != nil || !bytes.Equal(got, der) {
			t.Fatalf("DecodeBase64(%q...): %v", body[:10], err)
		}
	}
	for _, bad := range []string{"", "  \r\n", "not base64!", "MA="} {
		if _, err := DecodeBase64([]byte(bad)); err == nil {
			t.Errorf("DecodeBase64(%q) accepted", bad)
		}
	}
	if _, err := ParseCertsOnly(EncodeBase64([]byte{0x30, 0x00})); err == nil {
		t.Error("ParseCertsOnly accepted an empty SEQUENCE")
	}
}

func TestNewClientRefusesPlainHTTP(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8443", "127.0.0.1:8443", "https://"} {
		if _, err := NewClient(u, "demo-implant", nil); err == nil {
			t.Errorf("NewClient(%q) accepted", u)
		}
	}
	if _, err := NewClient("https://h", "a/b", nil); err == nil {
		t.Error("label with a slash accepted")
	}
}
