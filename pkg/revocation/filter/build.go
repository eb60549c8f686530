package filter

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Source is the registry snapshot a filter is built from.
type Source struct {
	// Revoked holds the serials (canonical big-endian, see RevokedBytes) of every revoked certificate.
	Revoked [][]byte
	// ValidCount is the number of serials Valid yields; it only steers the choice of table sizes.
	ValidCount uint64
	// Valid calls yield for the serial of every issued certificate that is not revoked, once each, stopping
	// at yield's first error. Serials in Revoked are ignored if yielded.
	Valid func(yield func(serial []byte) error) error
}

// BuildOptions describe the filter to build and who signs it.
type BuildOptions struct {
	Environment string
	Scope       string // product line, or "" for the whole environment
	Version     uint64 // > 0
	IssuedAt    time.Time
	NextUpdate  time.Time
	// Signer signs the file; its certificate, first in Chain, must carry id-kp-documentSigning.
	Signer crypto.Signer
	// Chain is the signer certificate followed by its issuers up to, not including, the root (DER).
	Chain [][]byte
	// RevokedIssuers are the CAs whose whole subtree verifiers must refuse, each named by the SHA-256 of its
	// certificate's SubjectPublicKeyInfo (x509.Certificate.RawSubjectPublicKeyInfo); order and repetition do
	// not matter, at most 1024. It is the complete list as of IssuedAt, for a delta as for a full filter: a
	// delta's list replaces its base's. List no root. The signer's chain must carry none of these keys.
	RevokedIssuers [][32]byte
}

// Stats describe a built filter.
type Stats struct {
	Certificates uint64  `json:"certificates"`
	Revoked      uint64  `json:"revoked"`
	K            int     `json:"level1_fingerprint_bits"`
	Level1Bits   int     `json:"level1_bits"`
	Level2Keys   int     `json:"level2_keys"`
	Level2Bits   int     `json:"level2_bits"`
	SizeBits     int     `json:"size_bits"`
	BoundBits    float64 `json:"bound_bits"`
	Ratio        float64 `json:"ratio_to_bound"`
	FileBytes    int     `json:"file_bytes"`
	Attempts     int     `json:"construction_attempts"`
	// RevokedIssuers is the number of revoked CAs listed; each costs 32 bytes of the file.
	RevokedIssuers int `json:"revoked_issuers"`
}

