package manifest_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/firmware/manifest"
)

func sample() *manifest.Manifest {
	return &manifest.Manifest{
		DeviceClass: "demo-implant", Sequence: 42, Version: "1.4.2", ImageSHA256: sha256.Sum256([]byte("image")),
		ImageSize: 1 << 20, MinBootloader: "1.0.0",
		NotBefore: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC),
		SignerKID: bytes.Repeat([]byte{7}, 32),
	}
}

func TestRoundTripAndSize(t *testing.T) {
	data, err := manifest.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.DeviceClass != "demo-implant" || m.Sequence != 42 || m.ImageSHA256 != sha256.Sum256([]byte("image")) || !m.NotAfter.Equal(sample().NotAfter) {
		t.Fatalf("round trip = %+v", m)
	}
	// The payload stays compact: SUIT's goal for constrained devices.
	if len(data) > 140 {
		t.Errorf("manifest payload is %d bytes, want at most 140", len(data))
	}
	t.Logf("manifest payload: %d bytes", len(data))
}

func TestParseRefuses(t *testing.T) {
	good, err := manifest.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	dup := append([]byte{good[0] + 1}, good[1:]...)
	dup = append(dup, 0x02, 0x61, 'x')
	unknown := append([]byte{good[0] + 1}, good[1:]...)
	unknown = append(unknown, 0x18, 0x63, 0x01) // key 99 is not defined
	indefinite := append([]byte{0xbf}, good[1:]...)
	indefinite = append(indefinite, 0xff)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, manifest.ErrMalformed},
		{"truncated", good[:len(good)-1], manifest.ErrMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), manifest.ErrMalformed},
		{"duplicate key", dup, manifest.ErrMalformed},
		{"unknown key", unknown, manifest.ErrMalformed},
		{"indefinite-length map", indefinite, manifest.ErrMalformed},
		{"tagged", append([]byte{0xc1}, good...), manifest.ErrMalformed},
		{"oversized", make([]byte, manifest.MaxManifestSize+1), manifest.ErrTooLarge},
		{"array, not a map", []byte{0x80}, manifest.ErrMalformed},
		{"non-shortest integer", nonShortest(good), manifest.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := manifest.Parse(tc.data); !errors.Is(err, tc.want) {
				t.Fatalf("Parse = %v, want %v", err, tc.want)
			}
		})
	}
}

// nonShortest re-encodes the sequence number (key 3, value 42 = 0x18 0x2a) with a 16-bit argument.
func nonShortest(good []byte) []byte {
	i := bytes.Index(good, []byte{0x03, 0x18, 0x2a})
	if i < 0 {
		panic("sequence not found in sample encoding")
	}
	out := append([]byte{}, good[:i]...)
	out = append(out, 0x03, 0x19, 0x00, 0x2a)
	return append(out, good[i+3:]...)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*manifest.Manifest)
	}{
		{"bad device class", func(m *manifest.Manifest) { m.DeviceClass = "Demo Implant" }},
		{"sequence zero", func(m *manifest.Manifest) { m.Sequence = 0 }},
		{"not semver", func(m *manifest.Manifest) { m.Version = "1.4" }},
		{"leading zero", func(m *manifest.Manifest) { m.Version = "01.4.2" }},
		{"empty image", func(m *manifest.Manifest) { m.ImageSize = 0 }},
		{"bad bootloader", func(m *manifest.Manifest) { m.MinBootloader = "v2" }},
		{"empty window", func(m *manifest.Manifest) { m.NotAfter = m.NotBefore }},
		{"short kid", func(m *manifest.Manifest) { m.SignerKID = []byte{1} }},
		{"short pq kid", func(m *manifest.Manifest) { m.PQSignerKID = []byte{1} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := sample()
			tc.edit(m)
			if _, err := manifest.Marshal(m); !errors.Is(err, manifest.ErrInvalid) {
				t.Fatalf("Marshal = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	// Precedence examples of semver.org 2.0.0 section 11.
	order := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "2.0.0", "2.1.0", "2.1.1", "10.0.0"}
	for i := range order {
		for j := range order {
			c, err := manifest.CompareVersions(order[i], order[j])
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if c != want {
				t.Errorf("CompareVersions(%s, %s) = %d, want %d", order[i], order[j], c, want)
			}
		}
	}
	if c, _ := manifest.CompareVersions("1.0.0+build.1", "1.0.0+build.2"); c != 0 {
		t.Errorf("build metadata must not affect precedence")
	}
	if _, err := manifest.CompareVersions("1.0", "1.0.0"); err == nil {
		t.Error("CompareVersions accepted 1.0")
	}
}

// FuzzParseManifest checks that Parse never panics and that whatever it accepts is valid and re-encodes to
// exactly the input (one encoding per manifest).
func FuzzParseManifest(f *testing.F) {
	good, err := manifest.Marshal(sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xa0})
	f.Add([]byte{0xbf, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := manifest.Parse(data)
		if err != nil {
			if !errors.Is(err, manifest.ErrMalformed) && !errors.Is(err, manifest.ErrInvalid) && !errors.Is(err, manifest.ErrTooLarge) {
				t.Fatalf("Parse error %v wraps no sentinel", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid manifest: %v", err)
		}
		again, err := manifest.Marshal(m)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted %x but it re-encodes to %x (%v)", data, again, err)
		}
	})
}
