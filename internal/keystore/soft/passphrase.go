package soft

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// PassphraseEnv is the environment variable the keystore passphrase is read from first.
const PassphraseEnv = "KEYWARD_PASSPHRASE"

// PassphraseFromEnvOrFile returns the keystore passphrase: the value of the environment variable envName
// (normally PassphraseEnv) if it is set, else the contents of file with one trailing newline trimmed. It is an
// error if the variable is set but empty, if neither is available, or if the passphrase is empty.
//
// An environment variable is visible to processes of the same user (/proc/<pid>/environ); prefer a file with
// mode 0600 outside development.
func PassphraseFromEnvOrFile(envName, file string) ([]byte, error) {
	if v, ok := os.LookupEnv(envName); ok {
		if v == "" {
			return nil, fmt.Errorf("keystore passphrase: %s is set but empty", envName)
		}
		return []byte(v), nil
	}
	if file == "" {
		return nil, fmt.Errorf("keystore passphrase: set %s or give a passphrase file", envName)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("keystore passphrase: %s is not set and the passphrase file cannot be read: %w", envName, err)
	}
	if s, ok := strings.CutSuffix(string(b), "\n"); ok {
		b = []byte(strings.TrimSuffix(s, "\r"))
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("keystore passphrase: passphrase file %s is empty", file)
	}
	return b, nil
}

// WriteRandomPassphraseFile creates path with mode 0600, failing if it exists, and writes a random passphrase
// (256 bits from crypto/rand, unpadded base64url) and a newline to it. It returns the passphrase. It is how the
// embedded development default gets a keystore passphrase without asking anyone.
func WriteRandomPassphraseFile(path string) ([]byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("random passphrase for %s: %w", path, err)
	}
	pass := []byte(base64.RawURLEncoding.EncodeToString(raw))
	clear(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create passphrase file: %w", err)
	}
	_, err = f.Write(append(pass[:len(pass):len(pass)], '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("write passphrase file %s: %w", path, err)
	}
	return pass, nil
}
