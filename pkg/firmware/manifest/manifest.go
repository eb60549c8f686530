package manifest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// FormatVersion is the manifest format this package writes and reads (manifest key 1).
const FormatVersion = 1

// DigestSHA256 is the COSE algorithm identifier of SHA-256 (RFC 9054 section 2.1), the only image digest
// algorithm accepted, as in SUIT's suit-digest.
const DigestSHA256 = -16

// MaxManifestSize bounds the encoded manifest payload. A real one is about 120 bytes.
const MaxManifestSize = 1024

// Manifest is a decoded, validated firmware manifest. The CBOR keys are given with each field.
type Manifest struct {
	// DeviceClass is the product line (device model) the image is for, e.g. "demo-implant" (key 2).
	DeviceClass string
	// Sequence increases with every release of the device class; a device refuses a sequence not greater than
	// the one installed (anti-rollback, RFC 9019 section 3, suit-manifest-sequence-number) (key 3).
	Sequence uint64
	// Version is the image's semantic version (semver.org 2.0.0), for people; rollback uses Sequence (key 4).
	Version string
	// ImageSHA256 is the SHA-256 digest of the image (key 5, as [-16, digest]).
	ImageSHA256 [sha256.Size]byte
	// ImageSize is the image length in bytes (key 6).
	ImageSize uint64
	// MinBootloader is the lowest bootloader version (semver) that can boot the image; empty for none (key 7).
	MinBootloader string
	// NotBefore and NotAfter bound when a device may install the image, to the second (keys 8 and 9).
	NotBefore, NotAfter time.Time
	// SignerKID is the SHA-256 of the DER SubjectPublicKeyInfo of the ECDSA key that signs the manifest (key 10).
	SignerKID []byte
	// PQSignerKID, when set, is the SHA-256 of the ML-DSA-65 public key that must also sign the manifest: a
	// hybrid manifest. A verifier refuses a hybrid manifest whose ML-DSA signature was stripped (key 11).
	PQSignerKID []byte
}

// Hybrid reports whether m requires both an ECDSA and an ML-DSA-65 signature.
func (m *Manifest) Hybrid() bool { return len(m.PQSignerKID) != 0 }

// digest is SUIT's suit-digest: [algorithm-id, bytes].
type digest struct {
	_         struct{} `cbor:",toarray"`
	Algorithm int64
	Value     []byte
}

// wire is the CBOR form of Manifest.
type wire struct {
	Format        uint64  `cbor:"1,keyasint"`
	DeviceClass   string  `cbor:"2,keyasint"`
	Sequence      uint64  `cbor:"3,keyasint"`
	Version       string  `cbor:"4,keyasint"`
	Digest        *digest `cbor:"5,keyasint"`
	ImageSize     uint64  `cbor:"6,keyasint"`
	MinBootloader string  `cbor:"7,keyasint,omitempty"`
	NotBefore     int64   `cbor:"8,keyasint"`
	NotAfter      int64   `cbor:"9,keyasint"`
	SignerKID     []byte  `cbor:"10,keyasint"`
	PQSignerKID   []byte  `cbor:"11,keyasint,omitempty"`
}

// Errors of Parse; test with errors.Is. Each comes wrapped with the field and the rule it broke.
var (
	// ErrMalformed: the bytes are not a well-formed, deterministically encoded manifest map (bad CBOR, an
	// indefinite length, a duplicate or unknown key, a wrong type, trailing bytes).
	ErrMalformed = errors.New("malformed firmware manifest")
	// ErrTooLarge: the encoding exceeds MaxManifestSize.
	ErrTooLarge = errors.New("firmware manifest too large")
	// ErrInvalid: the manifest decodes but a field breaks a rule (unknown format version, empty device class,
	// sequence 0, a version that is not semver, a digest that is not SHA-256, an empty validity window).
	ErrInvalid = errors.New("invalid firmware manifest")
)

// Strict CBOR modes shared by every decoder of this package and of package verify.
var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   8,
		MaxArrayElements:  4096,
		MaxMapPairs:       32,
		UTF8:              cbor.UTF8RejectInvalid,
		IntDec:            cbor.IntDecConvertSignedOrFail,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// UnmarshalStrict decodes data into v with this package's strict rules and then requires data to be the
// deterministic encoding of v, so that no two encodings of one value are accepted. It is exported for package
// verify, which decodes trust updates and key certificates the same way.
func UnmarshalStrict(data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return err
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, data) {
		return errors.New("not the deterministic CBOR encoding (RFC 8949 section 4.2.1): keys out of order, non-shortest integers or lengths, or explicit default values")
	}
	return nil
}

// MarshalDeterministic encodes v with RFC 8949 core deterministic encoding.
func MarshalDeterministic(v any) ([]byte, error) { return encMode.Marshal(v) }

var (
	// nameRule is the product-line naming rule of keyward.yaml.
	nameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// semverRule is the regular expression of semver.org 2.0.0.
	semverRule = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
		`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
		`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
)

// Marshal validates m and returns its deterministic CBOR encoding.
func Marshal(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	w := wire{
		Format: FormatVersion, DeviceClass: m.DeviceClass, Sequence: m.Sequence, Version: m.Version,
		Digest:    &digest{Algorithm: DigestSHA256, Value: m.ImageSHA256[:]},
		ImageSize: m.ImageSize, MinBootloader: m.MinBootloader,
		NotBefore: m.NotBefore.Unix(), NotAfter: m.NotAfter.Unix(),
		SignerKID: m.SignerKID, PQSignerKID: m.PQSignerKID,
	}
	return encMode.Marshal(&w)
}

