package verify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"

	"filippo.io/mldsa"
	"github.com/veraison/go-cose"

	"github.com/keyward/keyward/pkg/firmware/manifest"
)

// PEM block types of a firmware trust file.
const (
	// PEMRoot holds the firmware root certificate (DER X.509), as openssl reads it.
	PEMRoot = "CERTIFICATE"
	// PEMPQRoot holds the FIPS 204 encoding of the ML-DSA-65 firmware root public key.
	PEMPQRoot = "ML-DSA-65 PUBLIC KEY"
	// PEMTrustState holds the trust's environment, version and revoked key ids (deterministic CBOR).
	PEMTrustState = "KEYWARD FIRMWARE TRUST"
)

// Errors of Trust.Apply and ParseTrustPEM.
var (
	// ErrTrustMalformed: a trust file or trust update does not decode, or holds a key or certificate that is
	// not a firmware root.
	ErrTrustMalformed = errors.New("malformed firmware trust")
	// ErrTrustVersion: a trust update is not the next version (a replay or a skipped version).
	ErrTrustVersion = errors.New("trust update is not the next version")
	// ErrTrustEnvironment: a trust update is for another environment.
	ErrTrustEnvironment = errors.New("trust update is for another environment")
	// ErrTrustSignature: a trust update lacks a valid signature by a root key of the current or the new version.
	ErrTrustSignature = errors.New("trust update not signed by the current and new root keys")
)

// Trust is what a device pins: one environment's firmware root (and ML-DSA-65 root, if hybrid signatures are
// used), the trust version, and the signing keys revoked so far. It is immutable; Apply returns the next one.
type Trust struct {
	// Environment is dev, staging or production; empty when a bare root certificate was pinned.
	Environment string
	// Version is the trust version; a bare root certificate is version 1.
	Version uint64
	// Root is the firmware root certificate.
	Root *x509.Certificate
	// PQRoot is the ML-DSA-65 firmware root, or nil.
	PQRoot *mldsa.PublicKey

	revoked map[string]bool
}

// trustState is the PEMTrustState block.
type trustState struct {
	Environment string   `cbor:"1,keyasint"`
	Version     uint64   `cbor:"2,keyasint"`
	Revoked     [][]byte `cbor:"3,keyasint,omitempty"`
}

// NewTrust builds a Trust. root must be a self-signed ECDSA CA certificate.
func NewTrust(env string, version uint64, root *x509.Certificate, pqRoot *mldsa.PublicKey, revoked [][]byte) (*Trust, error) {
	if err := checkRoot(root); err != nil {
		return nil, err
	}
	if version == 0 {
		return nil, fmt.Errorf("%w: trust version must be at least 1", ErrTrustMalformed)
	}
	t := &Trust{Environment: env, Version: version, Root: root, PQRoot: pqRoot, revoked: map[string]bool{}}
	for _, k := range revoked {
		t.revoked[string(k)] = true
	}
	return t, nil
}

func checkRoot(root *x509.Certificate) error {
	if root == nil {
		return fmt.Errorf("%w: no root certificate", ErrTrustMalformed)
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return fmt.Errorf("%w: root certificate %q is not a self-signed CA certificate", ErrTrustMalformed, root.Subject.CommonName)
	}
	if k, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || (k.Curve != elliptic.P256() && k.Curve != elliptic.P384()) {
		return fmt.Errorf("%w: root certificate %q key must be ECDSA P-256 or P-384", ErrTrustMalformed, root.Subject.CommonName)
	}
	return nil
}

// Revoked reports whether the signing key with id kid (manifest.KeyID) is revoked.
func (t *Trust) Revoked(kid []byte) bool { return t.revoked[string(kid)] }

// RevokedKeys returns the revoked key ids, sorted.
func (t *Trust) RevokedKeys() [][]byte {
	out := make([][]byte, 0, len(t.revoked))
	for k := range t.revoked {
		out = append(out, []byte(k))
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i], out[j]) < 0 })
	return out
}

func (t *Trust) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(t.Root)
	return p
}

// ParseTrustPEM reads a firmware trust file: the root certificate, optionally the ML-DSA-65 root public key and
// the trust state block (environment, version, revoked keys). A file holding only the certificate is trust
// version 1 of an unnamed environment. Unknown block types are refused, so a mistaken file is noticed.
func ParseTrustPEM(data []byte) (*Trust, error) {
	var (
		root  *x509.Certificate
		pq    *mldsa.PublicKey
		state *trustState
	)
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, fmt.Errorf("%w: trailing data that is not PEM", ErrTrustMalformed)
			}
			break
		}
		switch b.Type {
		case PEMRoot:
			if root != nil {
				return nil, fmt.Errorf("%w: more than one %s block; a trust file pins one firmware root", ErrTrustMalformed, PEMRoot)
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: root certificate: %v", ErrTrustMalformed, err)
			}
			root = c
		case PEMPQRoot:
			k, err := mldsa.NewPublicKey(mldsa.MLDSA65(), b.Bytes)
			if err != nil || pq != nil {
				return nil, fmt.Errorf("%w: %s block: want one %d-byte ML-DSA-65 key", ErrTrustMalformed, PEMPQRoot, mldsa.MLDSA65PublicKeySize)
			}
			pq = k
		case PEMTrustState:
			var s trustState
			if err := manifest.UnmarshalStrict(b.Bytes, &s); err != nil || state != nil {
				return nil, fmt.Errorf("%w: %s block: %v", ErrTrustMalformed, PEMTrustState, err)
			}
			state = &s
		default:
			return nil, fmt.Errorf("%w: unexpected PEM block %q (want %s, %s, %s)", ErrTrustMalformed, b.Type, PEMRoot, PEMPQRoot, PEMTrustState)
		}
	}
	if root == nil {
		return nil, fmt.Errorf("%w: no %s block: pin the output of 'keyward firmware trust --env ENV'", ErrTrustMalformed, PEMRoot)
	}
	if state == nil {
		state = &trustState{Version: 1}
	}
	return NewTrust(state.Environment, state.Version, root, pq, state.Revoked)
}

