package verify_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/keyward/keyward/pkg/firmware/verify"
)

// BenchmarkImage compares the complete verification (manifest and streamed image) and the image check alone
// with plain SHA-256 over the same bytes, in the same run. 'keyward bench firmware' prints the same figures.
func BenchmarkImage(b *testing.B) {
	dev := newEnv(b, "dev")
	for _, size := range []int{1 << 20, 256 << 20} {
		image := make([]byte, size)
		if _, err := rand.Read(image); err != nil {
			b.Fatal(err)
		}
		env := dev.sign(b, dev.manifestFor(b, image, 7, false, nil), false)
		trust := dev.trust(b)
		m, err := verify.Manifest(env, trust, opts(0))
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("%dMiB", size>>20)
		b.Run(name+"/sha256", func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				sha256.Sum256(image)
			}
		})
		b.Run(name+"/verify", func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := verify.Verify(env, bytes.NewReader(image), trust, opts(0)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/image-check", func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := verify.Image(m, bytes.NewReader(image)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkManifest is manifest-only verification: envelope, chain to the root, signatures and rules.
func BenchmarkManifest(b *testing.B) {
	dev := newEnv(b, "dev")
	image := []byte("image")
	for _, hybrid := range []bool{false, true} {
		env := dev.sign(b, dev.manifestFor(b, image, 7, hybrid, nil), hybrid)
		trust := dev.trust(b)
		b.Run(fmt.Sprintf("hybrid=%v", hybrid), func(b *testing.B) {
			for b.Loop() {
				if _, err := verify.Manifest(env, trust, opts(0)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
