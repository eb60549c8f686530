package fleet

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyward/keyward/internal/ra"
)

// Malformed is a certificate of an import file that does not parse: named by file and position, skipped.
type Malformed struct {
	Source string `json:"source"` // file#position, counted from 1
	Reason string `json:"reason"`
}

// maxImportCerts bounds the certificates one file may hold, so that a hostile file cannot make the import
// hold an unbounded list.
const maxImportCerts = 1 << 20

// ParseCertFile reads the certificates of one import file: PEM (one or more CERTIFICATE blocks, text between
// them ignored, RFC 7468) or DER (one certificate, or several concatenated). Every certificate that does not
// parse (RFC 5280 4.1), and every PEM block that is no certificate, is returned in bad, named by file and
// position; the rest are returned in order.
func ParseCertFile(name string, data []byte) (certs []ra.ImportedCert, bad []Malformed) {
	source := func(i int) string { return fmt.Sprintf("%s#%d", name, i) }
	add := func(i int, der []byte) {
		if _, err := x509.ParseCertificate(der); err != nil {
			bad = append(bad, Malformed{Source: source(i), Reason: fmt.Sprintf("not a valid X.509 certificate (RFC 5280 4.1): %v", err)})
			return
		}
		certs = append(certs, ra.ImportedCert{Source: source(i), DER: bytes.Clone(der)})
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for i := 1; i <= maxImportCerts; i++ {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				if bytes.Contains(rest, []byte("-----BEGIN")) {
					bad = append(bad, Malformed{Source: source(i), Reason: "a PEM block that does not decode (RFC 7468): broken base64 or a missing END line"})
				}
				return certs, bad
			}
			if block.Type != "CERTIFICATE" {
				bad = append(bad, Malformed{Source: source(i), Reason: fmt.Sprintf("a PEM block of type %q, not CERTIFICATE", block.Type)})
				continue
			}
			add(i, block.Bytes)
		}
		bad = append(bad, Malformed{Source: source(maxImportCerts + 1), Reason: fmt.Sprintf("more than %d certificates in one file: split it", maxImportCerts)})
		return certs, bad
	}
	in := cryptobyte.String(data)
	for i := 1; len(in) > 0; i++ {
		if i > maxImportCerts {
			bad = append(bad, Malformed{Source: source(i), Reason: fmt.Sprintf("more than %d certificates in one file: split it", maxImportCerts)})
			return certs, bad
		}
		var der cryptobyte.String
		if !in.ReadASN1Element(&der, cbasn1.SEQUENCE) {
			bad = append(bad, Malformed{Source: source(i), Reason: fmt.Sprintf("%d octets that are neither PEM nor a DER certificate (a DER SEQUENCE)", len(in))})
			return certs, bad
		}
		add(i, der)
	}
	if len(certs) == 0 && len(bad) == 0 {
		bad = append(bad, Malformed{Source: source(1), Reason: "the file holds no certificate"})
	}
	return certs, bad
}
