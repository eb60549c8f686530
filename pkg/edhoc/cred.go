package edhoc

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
)

// COSE header parameters that identify credentials (RFC 9052 section 3.1, RFC 9360 section 2).
const (
	headerKID     = 4
	headerX5Chain = 33
	headerX5T     = 34
)

// IDCred is a parsed ID_CRED_x (RFC 9528 section 3.5.3): the COSE header map that identifies the peer's
// authentication credential.
type IDCred struct {
	// Raw is the map's deterministic encoding, as it enters context_2 and context_3.
	Raw []byte
	// KID is the 'kid' parameter, if present.
	KID []byte
	// X5Chain holds the certificates of an 'x5chain' parameter, end-entity first (DER).
	X5Chain [][]byte
	// X5T is the 'x5t' parameter: a COSE hash algorithm and a hash of the end-entity certificate.
	X5T *X5T
	// StaticDH is set by the protocol when the peer authenticates with a static DH key rather than a
	// signature (its side of the method), so a verifier can check the key's permitted use.
	StaticDH bool
}

// X5T is a certificate thumbprint (RFC 9360 section 2).
type X5T struct {
	Alg  int // -16 SHA-256 or -15 SHA-256/64
	Hash []byte
}

// Matches reports whether der is the certificate the thumbprint names.
func (t *X5T) Matches(der []byte) bool {
	sum := sha256.Sum256(der)
	switch t.Alg {
	case algSHA256:
		return bytes.Equal(t.Hash, sum[:])
	case algSHA256_64:
		return bytes.Equal(t.Hash, sum[:8])
	}
	return false
}

// parseIDCred decodes an ID_CRED_x map. At least one of kid, x5chain and x5t must be present; other
// parameters are kept in Raw but not interpreted.
func parseIDCred(raw []byte) (*IDCred, error) {
	d := newDecoder(raw)
	major, n := d.head("ID_CRED_x")
	if d.err == nil && major != majorMap {
		d.fail("ID_CRED_x: expected a map, found CBOR major type %d", major)
	}
	id := &IDCred{Raw: raw}
	var prev []byte
	for i := uint64(0); i < n && d.err == nil; i++ {
		ks := d.off
		label := d.integer("ID_CRED_x label")
		k := d.b[ks:d.off]
		if prev != nil && compareKeys(prev, k) >= 0 {
			d.fail("ID_CRED_x: map keys not in deterministic order or repeated")
		}
		prev = k
		switch label {
		case headerKID:
			id.KID = d.bytes("kid")
		case headerX5Chain:
			if d.peek() == majorArray {
				_, m := d.head("x5chain")
				if d.err == nil && (m < 2 || m > 8) {
					d.fail("x5chain: an array of %d certificates (2 to 8; a single one is a byte string)", m)
				}
				for j := uint64(0); j < m && d.err == nil; j++ {
					id.X5Chain = append(id.X5Chain, d.bytes("x5chain certificate"))
				}
			} else {
				id.X5Chain = [][]byte{d.bytes("x5chain")}
			}
		case headerX5T:
			_, m := d.head("x5t")
			if d.err == nil && m != 2 {
				d.fail("x5t: expected [alg, hash]")
			}
			t := &X5T{Alg: int(d.integer("x5t alg")), Hash: d.bytes("x5t hash")}
			validHash := (t.Alg == algSHA256 && len(t.Hash) == 32) || (t.Alg == algSHA256_64 && len(t.Hash) == 8)
			if d.err == nil && !validHash {
				d.fail("x5t: hash algorithm %d with a %d-byte hash (supported: -16 SHA-256, -15 SHA-256/64)", t.Alg, len(t.Hash))
			}
			id.X5T = t
		default:
			d.skip("ID_CRED_x value", 1)
		}
	}
	d.end("ID_CRED_x")
	if d.err != nil {
		return nil, d.err
	}
	if id.KID == nil && id.X5Chain == nil && id.X5T == nil {
		return nil, fmt.Errorf("%w: ID_CRED_x has no kid, x5chain or x5t", ErrUnknownCredential)
	}
	return id, nil
}

// kidMap encodes {4: kid}.
func kidMap(kid []byte) []byte { return appendBstr([]byte{0xa1, headerKID}, kid) }

// compactKID returns the kid of an ID_CRED_x that holds only a kid: RFC 9528 section 3.5.3.2 sends it
// without the map.
func compactKID(raw []byte) ([]byte, bool) {
	d := newDecoder(raw)
	major, n := d.head("")
	if major != majorMap || n != 1 || d.integer("") != headerKID {
		return nil, false
	}
	kid := d.bytes("")
	d.end("")
	return kid, d.err == nil
}

