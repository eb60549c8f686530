package node

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// AttestationDir is the directory of the data directory that configures attestation: a file
// attestation/<profile>.pem holds the secure-element vendor root certificates that enrollments under that
// profile must chain an attestation to; without such a file a profile needs no attestation. (Profiles are
// versioned certificate policy; which vendors' secure elements a factory buys is deployment configuration,
// so it lives beside the profiles rather than in them.)
const AttestationDir = "attestation"

// LoadAttestation reads DIR/attestation/*.pem into a map from profile name to root pool.
func LoadAttestation(dir string) (map[string]*x509.CertPool, error) {
	files, err := filepath.Glob(filepath.Join(dir, AttestationDir, "*.pem"))
	if err != nil {
		return nil, err
	}
	out := map[string]*x509.CertPool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		n := 0
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: certificate %d: %w", f, n+1, err)
			}
			pool.AddCert(c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%s holds no PEM certificate: put the secure-element vendor's attestation root(s) there, or remove the file", f)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".pem")] = pool
	}
	return out, nil
}