// PEM encodes t as a trust file that ParseTrustPEM reads back.
func (t *Trust) PEM() ([]byte, error) {
	var b bytes.Buffer
	if err := pem.Encode(&b, &pem.Block{Type: PEMRoot, Bytes: t.Root.Raw}); err != nil {
		return nil, err
	}
	if t.PQRoot != nil {
		if err := pem.Encode(&b, &pem.Block{Type: PEMPQRoot, Bytes: t.PQRoot.Bytes()}); err != nil {
			return nil, err
		}
	}
	state, err := manifest.MarshalDeterministic(&trustState{Environment: t.Environment, Version: t.Version, Revoked: t.RevokedKeys()})
	if err != nil {
		return nil, err
	}
	if err := pem.Encode(&b, &pem.Block{Type: PEMTrustState, Bytes: state}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Apply verifies a signed trust update against t and returns the trust it establishes. The update must be for
// t's environment and exactly version t.Version+1, and carry valid signatures by t's root (and ML-DSA root, if
// any) and by the new version's root (and ML-DSA root, if any): the previous keys vouch for the new ones and the
// new ones prove they are held, as in TUF's root rotation. Its revocation list replaces t's.
func (t *Trust) Apply(update []byte) (*Trust, error) {
	if len(update) > manifest.MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: trust update is %d bytes, limit %d", ErrTrustMalformed, len(update), manifest.MaxEnvelopeSize)
	}
	var msg cose.SignMessage
	if err := msg.UnmarshalCBOR(update); err != nil {
		return nil, fmt.Errorf("%w: trust update is not a COSE_Sign (tag 98): %v", ErrTrustMalformed, err)
	}
	if ct, _ := msg.Headers.Protected[cose.HeaderLabelContentType].(string); ct != manifest.ContentTypeTrustUpdate {
		return nil, fmt.Errorf("%w: content type %q, want %q", ErrTrustMalformed, ct, manifest.ContentTypeTrustUpdate)
	}
	var u manifest.TrustUpdate
	if err := manifest.UnmarshalStrict(msg.Payload, &u); err != nil {
		return nil, fmt.Errorf("%w: trust update payload: %v", ErrTrustMalformed, err)
	}
	if t.Environment != "" && u.Environment != t.Environment {
		return nil, fmt.Errorf("%w: update is for %q, this device trusts %q", ErrTrustEnvironment, u.Environment, t.Environment)
	}
	if u.Version != t.Version+1 {
		return nil, fmt.Errorf("%w: update is version %d, this device is at version %d and needs %d next (apply updates in order)", ErrTrustVersion, u.Version, t.Version, t.Version+1)
	}
	root, err := x509.ParseCertificate(u.RootCert)
	if err != nil {
		return nil, fmt.Errorf("%w: update %d root certificate: %v", ErrTrustMalformed, u.Version, err)
	}
	var pq *mldsa.PublicKey
	if u.PQRoot != nil {
		if pq, err = mldsa.NewPublicKey(mldsa.MLDSA65(), u.PQRoot); err != nil {
			return nil, fmt.Errorf("%w: update %d ML-DSA-65 root: %v", ErrTrustMalformed, u.Version, err)
		}
	}
	next, err := NewTrust(u.Environment, u.Version, root, pq, u.Revoked)
	if err != nil {
		return nil, err
	}
	required := []struct {
		who string
		key crypto.PublicKey
	}{{"current root", t.Root.PublicKey}, {"new root", root.PublicKey}}
	if t.PQRoot != nil {
		required = append(required, struct {
			who string
			key crypto.PublicKey
		}{"current ML-DSA-65 root", t.PQRoot})
	}
	if pq != nil {
		required = append(required, struct {
			who string
			key crypto.PublicKey
		}{"new ML-DSA-65 root", pq})
	}
	protected, err := msg.Headers.MarshalProtected()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTrustMalformed, err)
	}
	for _, r := range required {
		kid, err := manifest.KeyID(r.key)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrTrustMalformed, err)
		}
		if err := verifyBy(&msg, protected, kid, r.key); err != nil {
			return nil, fmt.Errorf("%w: update %d: %s (key %s): %v", ErrTrustSignature, u.Version, r.who, shortKID(kid), err)
		}
	}
	return next, nil
}

// verifyBy finds the signature of msg whose kid is kid and verifies it with key.
func verifyBy(msg *cose.SignMessage, protected, kid []byte, key crypto.PublicKey) error {
	var v cose.Verifier
	switch k := key.(type) {
	case *mldsa.PublicKey:
		v = manifest.MLDSAVerifier{Key: k}
	case *ecdsa.PublicKey:
		alg := cose.AlgorithmES256
		if k.Curve == elliptic.P384() {
			alg = cose.AlgorithmES384
		}
		var err error
		if v, err = cose.NewVerifier(alg, k); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported root key type %T", key)
	}
	for _, sig := range msg.Signatures {
		if k, _ := sig.Headers.Protected[cose.HeaderLabelKeyID].([]byte); bytes.Equal(k, kid) {
			return sig.Verify(v, protected, msg.Payload, nil)
		}
	}
	return errors.New("no signature by this key")
}
