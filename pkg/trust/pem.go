package trust

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// PEM block types of an anchors file.
const (
	// PEMCertificate holds one anchor certificate (DER X.509), as OpenSSL reads a CAfile.
	PEMCertificate = "CERTIFICATE"
	// PEMState holds the anchors' environment and version (state, deterministic CBOR). OpenSSL skips it.
	PEMState = "KEYWARD TRUST STATE"

	// MaxAnchorsFileSize bounds an anchors file as read from outside: MaxAnchors large certificates in base64.
	MaxAnchorsFileSize = 128 << 10
)

// state is the PEMState block: a CBOR map with integer keys, both required.
type state struct {
	Environment string `cbor:"1,keyasint"`
	Version     uint64 `cbor:"2,keyasint"`
}

// ParseAnchorsPEM reads an anchors file: one CERTIFICATE block per anchor and at most one KEYWARD TRUST STATE
// block (environment, version). A file without the state block is a factory's initial set: version 0 of
// environment, which the caller names ("" leaves it unnamed, and such anchors accept no update). When the file
// has a state block and environment is not empty, they must agree (ErrWrongEnvironment). Other block types and
// text after the last block are refused (ErrMalformed), so a mistaken file is noticed.
func ParseAnchorsPEM(data []byte, environment string) (*Anchors, error) {
	if len(data) > MaxAnchorsFileSize {
		return nil, fmt.Errorf("%w: anchors file is %d bytes, limit %d", ErrMalformed, len(data), MaxAnchorsFileSize)
	}
	var (
		certs []*x509.Certificate
		st    *state
	)
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			switch {
			case len(bytes.TrimSpace(rest)) == 0:
			case len(certs) == 0 && st == nil:
				return nil, fmt.Errorf("%w: anchors file is not PEM (no %s block)", ErrMalformed, PEMCertificate)
			default:
				return nil, fmt.Errorf("%w: anchors file has data after its last PEM block", ErrMalformed)
			}
			break
		}
		if len(b.Headers) != 0 {
			return nil, fmt.Errorf("%w: anchors file: %s block has PEM headers", ErrMalformed, b.Type)
		}
		switch b.Type {
		case PEMCertificate:
			if len(certs) == MaxAnchors {
				return nil, fmt.Errorf("%w: anchors file holds more than %d certificates", ErrMalformed, MaxAnchors)
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: anchors file: certificate %d: %v", ErrMalformed, len(certs)+1, err)
			}
			certs = append(certs, c)
		case PEMState:
			if st != nil {
				return nil, fmt.Errorf("%w: anchors file has more than one %s block", ErrMalformed, PEMState)
			}
			var s state
			if err := unmarshalStrict(b.Bytes, &s); err != nil {
				return nil, fmt.Errorf("%w: anchors file: %s block: %v", ErrMalformed, PEMState, err)
			}
			if !envRule.MatchString(s.Environment) {
				return nil, fmt.Errorf("%w: anchors file: %s block names environment %q", ErrMalformed, PEMState, s.Environment)
			}
			st = &s
		default:
			return nil, fmt.Errorf("%w: anchors file has a %q block; it holds only %s blocks and one %s block", ErrMalformed, b.Type, PEMCertificate, PEMState)
		}
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: anchors file has no %s block", ErrMalformed, PEMCertificate)
	}
	if st == nil {
		st = &state{Environment: environment}
	} else if environment != "" && environment != st.Environment {
		return nil, fmt.Errorf("%w: the anchors file holds %q anchors (version %d), not %q", ErrWrongEnvironment, st.Environment, st.Version, environment)
	}
	return NewAnchors(st.Environment, st.Version, certs...)
}

// MarshalPEM encodes a as an anchors file that ParseAnchorsPEM reads back: the certificates, then the state
// block (left out for unnamed anchors, which can only be a factory's initial set).
func (a *Anchors) MarshalPEM() ([]byte, error) {
	if len(a.certs) == 0 {
		return nil, fmt.Errorf("%w: no anchor certificates to write", ErrMalformed)
	}
	var b bytes.Buffer
	for _, c := range a.certs {
		if err := pem.Encode(&b, &pem.Block{Type: PEMCertificate, Bytes: c.Raw}); err != nil {
			return nil, err
		}
	}
	if a.Environment == "" {
		if a.Version != 0 {
			return nil, fmt.Errorf("%w: anchors at version %d must name their environment", ErrMalformed, a.Version)
		}
		return b.Bytes(), nil
	}
	st, err := encMode.Marshal(&state{Environment: a.Environment, Version: a.Version})
	if err != nil {
		return nil, err
	}
	if err := pem.Encode(&b, &pem.Block{Type: PEMState, Bytes: st}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
