package pkcs11

// Key-derivation keys on the token. A KDK is a generic secret (CKK_GENERIC_SECRET, 256 bits) generated on the
// token as a private token object, sensitive, never extractable, not modifiable or copyable, whose one usage is
// CKA_SIGN: PRF is C_Sign with CKM_SHA256_HMAC (PKCS#11 v2.40 section 2.2.1 of the current mechanisms, "General
// block cipher" / "SHA-256-HMAC"), so an SP 800-108 counter-mode derivation (internal/kbkdf) runs one signature
// per block and the KDK never leaves the HSM. Its CKA_LABEL carries the purpose like every Keyward key; its URI
// has type=secret-key, so Destroy deletes it as a secret key.
//
// The derived key itself is an HMAC output, so it is in host memory the moment the token returns it; WrapSecret
// brings it back into the token as a session object only long enough to wrap it under a transport key with
// C_WrapKey, the way device private keys are exported (wrap.go).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	p11 "github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/keystore"
)

var _ keystore.KDKStore = (*Store)(nil)

// GenerateKDK creates a 256-bit HMAC-SHA-256 key-derivation key on the token for purpose (one of
// keystore.SymmetricPurposes) and returns its URI ("pkcs11:token=...;id=...;object=keyward:<purpose>:<hex id>;
// type=secret-key"). The label argument is not recorded on the token.
func (s *Store) GenerateKDK(ctx context.Context, purpose keystore.Purpose, label string) (keystore.Key, error) {
	if err := ctx.Err(); err != nil {
		return keystore.Key{}, err
	}
	if !purpose.Symmetric() {
		return keystore.Key{}, fmt.Errorf("generate key-derivation key on %s: purpose %q is not one of %v: %w",
			s.name, purpose, keystore.SymmetricPurposes, keystore.ErrWrongPurpose)
	}
	id := make([]byte, idLen)
	if _, err := io.ReadFull(rand.Reader, id); err != nil {
		return keystore.Key{}, fmt.Errorf("generate key id: %w", err)
	}
	objLabel := labelPrefix + string(purpose) + ":" + hex.EncodeToString(id)
	sh, release, err := s.session()
	if err != nil {
		return keystore.Key{}, err
	}
	defer release()
	_, err = s.raw.ctx.GenerateKey(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_GENERIC_SECRET_KEY_GEN, nil)}, kdkTemplate(id, objLabel))
	if err != nil {
		return keystore.Key{}, backendErr(fmt.Sprintf("generate %s key-derivation key on %s", purpose, s.name), err)
	}
	u := s.selector
	u.ID, u.Object, u.Type = id, objLabel, "secret-key"
	return keystore.Key{URI: u.String(), Purpose: purpose, Algorithm: keystore.HMACSHA256}, nil
}

// kdkTemplate is the template of a KDK: a private token object, sensitive, never extractable, not modifiable
// or copyable (C_CopyObject could otherwise change its usage), and able to sign (compute an HMAC) and nothing
// else (usage attributes: PKCS#11 v2.40 sections 4.7 and 4.10).
func kdkTemplate(id []byte, label string) []*p11.Attribute {
	return []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
		p11.NewAttribute(p11.CKA_VALUE_LEN, keystore.KDKSize),
		p11.NewAttribute(p11.CKA_ID, id),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_MODIFIABLE, false),
		p11.NewAttribute(p11.CKA_COPYABLE, false),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_SIGN, true),
		p11.NewAttribute(p11.CKA_VERIFY, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, false),
		p11.NewAttribute(p11.CKA_DECRYPT, false),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
	}
}

