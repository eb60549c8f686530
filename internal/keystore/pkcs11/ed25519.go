package pkcs11

// Ed25519 keys, which crypto11 v1.5.0 cannot make or find (it knows no CKK_EC_EDWARDS), through this Store's
// raw handle on the module (wrap.go): generated with CKM_EC_EDWARDS_KEY_PAIR_GEN and used with CKM_EDDSA, pure
// Ed25519 (PKCS#11 v3.0 sections 2.3.5 and 2.3.14; RFC 8032). SoftHSM2 implements both.

import (
	"crypto"
	"crypto/ed25519"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	p11 "github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/keystore"
)

// PKCS#11 v3.0 values miekg/pkcs11 v1.1.1 does not define.
const (
	ckkECEdwards            = 0x00000040
	ckmECEdwardsKeyPairGen  = 0x00001055
	ckmEdDSA                = 0x00001057
	ed25519PublicKeyDERSize = 2 + ed25519.PublicKeySize
)

// oidEd25519 is id-Ed25519 (RFC 8410 section 3), the CKA_EC_PARAMS of an Ed25519 key.
var oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}

// edSigner is an Ed25519 key pair on the token, found by CKA_ID. It implements crypto11.Signer (Delete) so that
// it lives in the Store's cache beside crypto11's own.
type edSigner struct {
	s     *Store
	id    []byte
	label string // CKA_LABEL
	pub   ed25519.PublicKey
}

func (k *edSigner) Public() crypto.PublicKey { return k.pub }

// Sign returns the pure Ed25519 signature of msg (opts must not name a hash, as ed25519.PrivateKey requires).
func (k *edSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 {
		return nil, errors.New("Ed25519 on PKCS#11 signs the message itself (pure Ed25519, RFC 8032); Ed25519ph is not supported")
	}
	sh, release, err := k.s.session()
	if err != nil {
		return nil, err
	}
	defer release()
	priv, err := k.s.findObject(sh, k.id, p11.CKO_PRIVATE_KEY)
	if err != nil {
		return nil, err
	}
	ctx := k.s.raw.ctx
	if err := ctx.SignInit(sh, []*p11.Mechanism{p11.NewMechanism(ckmEdDSA, nil)}, priv); err != nil {
		return nil, err
	}
	return ctx.Sign(sh, msg)
}

// Delete destroys both halves of the key pair.
func (k *edSigner) Delete() error {
	sh, release, err := k.s.session()
	if err != nil {
		return err
	}
	defer release()
	for _, class := range []uint{p11.CKO_PRIVATE_KEY, p11.CKO_PUBLIC_KEY} {
		h, err := k.s.findObject(sh, k.id, class)
		if errors.Is(err, keystore.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if err := k.s.raw.ctx.DestroyObject(sh, h); err != nil {
			return err
		}
	}
	return nil
}

// findObject returns the one object of class with CKA_ID id.
func (s *Store) findObject(sh p11.SessionHandle, id []byte, class uint) (p11.ObjectHandle, error) {
	ctx := s.raw.ctx
	if err := ctx.FindObjectsInit(sh, []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, id), p11.NewAttribute(p11.CKA_CLASS, class)}); err != nil {
		return 0, backendErr(fmt.Sprintf("search %s", s.name), err)
	}
	objs, _, err := ctx.FindObjects(sh, 2)
	if ferr := ctx.FindObjectsFinal(sh); err == nil {
		err = ferr
	}
	switch {
	case err != nil:
		return 0, backendErr(fmt.Sprintf("search %s", s.name), err)
	case len(objs) == 0:
		return 0, fmt.Errorf("key %x on %s: %w", id, s.name, keystore.ErrNotFound)
	case len(objs) > 1:
		return 0, fmt.Errorf("%s holds several objects of this class with id %x; refusing an ambiguous key", s.name, id)
	}
	return objs[0], nil
}