// Build builds, self-checks and signs a full filter. The result is exact for every serial in src: Build
// verifies every level-2 key before signing.
func Build(src Source, opts BuildOptions) ([]byte, *Stats, error) {
	if err := checkOptions(&opts); err != nil {
		return nil, nil, err
	}
	revoked, err := canonicalSet(src.Revoked)
	if err != nil {
		return nil, nil, err
	}
	r := len(revoked)
	isRevoked := make(map[string]struct{}, r)
	for _, s := range revoked {
		isRevoked[string(s)] = struct{}{}
	}
	st := &Stats{Revoked: uint64(r)}
	var l1 *fuse
	var l2keys [][]byte
	var l2vals []uint16
	if r > 0 {
		st.K = chooseK(r, src.ValidCount)
		if st.K > 0 {
			ds := make([][32]byte, r)
			vals := make([]uint16, r)
			var n int
			l1, n, err = buildLevel(ds, vals, uint8(st.K), func(seed *[32]byte) {
				for i, s := range revoked {
					ds[i] = keyHash(seed, s)
					vals[i] = fingerprint(&ds[i], uint8(st.K))
				}
			})
			st.Attempts += n
			if err != nil {
				return nil, nil, fmt.Errorf("build level 1 over %d revoked serials: %w", r, err)
			}
		}
		l2keys = append(l2keys, revoked...)
		for range revoked {
			l2vals = append(l2vals, 1)
		}
	}
	valid := uint64(0)
	if src.Valid != nil {
		err = src.Valid(func(s []byte) error {
			if len(s) == 0 || len(s) > maxSerialLen || s[0] == 0 {
				return fmt.Errorf("serial %x is not canonical (1 to %d bytes, no leading zero)", s, maxSerialLen)
			}
			if _, ok := isRevoked[string(s)]; ok {
				return nil
			}
			valid++
			if r == 0 {
				return nil
			}
			if l1 != nil {
				d := keyHash(&l1.seed, s)
				if l1.eval(&d) != fingerprint(&d, l1.width) {
					return nil // fails level 1: not revoked, nothing to record
				}
			}
			l2keys = append(l2keys, bytes.Clone(s))
			l2vals = append(l2vals, 0)
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("read valid serials: %w", err)
		}
	}
	st.Certificates = valid + uint64(r)
	if len(l2keys) > r {
		// A serial yielded twice would make two identical level-2 keys, which no table can hold.
		if dup := duplicate(l2keys[r:]); dup != nil {
			return nil, nil, fmt.Errorf("serial %x is listed twice among the valid certificates", dup)
		}
	}
	ds := make([][32]byte, len(l2keys))
	l2, n, err := buildLevel(ds, l2vals, 1, func(seed *[32]byte) {
		for i, s := range l2keys {
			ds[i] = keyHash(seed, s)
		}
	})
	st.Attempts += n
	if err != nil {
		return nil, nil, fmt.Errorf("build level 2 over %d serials: %w", len(l2keys), err)
	}
	f := &Filter{h: header{format: formatVersion, kind: kindFull, env: opts.Environment, scope: opts.Scope, version: opts.Version,
		issuedAt: opts.IssuedAt.UTC().Truncate(time.Second), nextUpdate: opts.NextUpdate.UTC().Truncate(time.Second),
		certs: st.Certificates, revoked: uint64(r)}, issuers: opts.RevokedIssuers, l1: l1, l2: l2}
	// Self-check: every revoked serial answers true and every valid serial that passed level 1 answers false.
	for i, s := range l2keys {
		if f.baseRevoked(s) != (l2vals[i] == 1) {
			return nil, nil, fmt.Errorf("self-check failed for serial %x: the construction is faulty", s)
		}
	}
	var b bytes.Buffer
	f.h.encode(&b)
	encodeIssuers(&b, f.issuers)
	if l1 != nil {
		b.WriteByte(1)
		encodeFuse(&b, l1)
	} else {
		b.WriteByte(0)
	}
	encodeFuse(&b, l2)
	data, err := sign(&b, opts)
	if err != nil {
		return nil, nil, err
	}
	if l1 != nil {
		st.Level1Bits = int(l1.arrayLen) * int(l1.width)
	}
	st.Level2Keys, st.Level2Bits = len(l2keys), int(l2.arrayLen)
	st.SizeBits = st.Level1Bits + st.Level2Bits
	st.BoundBits = BoundBits(st.Certificates, st.Revoked)
	if st.BoundBits > 0 {
		st.Ratio = float64(st.SizeBits) / st.BoundBits
	}
	st.FileBytes, st.RevokedIssuers = len(data), len(f.issuers)
	return data, st, nil
}

// Correction is one entry of a delta: a serial whose state differs from what the base filter answers.
type Correction struct {
	Serial  []byte
	Revoked bool
}

// BuildDelta signs a delta from base: the corrections are the serials whose current state differs from
// base's answer (new revocations, releases from hold, and certificates issued after the base for which the
// base happens to answer "revoked"). opts.Version must be greater than base's version.
func BuildDelta(base *Filter, corrections []Correction, opts BuildOptions) ([]byte, error) {
	if err := checkOptions(&opts); err != nil {
		return nil, err
	}
	if opts.Version <= base.h.version {
		return nil, fmt.Errorf("delta version %d must be greater than base version %d", opts.Version, base.h.version)
	}
	if len(corrections) > maxDeltaSize {
		return nil, fmt.Errorf("delta of %d corrections exceeds %d: build a new full filter instead", len(corrections), maxDeltaSize)
	}
	cs := slices.Clone(corrections)
	slices.SortFunc(cs, func(a, b Correction) int { return compareSerial(a.Serial, b.Serial) })
	h := header{format: formatVersion, kind: kindDelta, env: opts.Environment, scope: opts.Scope, version: opts.Version, baseVersion: base.h.version,
		baseDigest: base.digest, issuedAt: opts.IssuedAt.UTC().Truncate(time.Second), nextUpdate: opts.NextUpdate.UTC().Truncate(time.Second),
		certs: base.h.certs, revoked: base.h.revoked}
	if h.env != base.h.env || h.scope != base.h.scope {
		return nil, fmt.Errorf("delta for %s/%s cannot apply to a base for %s/%s", h.env, h.scope, base.h.env, base.h.scope)
	}
	var b bytes.Buffer
	h.encode(&b)
	encodeIssuers(&b, opts.RevokedIssuers)
	writeU32(&b, uint32(len(cs)))
	for i, c := range cs {
		if len(c.Serial) == 0 || len(c.Serial) > maxSerialLen || c.Serial[0] == 0 {
			return nil, fmt.Errorf("correction serial %x is not canonical", c.Serial)
		}
		if i > 0 && compareSerial(cs[i-1].Serial, c.Serial) == 0 {
			return nil, fmt.Errorf("serial %x is corrected twice", c.Serial)
		}
		b.WriteByte(byte(len(c.Serial)))
		b.Write(c.Serial)
		if c.Revoked {
			b.WriteByte(1)
		} else {
			b.WriteByte(0)
		}
	}
	return sign(&b, opts)
}

func checkOptions(o *BuildOptions) error {
	switch {
	case o.Environment == "" || len(o.Environment) > maxNameLen || len(o.Scope) > maxNameLen:
		return fmt.Errorf("environment (1 to %d bytes) and scope (at most %d) are required", maxNameLen, maxNameLen)
	case o.Version == 0:
		return errors.New("filter version must be at least 1")
	case !o.NextUpdate.Truncate(time.Second).After(o.IssuedAt.Truncate(time.Second)):
		return fmt.Errorf("next update %s must be after issued-at %s", o.NextUpdate, o.IssuedAt)
	case o.Signer == nil || len(o.Chain) == 0 || len(o.Chain) > maxChain:
		return fmt.Errorf("a signer and its certificate chain (1 to %d certificates) are required", maxChain)
	case len(o.RevokedIssuers) > maxRevokedIssuers:
		return fmt.Errorf("%d revoked issuers exceed the format's %d", len(o.RevokedIssuers), maxRevokedIssuers)
	}
	ks := slices.Clone(o.RevokedIssuers)
	slices.SortFunc(ks, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	o.RevokedIssuers = slices.Compact(ks)
	// Verify refuses a file whose signer chain carries a key it lists; say so here, where it can be fixed.
	for i, der := range o.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("signer chain certificate %d: %w", i, err)
		}
		if listed(o.RevokedIssuers, sha256.Sum256(c.RawSubjectPublicKeyInfo)) {
			return fmt.Errorf("signer chain certificate %d (%s) carries the key of a revoked issuer this filter lists: sign with a signer certified outside the revoked CA's subtree", i, certName(c))
		}
	}
	return nil
}