// Parse decodes and validates a manifest payload (the COSE payload, not the signed envelope: use package
// verify for that). Errors wrap ErrTooLarge, ErrMalformed or ErrInvalid.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxManifestSize)
	}
	var w wire
	if err := UnmarshalStrict(data, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if w.Format != FormatVersion {
		return nil, fmt.Errorf("%w: format version (key 1) is %d; this verifier reads version %d", ErrInvalid, w.Format, FormatVersion)
	}
	if w.Digest == nil {
		return nil, fmt.Errorf("%w: image digest (key 5) is missing", ErrInvalid)
	}
	if w.Digest.Algorithm != DigestSHA256 || len(w.Digest.Value) != sha256.Size {
		return nil, fmt.Errorf("%w: image digest (key 5) must be [-16, 32-byte SHA-256]; got algorithm %d with %d bytes", ErrInvalid, w.Digest.Algorithm, len(w.Digest.Value))
	}
	m := &Manifest{
		DeviceClass: w.DeviceClass, Sequence: w.Sequence, Version: w.Version, ImageSize: w.ImageSize,
		MinBootloader: w.MinBootloader, NotBefore: time.Unix(w.NotBefore, 0).UTC(), NotAfter: time.Unix(w.NotAfter, 0).UTC(),
		SignerKID: w.SignerKID, PQSignerKID: w.PQSignerKID,
	}
	copy(m.ImageSHA256[:], w.Digest.Value)
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Validate checks every rule a manifest must keep; errors wrap ErrInvalid and name the field.
func (m *Manifest) Validate() error {
	switch {
	case !nameRule.MatchString(m.DeviceClass):
		return fmt.Errorf("%w: device class (key 2) %q must be a product-line name: lower-case letters, digits and '-', at most 63", ErrInvalid, clip(m.DeviceClass))
	case m.Sequence == 0:
		return fmt.Errorf("%w: sequence (key 3) must be at least 1", ErrInvalid)
	case !semverRule.MatchString(m.Version) || len(m.Version) > 64:
		return fmt.Errorf("%w: version (key 4) %q is not a semantic version such as 1.4.2 (semver.org 2.0.0, at most 64 bytes)", ErrInvalid, clip(m.Version))
	case m.ImageSize == 0:
		return fmt.Errorf("%w: image size (key 6) must be at least 1 byte", ErrInvalid)
	case m.MinBootloader != "" && (!semverRule.MatchString(m.MinBootloader) || len(m.MinBootloader) > 64):
		return fmt.Errorf("%w: minimum bootloader version (key 7) %q is not a semantic version", ErrInvalid, clip(m.MinBootloader))
	case !m.NotAfter.After(m.NotBefore):
		return fmt.Errorf("%w: validity window (keys 8, 9) is empty: not-after %s is not after not-before %s", ErrInvalid,
			m.NotAfter.UTC().Format(time.RFC3339), m.NotBefore.UTC().Format(time.RFC3339))
	case len(m.SignerKID) != sha256.Size:
		return fmt.Errorf("%w: signer key id (key 10) must be the 32-byte SHA-256 of the signer's SubjectPublicKeyInfo, got %d bytes", ErrInvalid, len(m.SignerKID))
	case m.PQSignerKID != nil && len(m.PQSignerKID) != sha256.Size:
		return fmt.Errorf("%w: ML-DSA signer key id (key 11) must be the 32-byte SHA-256 of the public key, got %d bytes", ErrInvalid, len(m.PQSignerKID))
	}
	return nil
}

// ValidVersion reports whether v is a semantic version (semver.org 2.0.0) this package accepts.
func ValidVersion(v string) bool { return len(v) <= 64 && semverRule.MatchString(v) }

// CompareVersions compares two semantic versions by semver.org 2.0.0 precedence (build metadata ignored) and
// returns -1, 0 or +1. It returns an error if either is not a semantic version.
func CompareVersions(a, b string) (int, error) {
	pa, ok := semverRule.FindStringSubmatch(a), ValidVersion(a)
	pb, okb := semverRule.FindStringSubmatch(b), ValidVersion(b)
	if !ok || !okb {
		return 0, fmt.Errorf("compare versions %q and %q: not semantic versions", clip(a), clip(b))
	}
	for i := 1; i <= 3; i++ {
		if c := compareNumeric(pa[i], pb[i]); c != 0 {
			return c, nil
		}
	}
	// A pre-release has lower precedence than the release (semver 11.3).
	switch {
	case pa[4] == "" && pb[4] == "":
		return 0, nil
	case pa[4] == "":
		return 1, nil
	case pb[4] == "":
		return -1, nil
	}
	ia, ib := strings.Split(pa[4], "."), strings.Split(pb[4], ".")
	for i := 0; i < len(ia) && i < len(ib); i++ {
		_, errA := strconv.ParseUint(ia[i], 10, 64)
		_, errB := strconv.ParseUint(ib[i], 10, 64)
		var c int
		switch {
		case errA == nil && errB == nil:
			c = compareNumeric(ia[i], ib[i])
		case errA == nil:
			c = -1 // numeric identifiers have lower precedence (semver 11.4.3)
		case errB == nil:
			c = 1
		default:
			c = strings.Compare(ia[i], ib[i])
		}
		if c != 0 {
			return c, nil
		}
	}
	switch {
	case len(ia) < len(ib):
		return -1, nil
	case len(ia) > len(ib):
		return 1, nil
	}
	return 0, nil
}

// compareNumeric compares two decimal strings without leading zeros, of any length.
func compareNumeric(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// clip shortens untrusted text for an error message.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
