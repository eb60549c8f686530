package filter

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Format constants. Every integer is big-endian.
const (
	magic = "KWRF"
	// formatVersion is the format Build and BuildDelta write. Format 2 added the revoked-issuer section after
	// the header; the reader still accepts format 1 (minFormatVersion), whose files list no revoked issuer
	// (see the package documentation for why that reading is sound).
	formatVersion    = 2
	minFormatVersion = 1
	kindFull         = 0
	kindDelta        = 1
	// sigContext prefixes the signed bytes, so a filter signature can never be taken for a signature over
	// anything else the same key might sign. Its "v1" names the signature scheme, not the file format: the
	// format version is the fifth signed byte, so a file of one format cannot pass for another.
	sigContext = "keyward revocation filter v1\x00"

	maxNameLen   = 64
	maxChain     = 4
	maxDeltaSize = 1 << 24
	// maxRevokedIssuers bounds the revoked-issuer section (32 KiB at most), so a malformed file cannot make
	// a verifier allocate more. An environment has tens of CAs and revoking one is an incident, so 1024 is
	// decades of room; the builder refuses more.
	maxRevokedIssuers = 1024
	// clockSkew tolerates a verifier clock that runs behind the builder's.
	clockSkew = 5 * time.Minute
)

// OIDDocumentSigning is id-kp-documentSigning (RFC 9336 section 3): the extended key usage a filter signer
// certificate must carry. Keyward certificate profiles cannot grant it, so no device, gateway or station
// certificate chaining to the same root can pass for a filter signer.
var OIDDocumentSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 36}

type header struct {
	format      uint8 // file format version: 1 (read only) or 2
	kind        uint8
	env, scope  string
	version     uint64
	baseVersion uint64
	baseDigest  [32]byte
	issuedAt    time.Time
	nextUpdate  time.Time
	certs       uint64
	revoked     uint64
}

func (h *header) encode(b *bytes.Buffer) {
	b.WriteString(magic)
	b.WriteByte(h.format)
	b.WriteByte(h.kind)
	writeString(b, h.env)
	writeString(b, h.scope)
	writeU64(b, h.version)
	writeU64(b, h.baseVersion)
	b.Write(h.baseDigest[:])
	writeU64(b, uint64(h.issuedAt.Unix()))
	writeU64(b, uint64(h.nextUpdate.Unix()))
	writeU64(b, h.certs)
	writeU64(b, h.revoked)
}

func writeString(b *bytes.Buffer, s string) { b.WriteByte(byte(len(s))); b.WriteString(s) }
func writeU64(b *bytes.Buffer, v uint64)    { b.Write(binary.BigEndian.AppendUint64(nil, v)) }
func writeU32(b *bytes.Buffer, v uint32)    { b.Write(binary.BigEndian.AppendUint32(nil, v)) }
func writeU16(b *bytes.Buffer, v uint16)    { b.Write(binary.BigEndian.AppendUint16(nil, v)) }

func encodeFuse(b *bytes.Buffer, f *fuse) {
	b.Write(f.seed[:])
	b.WriteByte(f.width)
	writeU32(b, f.segLen)
	writeU32(b, f.segCount)
	writeU32(b, f.arrayLen)
	b.Write(f.data[:tableBytes(f.arrayLen, f.width)])
}

// reader is a bounds-checked cursor; the first failure sticks, so callers check err once.
type reader struct {
	data []byte
	off  int
	err  error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = wrapf(ErrMalformed, "at byte %d: "+format, append([]any{r.off}, args...)...)
	}
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.data)-r.off < n {
		r.fail("truncated: %s needs %d bytes, %d left", what, n, len(r.data)-r.off)
		return nil
	}
	b := r.data[r.off : r.off+n]
	r.off += n
	return b
}

