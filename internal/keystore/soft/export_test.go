package soft

import "github.com/keyward/keyward/internal/keystore"

// ImportKDK stores known key bytes as a KDK, for tests that check PRF against crypto/hmac. Production KDKs are
// only generated (GenerateKDK).
func (s *Store) ImportKDK(purpose keystore.Purpose, key []byte) (string, error) {
	return s.sealSecret(purpose, "known test key", key)
}