// generateEd25519 makes an Ed25519 key pair with the templates of attributeSets (sign/verify only, private half
// sensitive and never extractable).
func (s *Store) generateEd25519(id []byte, label string) (*edSigner, error) {
	params, err := asn1.Marshal(oidEd25519)
	if err != nil {
		return nil, err
	}
	common := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_ID, id),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_MODIFIABLE, false),
		p11.NewAttribute(p11.CKA_KEY_TYPE, ckkECEdwards),
	}
	pub := append(append([]*p11.Attribute{}, common...),
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_EC_PARAMS, params),
		p11.NewAttribute(p11.CKA_VERIFY, true),
		p11.NewAttribute(p11.CKA_ENCRYPT, false),
		p11.NewAttribute(p11.CKA_WRAP, false))
	priv := append(append([]*p11.Attribute{}, common...),
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_SIGN, true),
		p11.NewAttribute(p11.CKA_DECRYPT, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_DERIVE, false))
	sh, release, err := s.session()
	if err != nil {
		return nil, err
	}
	defer release()
	pubH, _, err := s.raw.ctx.GenerateKeyPair(sh, []*p11.Mechanism{p11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pub, priv)
	if err != nil {
		return nil, err
	}
	key, err := s.edPublic(sh, pubH)
	if err != nil {
		return nil, err
	}
	return &edSigner{s: s, id: id, label: label, pub: key}, nil
}

// edPublic reads an Ed25519 public key object's CKA_EC_POINT: the 32-byte key, DER-wrapped in an OCTET STRING
// as PKCS#11 v3.0 section 2.3.5 says, or bare as some tokens return it.
func (s *Store) edPublic(sh p11.SessionHandle, h p11.ObjectHandle) (ed25519.PublicKey, error) {
	attrs, err := s.raw.ctx.GetAttributeValue(sh, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, backendErr(fmt.Sprintf("read an Ed25519 public key on %s", s.name), err)
	}
	v := attrs[0].Value
	switch {
	case len(v) == ed25519.PublicKeySize:
		return ed25519.PublicKey(append([]byte(nil), v...)), nil
	case len(v) == ed25519PublicKeyDERSize:
		var point []byte
		if rest, err := asn1.Unmarshal(v, &point); err == nil && len(rest) == 0 && len(point) == ed25519.PublicKeySize {
			return ed25519.PublicKey(point), nil
		}
	}
	return nil, fmt.Errorf("Ed25519 public key on %s: CKA_EC_POINT of %d bytes is not a 32-byte key", s.name, len(v))
}

// findEd25519 returns the Ed25519 key pair with CKA_ID id, or an error wrapping keystore.ErrNotFound if the
// token holds no Ed25519 private key with that id.
func (s *Store) findEd25519(id []byte) (*edSigner, error) {
	sh, release, err := s.session()
	if err != nil {
		return nil, err
	}
	defer release()
	priv, err := s.findObject(sh, id, p11.CKO_PRIVATE_KEY)
	if err != nil {
		return nil, err
	}
	attrs, err := s.raw.ctx.GetAttributeValue(sh, priv, []*p11.Attribute{p11.NewAttribute(p11.CKA_KEY_TYPE, nil), p11.NewAttribute(p11.CKA_LABEL, nil)})
	if err != nil {
		return nil, backendErr(fmt.Sprintf("read a key type on %s", s.name), err)
	}
	if kt := attrs[0].Value; ckULong(kt) != ckkECEdwards {
		return nil, fmt.Errorf("key %x on %s is not an Ed25519 key: %w", id, s.name, keystore.ErrNotFound)
	}
	pubH, err := s.findObject(sh, id, p11.CKO_PUBLIC_KEY)
	if err != nil {
		return nil, err
	}
	pub, err := s.edPublic(sh, pubH)
	if err != nil {
		return nil, err
	}
	return &edSigner{s: s, id: id, label: string(attrs[1].Value), pub: pub}, nil
}

// ckULong reads a CK_ULONG attribute, in the host's byte order as the module wrote it.
func ckULong(b []byte) uint64 {
	switch len(b) {
	case 8:
		return binary.NativeEndian.Uint64(b)
	case 4:
		return uint64(binary.NativeEndian.Uint32(b))
	}
	return 0
}
