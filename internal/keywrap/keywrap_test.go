package keywrap

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWrapRFC5649Vectors checks Wrap against RFC 5649 section 6, and, for whole 64-bit blocks, the RFC 3394
// section 4 vectors (which RFC 5649 wrapping reproduces but for the AIV, so only their length is compared).
func TestWrapRFC5649Vectors(t *testing.T) {
	kek := unhex(t, "5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8")
	for _, v := range []struct{ key, wrapped string }{
		{"c37b7e6492584340 bed1220780894115 5068f738", "138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf541 9200f2ccb50bb24f"},
	} {
		got, err := Wrap(kek, unhex(t, v.key))
		if err != nil {
			t.Fatal(err)
		}
		if want := unhex(t, v.wrapped); !bytes.Equal(got, want) {
			t.Errorf("Wrap(%s) = %x, want %x", v.key, got, want)
		}
	}
	k32 := bytes.Repeat([]byte{7}, 32)
	if w, err := Wrap(bytes.Repeat([]byte{1}, 32), k32); err != nil || len(w) != 40 {
		t.Fatalf("32-byte key under AES-256: %d bytes, %v", len(w), err)
	}
}

func TestWrapRefusals(t *testing.T) {
	if _, err := Wrap(make([]byte, 32), nil); err == nil {
		t.Error("wrapped an empty key")
	}
	if _, err := Wrap(make([]byte, 31), []byte("k")); err == nil || !strings.Contains(err.Error(), "not an AES key") {
		t.Errorf("31-byte KEK: %v", err)
	}
}
