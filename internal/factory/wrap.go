package factory

// Device-key wrapping for the software (development) custody. Each private key is sealed with AES-256-GCM
// (NIST SP 800-38D) under a per-device transport key: HKDF-SHA256 (RFC 5869) of the batch's transport master
// key, with the batch id as salt and the credential index in the info, so no two devices share a key and a
// wrapped key moved to another index or batch fails to open. The additional data binds batch id, index and
// certificate serial. The injection station (or the device's secure element) holds the same master key,
// provisioned out of band, and unwraps inside the device; Keyward never writes a device key in the clear.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// TransportKeySize is the size of a transport master key (AES-256).
const TransportKeySize = 32

// TransportKCV returns a key check value of a transport master key: the first 8 bytes of
// SHA-256("keyward transport kcv" | key), hex. It identifies the key without revealing it.
func TransportKCV(master []byte) string {
	h := sha256.Sum256(append([]byte("keyward transport kcv\x00"), master...))
	return hex.EncodeToString(h[:8])
}

func deviceAEAD(master []byte, batchID string, index int64) (cipher.AEAD, error) {
	if len(master) != TransportKeySize {
		return nil, fmt.Errorf("transport key is %d bytes; want %d (AES-256)", len(master), TransportKeySize)
	}
	info := binary.BigEndian.AppendUint64([]byte("keyward factory transport v1\x00"), uint64(index))
	k, err := hkdf.Key(sha256.New, master, []byte(batchID), string(info), 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func wrapAD(batchID string, index int64, certSerial string) []byte {
	ad := binary.BigEndian.AppendUint64([]byte(batchID+"\x00"), uint64(index))
	return append(ad, certSerial...)
}

// WrapDeviceKey seals a PKCS #8 private key for credential index of batch batchID.
func WrapDeviceKey(master []byte, batchID string, index int64, certSerial string, pkcs8 []byte) ([]byte, error) {
	aead, err := deviceAEAD(master, batchID, index)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, pkcs8, wrapAD(batchID, index, certSerial)), nil
}

// UnwrapDeviceKey opens a key sealed by WrapDeviceKey; it is what the injection station does.
func UnwrapDeviceKey(master []byte, batchID string, index int64, certSerial string, wrapped []byte) ([]byte, error) {
	aead, err := deviceAEAD(master, batchID, index)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("wrapped key too short")
	}
	n := aead.NonceSize()
	pt, err := aead.Open(nil, wrapped[:n], wrapped[n:], wrapAD(batchID, index, certSerial))
	if err != nil {
		return nil, fmt.Errorf("unwrap device key %d of batch %s: wrong transport key or altered record", index, batchID)
	}
	return pt, nil
}

// secretAD is the additional data of a symmetric device key of purpose: that of its credential's private key
// (batch id, index, certificate serial), then a zero byte and the purpose. A certificate serial is hex, so it
// holds no zero byte, and no wrapped key of one kind opens as the other or as another purpose's.
func secretAD(batchID string, index int64, certSerial, purpose string) []byte {
	return append(append(wrapAD(batchID, index, certSerial), 0), purpose...)
}

// WrapDeviceSecret seals a derived symmetric device key of purpose for credential index of batch batchID,
// under the same per-device transport key as its private key (WrapDeviceKey).
func WrapDeviceSecret(master []byte, batchID string, index int64, certSerial, purpose string, key []byte) ([]byte, error) {
	aead, err := deviceAEAD(master, batchID, index)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, key, secretAD(batchID, index, certSerial, purpose)), nil
}

// UnwrapDeviceSecret opens a key sealed by WrapDeviceSecret; it is what the injection station does.
func UnwrapDeviceSecret(master []byte, batchID string, index int64, certSerial, purpose string, wrapped []byte) ([]byte, error) {
	aead, err := deviceAEAD(master, batchID, index)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("wrapped key too short")
	}
	n := aead.NonceSize()
	pt, err := aead.Open(nil, wrapped[:n], wrapped[n:], secretAD(batchID, index, certSerial, purpose))
	if err != nil {
		return nil, fmt.Errorf("unwrap %s key %d of batch %s: wrong transport key or altered record", purpose, index, batchID)
	}
	return pt, nil
}