// appendIDCredWire appends ID_CRED_x as PLAINTEXT_2 and PLAINTEXT_3 carry it.
func appendIDCredWire(b, raw []byte) []byte {
	if kid, ok := compactKID(raw); ok {
		return appendID(b, kid)
	}
	return append(b, raw...)
}

// idCredWire reads ID_CRED_x from a plaintext: a map, or the compact kid, as an int or a byte string
// (RFC 9528 section 3.5.3.2). A map holding only a kid is refused: it has a compact form.
func (d *decoder) idCredWire(what string) []byte {
	switch d.peek() {
	case majorMap:
		raw := d.skip(what, 0)
		if _, ok := compactKID(raw); ok && d.err == nil {
			d.fail("%s: a map holding only 'kid' must be sent as the kid alone", what)
		}
		return raw
	case majorUint, majorNeg, majorBytes:
		return kidMap(d.id(what))
	}
	d.fail("%s: expected a map, an integer or a byte string", what)
	return nil
}

// Credential is an endpoint's own authentication credential.
type Credential struct {
	// IDCred is the encoded ID_CRED_x the peer finds the credential by.
	IDCred []byte
	// Cred is CRED_x as it enters the transcript: a byte string holding the DER certificate for X.509
	// (RFC 9528 section 3.5.2), the CCS map for a raw public key.
	Cred []byte
	// Key is the private authentication key: an ed25519.PrivateKey or an ECDSA P-256 crypto.Signer (a
	// signature method), or an *ecdh.PrivateKey (static DH); a software *ecdsa.PrivateKey serves both.
	Key crypto.PrivateKey
}

// X509Credential makes a credential of a certificate chain (end-entity first, DER). With byValue the chain
// travels in ID_CRED_x as 'x5chain' (RFC 9360); otherwise the peer must already hold the certificate,
// found by its 'x5t' thumbprint (SHA-256/64).
func X509Credential(chain [][]byte, key crypto.PrivateKey, byValue bool) (*Credential, error) {
	if len(chain) == 0 || len(chain) > 8 {
		return nil, fmt.Errorf("%w: a certificate chain of %d certificates (1 to 8)", ErrConfig, len(chain))
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("%w: end-entity certificate: %v", ErrConfig, err)
	}
	if err := keyMatches(key, leaf.PublicKey); err != nil {
		return nil, err
	}
	var id []byte
	if byValue {
		id = appendInt([]byte{0xa1}, headerX5Chain)
		if len(chain) == 1 {
			id = appendBstr(id, chain[0])
		} else {
			id = appendHead(id, majorArray, uint64(len(chain)))
			for _, c := range chain {
				id = appendBstr(id, c)
			}
		}
	} else {
		sum := sha256.Sum256(chain[0])
		id = []byte{0xa1, 0x18, headerX5T, 0x82}
		id = appendInt(id, algSHA256_64)
		id = appendBstr(id, sum[:8])
	}
	return &Credential{IDCred: id, Cred: bstr(chain[0]), Key: key}, nil
}

// KIDCredential makes a credential identified by kid, with cred its CCS (RFC 8392) or other encoding that
// both endpoints hold byte for byte.
func KIDCredential(kid, cred []byte, key crypto.PrivateKey) *Credential {
	return &Credential{IDCred: kidMap(kid), Cred: cred, Key: key}
}

func keyMatches(key crypto.PrivateKey, pub crypto.PublicKey) error {
	var mine crypto.PublicKey
	switch k := key.(type) {
	case *ecdh.PrivateKey:
		mine = k.PublicKey()
	case crypto.Signer:
		mine = k.Public()
	default:
		return fmt.Errorf("%w: private key of type %T (want Ed25519, ECDSA P-256 or ECDH)", ErrConfig, key)
	}
	if eq, ok := mine.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
		return fmt.Errorf("%w: the private key does not belong to the certificate", ErrConfig)
	}
	return nil
}

// PeerCredential is what a CredentialVerifier returns: the peer's CRED_x and authentication key.
type PeerCredential struct {
	// Cred is CRED_x exactly as the peer's transcript has it.
	Cred []byte
	// PublicKey is ed25519.PublicKey or *ecdsa.PublicKey (signature), or *ecdh.PublicKey (static DH).
	PublicKey crypto.PublicKey
	// Certificate is the peer's verified end-entity certificate, when the credential is X.509.
	Certificate *x509.Certificate
	// Role is what the verifier found the peer to be.
	Role Role
}

// CredentialVerifier resolves and checks the peer's ID_CRED_x. It returns an error matching
// ErrUnknownCredential when it knows no such credential, and a *CredentialError when it knows it but
// refuses it. It is called before the peer's signature or MAC is checked, so it must not act on the
// credential beyond deciding.
type CredentialVerifier interface {
	VerifyCredential(id *IDCred) (*PeerCredential, error)
}

