package soft

// Key-derivation keys in the software keystore (development and the embedded single node): 32 random bytes,
// sealed in a <id>.key file like every other key, with algorithm hmac-sha256 and a symmetric purpose. The
// sealed plaintext is the raw key instead of a PKCS #8 structure. PRF computes HMAC-SHA-256 in memory; the
// key leaves the Store only sealed.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/keyward/keyward/internal/keystore"
)

var _ keystore.KDKStore = (*Store)(nil)

// GenerateKDK creates a 256-bit key-derivation key for purpose (one of keystore.SymmetricPurposes) from
// crypto/rand, seals it to <dir>/<id>.key and returns its "soft:<id>" reference.
func (s *Store) GenerateKDK(ctx context.Context, purpose keystore.Purpose, label string) (keystore.Key, error) {
	if err := ctx.Err(); err != nil {
		return keystore.Key{}, err
	}
	if !purpose.Symmetric() {
		return keystore.Key{}, fmt.Errorf("generate key-derivation key in %s: purpose %q is not one of %v: %w", s.dir, purpose, keystore.SymmetricPurposes, keystore.ErrWrongPurpose)
	}
	if len(label) > maxLabel {
		return keystore.Key{}, fmt.Errorf("generate key-derivation key in %s: label is %d bytes; the limit is %d", s.dir, len(label), maxLabel)
	}
	secret := make([]byte, keystore.KDKSize)
	if _, err := io.ReadFull(rand.Reader, secret); err != nil {
		return keystore.Key{}, fmt.Errorf("generate key-derivation key: %w", err)
	}
	uri, err := s.sealSecret(purpose, label, secret)
	if err != nil {
		clear(secret)
		return keystore.Key{}, err
	}
	return keystore.Key{URI: uri, Purpose: purpose, Algorithm: keystore.HMACSHA256}, nil
}

// sealSecret writes secret as a new KDK file and caches it; the Store takes secret over.
func (s *Store) sealSecret(purpose keystore.Purpose, label string, secret []byte) (string, error) {
	rawID := make([]byte, idLen)
	if _, err := io.ReadFull(rand.Reader, rawID); err != nil {
		return "", fmt.Errorf("generate key id: %w", err)
	}
	id := hex.EncodeToString(rawID)
	s.mu.RLock()
	aead, closed := s.aead, s.closed
	s.mu.RUnlock()
	if closed {
		return "", s.closedErr()
	}
	kf := keyFile{
		Version: formatVersion, ID: id, Purpose: purpose, Algorithm: keystore.HMACSHA256, Label: label,
		Created: time.Now().UTC().Truncate(time.Second),
		Nonce:   make([]byte, aead.NonceSize()),
	}
	if _, err := io.ReadFull(rand.Reader, kf.Nonce); err != nil {
		return "", fmt.Errorf("generate key nonce: %w", err)
	}
	kf.Sealed = aead.Seal(nil, kf.Nonce, secret, keyAD(&kf))
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return "", fmt.Errorf("generate key %s%s: %w", uriPrefix, id, err)
	}
	if err := writeFileAtomic(s.dir, id+keySuffix, append(data, '\n')); err != nil {
		return "", fmt.Errorf("generate key %s%s: %w", uriPrefix, id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", s.closedErr()
	}
	s.cache[id] = &entry{id: id, purpose: purpose, algorithm: keystore.HMACSHA256, secret: secret}
	return uriPrefix + id, nil
}

// loadKDKLocked unseals the KDK file at path (already read into data and decoded into kf, its version, id,
// purpose and nonce size checked) and caches it. s.mu must be held for writing.
func (s *Store) loadKDKLocked(uri, path string, data []byte, kf *keyFile) (*entry, error) {
	if kf.Algorithm != keystore.HMACSHA256 || !kf.Purpose.Symmetric() {
		return nil, unsealErr(fmt.Sprintf("cannot unseal key %s: %s pairs algorithm %q with purpose %q; a key-derivation key is %s with one of %v",
			uri, path, truncate(string(kf.Algorithm)), kf.Purpose, keystore.HMACSHA256, keystore.SymmetricPurposes))
	}
	if canon, err := json.MarshalIndent(kf, "", "  "); err != nil || !bytes.Equal(append(canon, '\n'), data) {
		return nil, unsealErr(fmt.Sprintf("cannot unseal key %s: %s has been edited (not in the form Keyward writes)", uri, path))
	}
	secret, err := s.aead.Open(nil, kf.Nonce, kf.Sealed, keyAD(kf))
	if err != nil {
		return nil, unsealErr(fmt.Sprintf("cannot unseal key %s: %s fails authentication (corrupted, edited, or sealed under another keystore's passphrase)", uri, path))
	}
	if len(secret) != keystore.KDKSize {
		clear(secret)
		return nil, unsealErr(fmt.Sprintf("cannot unseal key %s: %s holds %d bytes; a key-derivation key is %d", uri, path, len(secret), keystore.KDKSize))
	}
	e := &entry{id: kf.ID, purpose: kf.Purpose, algorithm: kf.Algorithm, secret: secret}
	s.cache[kf.ID] = e
	return e, nil
}

// PRF returns HMAC-SHA-256 under the KDK at uri over data, refusing a key of another purpose
// (keystore.ErrWrongPurpose) and a key that is not a KDK.
func (s *Store) PRF(ctx context.Context, uri string, purpose keystore.Purpose, data []byte) ([]byte, error) {
	e, err := s.entryFor(ctx, uri, purpose)
	if err != nil {
		return nil, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.algorithm != keystore.HMACSHA256 {
		return nil, fmt.Errorf("key %s is a %s signing key, not a key-derivation key: %w", uri, e.algorithm, keystore.ErrWrongPurpose)
	}
	if e.secret == nil {
		return nil, fmt.Errorf("derive with key %s: key destroyed or keystore closed: %w", uri, keystore.ErrNotFound)
	}
	m := hmac.New(sha256.New, e.secret)
	m.Write(data)
	return m.Sum(nil), nil
}