// PRF returns HMAC-SHA-256 over data under the KDK at uri, computed by the token (C_Sign, CKM_SHA256_HMAC).
// A key of another purpose is refused with keystore.ErrWrongPurpose, a key pair (a signing key) likewise, and
// a key that is not on the token with keystore.ErrNotFound.
func (s *Store) PRF(ctx context.Context, uri string, purpose keystore.Purpose, data []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, ref, err := s.resolve(uri, "secret-key")
	if err != nil {
		return nil, fmt.Errorf("derive: %w", err)
	}
	sh, release, err := s.session()
	if err != nil {
		return nil, err
	}
	defer release()
	key, have, err := s.lookup(sh, u, p11.CKO_SECRET_KEY)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		if _, other, oerr := s.lookup(sh, u, 0); oerr == nil {
			return nil, fmt.Errorf("derive with %s: it is a %s key pair, not a key-derivation key: %w", ref, other, keystore.ErrWrongPurpose)
		}
		return nil, fmt.Errorf("derive with %s: no secret key with this id on %s: %w", ref, s.name, err)
	case err != nil:
		return nil, fmt.Errorf("derive with %s: %w", ref, err)
	case have != purpose:
		return nil, keystore.PurposeError(ref, have, purpose)
	case !have.Symmetric():
		return nil, fmt.Errorf("derive with %s: a %s key is not a key-derivation key: %w", ref, have, keystore.ErrWrongPurpose)
	}
	if err := s.raw.ctx.SignInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_SHA256_HMAC, nil)}, key); err != nil {
		var code p11.Error
		if errors.As(err, &code) && (code == p11.CKR_KEY_FUNCTION_NOT_PERMITTED || code == p11.CKR_KEY_TYPE_INCONSISTENT) {
			return nil, refused(fmt.Sprintf("derive with %s: the token refuses CKM_SHA256_HMAC with it (%s)", ref, ckrName(code)), keystore.ErrWrongPurpose, err)
		}
		return nil, backendErr(fmt.Sprintf("derive with %s: C_SignInit CKM_SHA256_HMAC", ref), err)
	}
	out, err := s.raw.ctx.Sign(sh, data)
	if err != nil {
		return nil, backendErr(fmt.Sprintf("derive with %s: C_Sign CKM_SHA256_HMAC", ref), err)
	}
	if len(out) != 32 {
		clear(out)
		return nil, backendErr(fmt.Sprintf("derive with %s", ref), fmt.Errorf("CKM_SHA256_HMAC returned %d bytes, not 32", len(out)))
	}
	return out, nil
}

// WrapSecret wraps secret, a derived device key, under the transport key at transportURI with the token's AES
// key wrap (RFC 5649 where offered, as WrapKey): secret enters the token as a session object (CKA_TOKEN
// false), sensitive and extractable, with no usage, is wrapped with C_WrapKey, and is destroyed at once. The
// caller keeps and clears secret.
func (s *Store) WrapSecret(ctx context.Context, secret []byte, transportURI string) ([]byte, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if len(secret) == 0 {
		return nil, "", errors.New("wrap secret: empty key")
	}
	tu, tref, err := s.resolve(transportURI, "secret-key")
	if err != nil {
		return nil, "", fmt.Errorf("wrap secret: transport %w", err)
	}
	sh, release, err := s.session()
	if err != nil {
		return nil, "", err
	}
	defer release()
	tk, tpurpose, err := s.lookup(sh, tu, p11.CKO_SECRET_KEY)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return nil, "", fmt.Errorf("wrap secret: transport key %s: no secret key with this id on %s: %w", tref, s.name, err)
	case err != nil:
		return nil, "", fmt.Errorf("wrap secret: transport key %s: %w", tref, err)
	case tpurpose != keystore.PurposeKEK:
		return nil, "", fmt.Errorf("wrap secret: transport %w", keystore.PurposeError(tref, tpurpose, keystore.PurposeKEK))
	}
	mech, ok := s.raw.mechanism()
	if !ok {
		return nil, "", fmt.Errorf("wrap secret: %s offers no AES key wrap mechanism for C_WrapKey: %w", s.name, errors.ErrUnsupported)
	}
	obj, err := s.raw.ctx.CreateObject(sh, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_VERIFY, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, false),
		p11.NewAttribute(p11.CKA_DECRYPT, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
		p11.NewAttribute(p11.CKA_VALUE, secret),
	})
	if err != nil {
		return nil, "", backendErr(fmt.Sprintf("wrap secret: import it into %s as a session object", s.name), err)
	}
	defer func() { _ = s.raw.ctx.DestroyObject(sh, obj) }()
	wrapped, err := s.raw.ctx.WrapKey(sh, []*p11.Mechanism{p11.NewMechanism(mech, nil)}, tk, obj)
	if err != nil {
		return nil, "", s.wrapError("(derived secret)", tref, mech, err)
	}
	return wrapped, fmt.Sprintf("C_WrapKey %s under %s", mechanismName(mech), tref), nil
}
