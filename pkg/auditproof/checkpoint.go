package auditproof

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Errors a caller tells apart with errors.Is.
var (
	// ErrMalformed: a checkpoint, proof or key is not in its format (truncated, garbled, out of range).
	ErrMalformed = errors.New("malformed")
	// ErrSignature: the checkpoint carries no valid signature by the expected key (another key signed it, or
	// its text was changed after signing).
	ErrSignature = errors.New("checkpoint not signed by the audit key")
	// ErrOrigin: the checkpoint is for another log.
	ErrOrigin = errors.New("checkpoint is for another log")
	// ErrMismatch: a proof does not connect what it claims to connect (the event is not in the tree, or the newer
	// tree does not extend the older one).
	ErrMismatch = errors.New("proof does not verify")
)

// Checkpoint is the body of a C2SP tlog-checkpoint: the log's origin, its size and its RFC 9162 root hash.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
}

// maxCheckpoint bounds a signed checkpoint read from outside: a body of three short lines and a few signatures.
const maxCheckpoint = 16 << 10

// Body returns the checkpoint's note text (https://c2sp.org/tlog-checkpoint): origin, decimal size and base64
// root hash, each on its own line.
func (c Checkpoint) Body() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
}

// ParseBody parses a checkpoint note's text. Extension lines after the root are allowed and ignored
// (c2sp.org/tlog-checkpoint), an empty origin, a size that is not canonical decimal or a root that is not a
// 32-byte SHA-256 hash are not.
func ParseBody(text []byte) (Checkpoint, error) {
	if len(text) > maxCheckpoint {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w: %d bytes, at most %d", ErrMalformed, len(text), maxCheckpoint)
	}
	lines := strings.SplitAfter(string(text), "\n")
	if len(lines) < 4 || !strings.HasSuffix(lines[2], "\n") {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w: want origin, size and root hash lines", ErrMalformed)
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	sizeText := strings.TrimSuffix(lines[1], "\n")
	rootText := strings.TrimSuffix(lines[2], "\n")
	if origin == "" {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w: empty origin line", ErrMalformed)
	}
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != sizeText {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w: size %q is not a decimal number", ErrMalformed, sizeText)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(rootText)
	if err != nil || len(root) != sha256.Size {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w: root hash %q is not a base64 SHA-256 hash", ErrMalformed, rootText)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root}, nil
}

// Open verifies a signed checkpoint against the note verifier key vkey (VerifierKey's format) and returns its
// body. The key's name is the log's origin: a checkpoint whose origin line differs is refused with ErrOrigin,
// one without a valid signature by vkey with ErrSignature.
func Open(signed []byte, vkey string) (Checkpoint, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit key: %w: %v", ErrMalformed, err)
	}
	if len(signed) > maxCheckpoint {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w: %d bytes, at most %d", ErrMalformed, len(signed), maxCheckpoint)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified), errors.As(err, &invalid):
			// Name the log the checkpoint claims to be, to tell "another log" from "another key".
			if c, perr := parseUnsigned(signed); perr == nil && c.Origin != v.Name() {
				return Checkpoint{}, fmt.Errorf("%w: it names log %q, the key is for %q", ErrOrigin, c.Origin, v.Name())
			}
			return Checkpoint{}, fmt.Errorf("%w %q: %v", ErrSignature, v.Name(), err)
		}
		return Checkpoint{}, fmt.Errorf("checkpoint: %w: %v", ErrMalformed, err)
	}
	c, err := ParseBody([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: it names log %q, the key is for %q", ErrOrigin, c.Origin, v.Name())
	}
	return c, nil
}

// parseUnsigned parses the body of a signed note without checking a signature, only to name it in an error.
func parseUnsigned(signed []byte) (Checkpoint, error) {
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return Checkpoint{}, ErrMalformed
	}
	return ParseBody(signed[:i+1])
}

// VerifierKey returns the note verifier key of an Ed25519 audit key named origin:
// "<origin>+<key hash, 8 hex digits>+<base64 of 0x01 || public key>" (golang.org/x/mod/sumdb/note).
func VerifierKey(origin string, pub ed25519.PublicKey) (string, error) {
	return note.NewEd25519VerifierKey(origin, pub)
}

// Signer is a note.Signer whose signature is made by a function: the caller's custody (a keystore or an HSM)
// signs, and the private key never reaches this package.
type Signer struct {
	name string
	hash uint32
	sign func(msg []byte) ([]byte, error)
}

// NewSigner returns a note signer named origin for the Ed25519 public key pub; sign must return the pure
// Ed25519 signature (RFC 8032) of the message it is given by the private key of pub.
func NewSigner(origin string, pub ed25519.PublicKey, sign func(msg []byte) ([]byte, error)) (*Signer, error) {
	vkey, err := VerifierKey(origin, pub)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return &Signer{name: origin, hash: v.KeyHash(), sign: sign}, nil
}

// Name is the origin.
func (s *Signer) Name() string { return s.name }

// KeyHash is the note key hash of the origin and public key.
func (s *Signer) KeyHash() uint32 { return s.hash }

// Sign signs msg.
func (s *Signer) Sign(msg []byte) ([]byte, error) { return s.sign(msg) }

var _ note.Signer = (*Signer)(nil)

// Sign returns c as a signed note by s.
func Sign(c Checkpoint, s note.Signer) ([]byte, error) {
	if c.Origin != s.Name() {
		return nil, fmt.Errorf("%w: checkpoint for %q, signer %q", ErrOrigin, c.Origin, s.Name())
	}
	return note.Sign(&note.Note{Text: string(c.Body())}, s)
}