func (r *reader) u8(what string) uint8 {
	b := r.take(1, what)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16(what string) uint16 {
	b := r.take(2, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func (r *reader) u32(what string) uint32 {
	b := r.take(4, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *reader) u64(what string) uint64 {
	b := r.take(8, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (r *reader) str(what string) string {
	n := int(r.u8(what + " length"))
	b := r.take(n, what)
	if r.err == nil && (n > maxNameLen || !utf8.Valid(b)) {
		r.fail("%s is not UTF-8 of at most %d bytes", what, maxNameLen)
	}
	return string(b)
}

func (r *reader) time(what string) time.Time {
	v := r.u64(what)
	if v > math.MaxInt64/2 {
		r.fail("%s out of range", what)
	}
	return time.Unix(int64(v), 0).UTC()
}

func (r *reader) header() header {
	var h header
	if string(r.take(4, "magic")) != magic && r.err == nil {
		r.fail("not a Keyward revocation filter (magic is not %q)", magic)
		return h
	}
	h.format = r.u8("format version")
	if r.err == nil && (h.format < minFormatVersion || h.format > formatVersion) {
		r.fail("format version %d; this reader understands %d to %d (upgrade the reader)", h.format, minFormatVersion, formatVersion)
	}
	h.kind = r.u8("kind")
	if r.err == nil && h.kind != kindFull && h.kind != kindDelta {
		r.fail("unknown kind %d", h.kind)
	}
	h.env = r.str("environment")
	h.scope = r.str("scope")
	h.version = r.u64("version")
	h.baseVersion = r.u64("base version")
	copy(h.baseDigest[:], r.take(32, "base digest"))
	h.issuedAt = r.time("issued-at")
	h.nextUpdate = r.time("next-update")
	h.certs = r.u64("certificate count")
	h.revoked = r.u64("revoked count")
	if r.err == nil {
		switch {
		case h.env == "":
			r.fail("empty environment")
		case h.revoked > h.certs:
			r.fail("revoked count %d exceeds certificate count %d", h.revoked, h.certs)
		case !h.nextUpdate.After(h.issuedAt):
			r.fail("next-update %s is not after issued-at %s", h.nextUpdate, h.issuedAt)
		case (h.kind == kindFull) != (h.baseVersion == 0):
			r.fail("a full filter has base version 0 and a delta a non-zero one")
		}
	}
	return h
}

// fuse reads one table. maxWidth bounds the entry width (16 for level 1, 1 for level 2).
func (r *reader) fuse(what string, maxWidth uint8) *fuse {
	f := &fuse{}
	copy(f.seed[:], r.take(32, what+" seed"))
	f.width = r.u8(what + " width")
	f.segLen = r.u32(what + " segment length")
	f.segCount = r.u32(what + " segment count")
	f.arrayLen = r.u32(what + " length")
	if r.err != nil {
		return nil
	}
	if f.width < 1 || f.width > maxWidth {
		r.fail("%s entry width %d outside 1..%d", what, f.width, maxWidth)
		return nil
	}
	if f.arrayLen != 0 || f.segLen != 0 || f.segCount != 0 {
		if f.segLen == 0 || f.segLen&(f.segLen-1) != 0 || f.segLen > maxSegLen || f.segCount == 0 ||
			(uint64(f.segCount)+arity-1)*uint64(f.segLen) != uint64(f.arrayLen) {
			r.fail("%s has an inconsistent layout (segment length %d, count %d, length %d)", what, f.segLen, f.segCount, f.arrayLen)
			return nil
		}
	}
	n := tableBytes(f.arrayLen, f.width)
	tbl := r.take(n, what+" table")
	if r.err != nil {
		return nil
	}
	f.segLenMask = f.segLen - 1
	f.data = make([]byte, n+8)
	copy(f.data, tbl)
	return f
}

// encodeIssuers writes the revoked-issuer section of a format-2 file: a 16-bit count, then that many
// SHA-256 digests of SubjectPublicKeyInfo in strictly increasing byte order (ks is sorted and unique).
func encodeIssuers(b *bytes.Buffer, ks [][32]byte) {
	writeU16(b, uint16(len(ks)))
	for i := range ks {
		b.Write(ks[i][:])
	}
}

// issuers reads the revoked-issuer section. The count is checked against the bound and the bytes left before
// anything is allocated.
func (r *reader) issuers() [][32]byte {
	n := int(r.u16("revoked issuer count"))
	if r.err != nil {
		return nil
	}
	if n > maxRevokedIssuers || n*32 > len(r.data)-r.off {
		r.fail("revoked issuer count %d exceeds %d or the data", n, maxRevokedIssuers)
		return nil
	}
	ks := make([][32]byte, n)
	for i := range ks {
		copy(ks[i][:], r.take(32, "revoked issuer"))
		if i > 0 && bytes.Compare(ks[i-1][:], ks[i][:]) >= 0 {
			r.fail("revoked issuers are not in strictly increasing order at entry %d", i)
			return nil
		}
	}
	return ks
}

// parsed is a file split into its parts, before any check of trust.
type parsed struct {
	h       header
	issuers [][32]byte // revoked issuers (SHA-256 of SPKI), sorted; nil in a format-1 file
	l1, l2  *fuse
	delta   map[string]bool
	chain   []*x509.Certificate
	signed  []byte // the bytes the signature covers (without sigContext)
	sig     []byte
}

func parse(data []byte) (*parsed, error) {
	r := &reader{data: data}
	p := &parsed{h: r.header()}
	if r.err == nil && p.h.format >= 2 {
		p.issuers = r.issuers()
	}
	if p.h.kind == kindFull {
		if k := r.u8("level-1 present"); r.err == nil && k > 1 {
			r.fail("level-1 flag %d", k)
		} else if k == 1 {
			p.l1 = r.fuse("level 1", 16)
		}
		p.l2 = r.fuse("level 2", 1)
	} else if r.err == nil {
		p.delta = r.deltaEntries()
	}
	n := int(r.u8("chain length"))
	if r.err == nil && (n < 1 || n > maxChain) {
		r.fail("signer chain has %d certificates; want 1 to %d", n, maxChain)
	}
	for i := 0; i < n && r.err == nil; i++ {
		der := r.take(int(r.u16("certificate length")), "certificate")
		if r.err != nil {
			break
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			r.fail("signer chain certificate %d: %v", i, err)
			break
		}
		p.chain = append(p.chain, c)
	}
	end := r.off
	p.sig = r.take(int(r.u16("signature length")), "signature")
	if r.err == nil && r.off != len(data) {
		r.fail("%d bytes of trailing data", len(data)-r.off)
	}
	if r.err != nil {
		return nil, r.err
	}
	p.signed = data[:end]
	return p, nil
}

func (r *reader) deltaEntries() map[string]bool {
	n := r.u32("delta entry count")
	if r.err != nil {
		return nil
	}
	if n > maxDeltaSize || int(n)*3 > len(r.data)-r.off {
		r.fail("delta entry count %d exceeds the data", n)
		return nil
	}
	m := make(map[string]bool, n)
	var prev []byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		l := int(r.u8("serial length"))
		s := r.take(l, "serial")
		st := r.u8("state")
		if r.err != nil {
			break
		}
		if l < 1 || l > maxSerialLen || s[0] == 0 || st > 1 {
			r.fail("delta entry %d is not a canonical serial and state", i)
			break
		}
		if prev != nil && compareSerial(prev, s) >= 0 {
			r.fail("delta entries are not in strictly increasing serial order at entry %d", i)
			break
		}
		prev = s
		m[string(s)] = st == 1
	}
	return m
}

// compareSerial orders canonical serials numerically: shorter is smaller, then byte order.
func compareSerial(a, b []byte) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return bytes.Compare(a, b)
}

// VerifyOptions say what a verifier trusts and expects.
type VerifyOptions struct {
	// Roots holds the trust anchors: the root certificate of the environment whose filter this is.
	Roots *x509.CertPool
	// Environment is the environment the caller expects ("production"); required.
	Environment string
	// Scope, if not empty, is the product line the filter must cover.
	Scope string
	// Now is the time to check freshness and the signer certificate at; zero means time.Now.
	Now time.Time
	// RevokedIssuers, if given, are keys (SHA-256 of SubjectPublicKeyInfo) the caller already knows to be
	// revoked, typically the RevokedIssuers of the filter it held before: a file whose signer chain carries
	// one of them is refused, so a revoked CA's key can never vouch for a newer filter. A file is refused
	// likewise if its signer chain carries a key the file itself lists.
	RevokedIssuers [][32]byte
}

// Verify parses a full filter file and checks its signer chain against opts.Roots, the signer's authority
// (id-kp-documentSigning, digitalSignature), the signature, the environment and scope, and freshness.
// A file whose signer chain carries a key listed as revoked, by the file itself or in opts.RevokedIssuers, is
// refused with an error matching both ErrSignature and ErrIssuerRevoked.
func Verify(data []byte, opts VerifyOptions) (*Filter, error) {
	p, err := verify(data, opts, kindFull, nil)
	if err != nil {
		return nil, err
	}
	if p.l2 == nil {
		return nil, wrapf(ErrMalformed, "full filter without level 2")
	}
	return &Filter{h: p.h, issuers: p.issuers, l1: p.l1, l2: p.l2, digest: fileDigest(data)}, nil
}

// ApplyDelta verifies a delta file as Verify does, checks that it was built against f (same environment,
// scope, version and digest), and returns a new Filter answering with the delta's corrections over f. f is
// not modified; applying a delta to a filter that already has one replaces it (deltas are cumulative from
// their base). The delta's revoked-issuer list, complete as of the delta, replaces f's. A delta whose signer
// chain carries a key f lists as revoked is refused.
func (f *Filter) ApplyDelta(data []byte, opts VerifyOptions) (*Filter, error) {
	p, err := verify(data, opts, kindDelta, f.issuers)
	if err != nil {
		return nil, err
	}
	switch {
	case p.h.env != f.h.env || p.h.scope != f.h.scope:
		return nil, wrapf(ErrBase, "delta is for %s/%s, base for %s/%s", p.h.env, p.h.scope, f.h.env, f.h.scope)
	case p.h.baseVersion != f.h.version || p.h.baseDigest != f.digest:
		return nil, wrapf(ErrBase, "delta applies to base version %d (digest %x...), this base is version %d (digest %x...): fetch the matching full filter",
			p.h.baseVersion, p.h.baseDigest[:4], f.h.version, f.digest[:4])
	}
	g := *f
	g.delta, g.dh = p.delta, &p.h
	// A format-1 delta lists no issuer and can only name a format-1 base (the digest covers the format
	// byte), which lists none either: keeping f's list is keeping the empty list.
	if p.h.format >= 2 {
		g.issuers = p.issuers
	}
	return &g, nil
}

// verify checks a file of the given kind. known are revoked issuers the caller already trusts (a delta's
// base's), checked against the signer chain with the file's own and opts.RevokedIssuers.
func verify(data []byte, opts VerifyOptions, kind uint8, known [][32]byte) (*parsed, error) {
	if opts.Roots == nil {
		return nil, wrapf(ErrSignature, "no trust anchors given: pass the environment's root certificate")
	}
	if opts.Environment == "" {
		return nil, wrapf(ErrEnvironment, "no expected environment given")
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	p, err := parse(data)
	if err != nil {
		return nil, err
	}
	if p.h.kind != kind {
		want := map[uint8]string{kindFull: "full filter", kindDelta: "delta"}
		return nil, wrapf(ErrMalformed, "file is a %s, expected a %s", want[p.h.kind], want[kind])
	}
	signer := p.chain[0]
	inter := x509.NewCertPool()
	for _, c := range p.chain[1:] {
		inter.AddCert(c)
	}
	chains, err := signer.Verify(x509.VerifyOptions{Roots: opts.Roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, wrapf(ErrSignature, "signer %q does not chain to the given root: %v", signer.Subject.CommonName, err)
	}
	authorised := false
	for _, o := range signer.UnknownExtKeyUsage {
		authorised = authorised || o.Equal(OIDDocumentSigning)
	}
	if !authorised || signer.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, wrapf(ErrSignature, "signer %q is not a filter signer (needs id-kp-documentSigning, RFC 9336, and digitalSignature)", signer.Subject.CommonName)
	}
	alg, err := sigAlgorithm(signer)
	if err != nil {
		return nil, err
	}
	msg := append([]byte(sigContext), p.signed...)
	if err := signer.CheckSignature(alg, msg, p.sig); err != nil {
		return nil, wrapf(ErrSignature, "signature by %q does not verify: the file was altered or corrupted", signer.Subject.CommonName)
	}
	// A revoked CA's key may be in an attacker's hands: nothing it certified may vouch for revocation data,
	// including a filter that announces its own revocation (the builder signs those outside its subtree).
	if len(p.issuers)+len(opts.RevokedIssuers)+len(known) > 0 {
		for _, chain := range chains {
			for _, c := range chain {
				if h := sha256.Sum256(c.RawSubjectPublicKeyInfo); listed(p.issuers, h) || listed(opts.RevokedIssuers, h) || listed(known, h) {
					return nil, fmt.Errorf("%w: %w: signer chain passes through %s (key SHA-256 %x...), which is revoked",
						ErrSignature, ErrIssuerRevoked, certName(c), h[:4])
				}
			}
		}
	}
	if p.h.env != opts.Environment {
		return nil, wrapf(ErrEnvironment, "filter is for environment %q, expected %q", p.h.env, opts.Environment)
	}
	if opts.Scope != "" && p.h.scope != opts.Scope {
		return nil, wrapf(ErrEnvironment, "filter covers %q, expected %q", scopeName(p.h.scope), opts.Scope)
	}
	if now.Add(clockSkew).Before(p.h.issuedAt) {
		return nil, wrapf(ErrExpired, "filter was issued at %s, after the current time %s (check the clock)", p.h.issuedAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Before(p.h.nextUpdate) {
		return nil, wrapf(ErrExpired, "filter version %d expired at %s (now %s): fetch a newer filter", p.h.version, p.h.nextUpdate.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return p, nil
}

func scopeName(s string) string {
	if s == "" {
		return "the whole environment"
	}
	return s
}

// sigAlgorithm is the signature algorithm for the signer's key: ECDSA with the hash matching the curve
// (RFC 5480 section 4), or Ed25519 (RFC 8410).
func sigAlgorithm(c *x509.Certificate) (x509.SignatureAlgorithm, error) {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		}
	case ed25519.PublicKey:
		return x509.PureEd25519, nil
	}
	return 0, wrapf(ErrSignature, "signer %q has a %T key; filters are signed with ECDSA P-256, P-384 or Ed25519", c.Subject.CommonName, c.PublicKey)
}