func sign(b *bytes.Buffer, o BuildOptions) ([]byte, error) {
	b.WriteByte(byte(len(o.Chain)))
	for _, der := range o.Chain {
		if len(der) > math.MaxUint16 {
			return nil, fmt.Errorf("chain certificate of %d bytes is too large", len(der))
		}
		writeU16(b, uint16(len(der)))
		b.Write(der)
	}
	msg := append([]byte(sigContext), b.Bytes()...)
	var opts crypto.SignerOpts = crypto.Hash(0)
	digest := msg
	switch k := o.Signer.Public().(type) {
	case *ecdsa.PublicKey:
		h := crypto.SHA256
		if k.Curve == elliptic.P384() {
			h = crypto.SHA384
		}
		hh := h.New()
		hh.Write(msg)
		digest, opts = hh.Sum(nil), h
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("filter signer key %T: use ECDSA P-256, P-384 or Ed25519", k)
	}
	sig, err := o.Signer.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("sign filter: %w", err)
	}
	writeU16(b, uint16(len(sig)))
	b.Write(sig)
	return b.Bytes(), nil
}

// chooseK picks the level-1 fingerprint width that minimises the estimated total size for r revoked and
// valid other serials (0 means no level 1: level 2 then holds every serial).
func chooseK(r int, valid uint64) int {
	best, bestBits := 0, math.Inf(1)
	for k := 0; k <= 16; k++ {
		n2 := float64(r) + float64(valid)
		l1 := 0.0
		if k > 0 {
			n2 = float64(r) + float64(valid)/float64(uint64(1)<<k)
			l1 = float64(r) * (sizeFactor(r) - 0.02) * float64(k)
		}
		total := l1 + n2*(sizeFactor(int(n2))-0.02)
		if total < bestBits {
			best, bestBits = k, total
		}
	}
	return best
}

// buildLevel builds a table, retrying with fresh random seeds at growing size factors: from 4% below the
// reference implementation's factor (which is conservative; tighter tables often peel) in steps of 1%, three
// seeds each. hash fills the digests (and values) for a seed. It returns the number of attempts made.
func buildLevel(ds [][32]byte, vals []uint16, w uint8, hash func(seed *[32]byte)) (*fuse, int, error) {
	ref := sizeFactor(len(ds))
	attempts := 0
	for factor := ref - 0.04; factor < ref+0.5; factor += 0.01 {
		for try := 0; try < 3; try++ {
			var seed [32]byte
			if _, err := rand.Read(seed[:]); err != nil {
				return nil, attempts, err
			}
			hash(&seed)
			attempts++
			f, err := buildFuse(seed, w, ds, vals, factor)
			if err == nil {
				return f, attempts, nil
			}
		}
	}
	return nil, attempts, errConstruction
}

// canonicalSet sorts and checks serials, refusing duplicates.
func canonicalSet(in [][]byte) ([][]byte, error) {
	out := make([][]byte, len(in))
	for i, s := range in {
		if len(s) == 0 || len(s) > maxSerialLen || s[0] == 0 {
			return nil, fmt.Errorf("revoked serial %x is not canonical (1 to %d bytes, no leading zero)", s, maxSerialLen)
		}
		out[i] = s
	}
	slices.SortFunc(out, compareSerial)
	for i := 1; i < len(out); i++ {
		if compareSerial(out[i-1], out[i]) == 0 {
			return nil, fmt.Errorf("revoked serial %x is listed twice", out[i])
		}
	}
	return out, nil
}

func duplicate(keys [][]byte) []byte {
	s := slices.Clone(keys)
	slices.SortFunc(s, compareSerial)
	for i := 1; i < len(s); i++ {
		if compareSerial(s[i-1], s[i]) == 0 {
			return s[i]
		}
	}
	return nil
}

func log2(x float64) float64 { return math.Log2(x) }