// dhPublic returns the static DH key of a peer credential for curve.
func dhPublic(pub crypto.PublicKey, curve ecdh.Curve) (*ecdh.PublicKey, error) {
	var k *ecdh.PublicKey
	switch p := pub.(type) {
	case *ecdh.PublicKey:
		k = p
	case *dualKey:
		k = p.dh
	case *ecdsa.PublicKey:
		var err error
		if k, err = p.ECDH(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
	default:
		return nil, fmt.Errorf("%w: a %T key cannot be a static DH key", ErrInvalidKey, pub)
	}
	if k.Curve() != curve {
		return nil, fmt.Errorf("%w: static DH key is not on the suite's curve", ErrInvalidKey)
	}
	return k, nil
}

// dhPrivate returns the static DH private key of a local credential for curve.
func dhPrivate(key crypto.PrivateKey, curve ecdh.Curve) (*ecdh.PrivateKey, error) {
	var k *ecdh.PrivateKey
	switch p := key.(type) {
	case *ecdh.PrivateKey:
		k = p
	case *ecdsa.PrivateKey:
		var err error
		if k, err = p.ECDH(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	default:
		return nil, fmt.Errorf("%w: a %T key cannot do static DH (methods 1-3 need an ECDH or ECDSA key)", ErrConfig, key)
	}
	if k.Curve() != curve {
		return nil, fmt.Errorf("%w: static DH key is not on the suite's curve", ErrConfig)
	}
	return k, nil
}

// ParseCCS extracts the public key of a CWT Claims Set (RFC 8392) that carries a COSE_Key in its 'cnf'
// claim (RFC 8747): EC2 P-256 with x and y, or OKP X25519 / Ed25519.
func ParseCCS(ccs []byte) (crypto.PublicKey, error) {
	d := newDecoder(ccs)
	raw := d.skip("CCS", 0) // validates the whole structure first
	d.end("CCS")
	if d.err != nil {
		return nil, d.err
	}
	keyMap := mapValue(raw, 8) // cnf
	if keyMap != nil {
		keyMap = mapValue(keyMap, 1) // COSE_Key
	}
	if keyMap == nil {
		return nil, fmt.Errorf("%w: CCS has no cnf COSE_Key", ErrMalformed)
	}
	kty, crv := intValue(mapValue(keyMap, 1)), intValue(mapValue(keyMap, -1))
	x := bytesValue(mapValue(keyMap, -2))
	switch {
	case kty == 2 && crv == 1: // EC2, P-256
		y := bytesValue(mapValue(keyMap, -3))
		if len(x) != 32 || len(y) != 32 {
			return nil, fmt.Errorf("%w: CCS P-256 key needs 32-byte x and y", ErrInvalidKey)
		}
		pt := append(append([]byte{4}, x...), y...)
		k, err := ecdh.P256().NewPublicKey(pt)
		if err != nil {
			return nil, fmt.Errorf("%w: CCS P-256 key: %v", ErrInvalidKey, err)
		}
		// An ECDSA view of the same point serves signature methods.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
		if err != nil {
			return nil, fmt.Errorf("%w: CCS P-256 key: %v", ErrInvalidKey, err)
		}
		return &dualKey{dh: k, sig: pub}, nil
	case kty == 1 && crv == 4: // OKP, X25519
		k, err := ecdh.X25519().NewPublicKey(x)
		if err != nil {
			return nil, fmt.Errorf("%w: CCS X25519 key: %v", ErrInvalidKey, err)
		}
		return k, nil
	case kty == 1 && crv == 6: // OKP, Ed25519
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: CCS Ed25519 key of %d bytes", ErrInvalidKey, len(x))
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("%w: CCS COSE_Key kty %d crv %d (supported: EC2 P-256, OKP X25519, OKP Ed25519)", ErrInvalidKey, kty, crv)
}

// dualKey is a P-256 point usable for both ES256 and static DH.
type dualKey struct {
	dh  *ecdh.PublicKey
	sig *ecdsa.PublicKey
}

// mapValue returns the encoded value under integer label in an encoded map already validated by skip.
func mapValue(m []byte, label int64) []byte {
	d := newDecoder(m)
	major, n := d.head("")
	if major != majorMap {
		return nil
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var k int64 = -1 << 62
		if p := d.peek(); p == majorUint || p == majorNeg {
			k = d.integer("")
		} else {
			d.skip("", 0)
		}
		v := d.skip("", 0)
		if k == label {
			return v
		}
	}
	return nil
}

func intValue(b []byte) int64 {
	if b == nil {
		return -1 << 62
	}
	d := newDecoder(b)
	v := d.integer("")
	if d.err != nil {
		return -1 << 62
	}
	return v
}

func bytesValue(b []byte) []byte {
	if b == nil {
		return nil
	}
	d := newDecoder(b)
	v := d.bytes("")
	if d.err != nil {
		return nil
	}
	return v
}
