package issuer

// Stamped issuance, for certificates that differ only in serial number, subject common name, subject key and,
// optionally, validity (a factory batch: one profile, one issuance time, device serials of one width; the
// registration authority's online path: one profile shape, a new issuance time every second).
//
// The full path lints every certificate: Prepare signs a throwaway-key certificate and runs zlint, then Issue
// signs the linted TBSCertificate. That costs more than the real signature. A Stamp is made from one
// certificate that went through the full path; its TBSCertificate is the template for the others. The
// variable fields are located by parsing the TBSCertificate (never by searching it for bytes), and a stamped
// certificate is that TBSCertificate with those fields overwritten by values of exactly the same encoded
// length, encoded by the same standard-library functions x509.CreateCertificate uses. Nothing else moves, so
// a stamped TBSCertificate is byte for byte the one Prepare would have built and linted for the same inputs.
//
// NewStamp checks that claim before it returns a Stamp, twice: every per-certificate value must occur exactly
// once in the certificate stamped from (a common name repeated in a subject alternative name would stay
// stale), and a probe (fresh serial, another common name, fresh key and, for a stamp whose validity varies,
// another issuance time) is stamped and compared with what the full Prepare path, lint included, builds for
// the same inputs. Any doubt refuses the Stamp with ErrNotStampable, and the caller issues through Prepare and
// Issue instead.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrNotStampable is matched by errors of NewStamp and Stamp.Issue that mean "issue this through Prepare and
// Issue instead": the profile's certificates cannot be stamped (a per-certificate value occurs elsewhere in
// the certificate, the probe differed from the full path), or an input does not fit the stamp (a common name
// or key of another encoded length). Nothing was signed.
var ErrNotStampable = errors.New("certificate cannot be stamped")

// TemplateFunc builds the certificate template for one subject, exactly as the full path does for the
// certificates a Stamp will issue: the same profile, the same issuance time (another one for a stamp whose
// validity varies: StampConfig.VaryValidity), the serial number serial, the subject common name commonName and
// the subject key pub. It refuses what the profile refuses.
type TemplateFunc func(serial *big.Int, commonName string, pub crypto.PublicKey) (*x509.Certificate, error)

// SubjectCheck refuses a common name or key that the policy behind a TemplateFunc would refuse (for a
// profile: profile.CheckRequest). Stamp.Issue calls it before every signature, as Template does on the full
// path.
type SubjectCheck func(commonName string, pub crypto.PublicKey) error

// StampConfig is what NewStamp needs besides the certificate it stamps from.
type StampConfig struct {
	// Template builds the templates of the stamped certificates (same profile, same issuance time, unless
	// VaryValidity). NewStamp uses it for the probe it compares with the full path.
	Template TemplateFunc
	// VaryValidity makes the validity (RFC 5280 4.1.2.5) a per-certificate field (StampInput.NotBefore and
	// NotAfter). Template must then build the probe at another issuance time than the stamped certificate's,
	// so that the probe proves that the issuance time changes nothing but the validity: NewStamp stamps the
	// probe with the validity of Template's result and refuses a probe whose notBefore or notAfter encodes as
	// the stamped certificate's. Without it, a stamp keeps the validity of the certificate stamped from.
	VaryValidity bool
	// Check is applied to every stamped common name and key.
	Check SubjectCheck
	// ProbeCN is a common name, other than the stamped certificate's and of the same encoded length, that
	// Template accepts; NewStamp builds the probe with it. A batch takes the device serial of another index.
	ProbeCN string
	// MaxDERSize, if positive, is the largest certificate allowed, as MaxDERSize for Prepare. A stamped
	// certificate has the size of the one it is stamped from, with a signature of its own length.
	MaxDERSize int
}

// Stamp issues certificates that differ from one fully linted certificate only in serial number, subject
// common name and subject key (and the subject key identifier derived from that key), and, for a stamp made
// with VaryValidity, validity. Obtain one from NewStamp. It is immutable and safe for concurrent use.
type Stamp struct {
	issuer   *Issuer
	tbs      []byte // the TBSCertificate stamped from; never modified
	algID    []byte
	check    SubjectCheck
	maxDER   int
	maxSize  int
	warnings []Finding
	l        stampLayout
	// vary: the probe proved that the validity varies alone (StampConfig.VaryValidity).
	vary bool
}

// stampLayout says where the per-certificate fields are in the TBSCertificate.
type stampLayout struct {
	serial    span // serialNumber INTEGER content (RFC 5280 4.1.2.2)
	notBefore span // validity's notBefore Time, tag and length included (RFC 5280 4.1.2.5)
	notAfter  span // validity's notAfter Time, tag and length included
	cn        span // the commonName attribute's value, tag and length included (RFC 5280 4.1.2.6)
	spki      span // subjectPublicKeyInfo, tag and length included (RFC 5280 4.1.2.7)
	key       int  // offset of the subjectPublicKey bits (after the unused-bits octet) within spki
	ski       span // subjectKeyIdentifier's keyIdentifier content (RFC 5280 4.2.1.2); n == 0 when absent
}

// span is a byte range [off, off+n) of the TBSCertificate.
type span struct{ off, n int }

func (s span) of(b []byte) []byte { return b[s.off : s.off+s.n] }

var (
	oidAttrCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidExtSKI         = asn1.ObjectIdentifier{2, 5, 29, 14}
)

func notStampable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotStampable, fmt.Sprintf(format, args...))
}

// NewStamp returns a Stamp for the certificates that differ from issued only in serial number, common name
// and subject key, and with cfg.VaryValidity in validity. p is the *Prepared that this Issuer's Prepare
// linted and its Issue signed into issued: a stamp is only ever made from a certificate that went through the
// full path. NewStamp locates the per-certificate fields, refuses a certificate in which any of them occurs a
// second time, and builds a probe (fresh serial, cfg.ProbeCN, fresh key of the same type, with VaryValidity
// the validity cfg.Template gives it) both ways, stamped and through Prepare (lint included), refusing the
// stamp unless the two TBSCertificates are identical and lint the same. Refusals wrap ErrNotStampable. The
// probe key is generated like a throwaway key: for an RSA subject key, that takes as long as any RSA key
// generation.
func (i *Issuer) NewStamp(p *Prepared, issued []byte, cfg StampConfig) (*Stamp, error) {
	name := i.cert.Subject.String()
	if p == nil || p.issuer != i {
		return nil, fmt.Errorf("stamp under %q: the certificate was not prepared by this issuer", name)
	}
	if cfg.Template == nil || cfg.Check == nil {
		return nil, fmt.Errorf("stamp under %q: a template function and a subject check are required", name)
	}
	cert, err := x509.ParseCertificate(issued)
	if err != nil {
		return nil, fmt.Errorf("stamp under %q: issued certificate: %w", name, err)
	}
	// The stamp must come from the certificate this Issuer signed from p, not merely from p.
	if !bytes.Equal(cert.RawTBSCertificate, p.tbs) {
		return nil, fmt.Errorf("stamp under %q: the issued certificate is not the one prepared", name)
	}
	if err := cert.CheckSignatureFrom(i.cert); err != nil {
		return nil, fmt.Errorf("stamp under %q: the issued certificate's signature: %w", name, err)
	}
	l, err := locate(p.tbs)
	if err != nil {
		return nil, fmt.Errorf("stamp under %q: %w", name, err)
	}
	s := &Stamp{issuer: i, tbs: p.tbs, algID: p.algID, check: cfg.Check, maxDER: cfg.MaxDERSize, maxSize: p.maxSize,
		warnings: p.Warnings(), l: l}
	if err := s.selfCheck(cfg); err != nil {
		return nil, fmt.Errorf("stamp under %q from %q: %w", name, cert.Subject.CommonName, err)
	}
	return s, nil
}

// Warnings returns the lint warnings of the certificate the stamp was made from, which every stamped
// certificate shares (NewStamp checked that the probe lints the same).
func (s *Stamp) Warnings() []Finding { return append([]Finding(nil), s.warnings...) }

// MaxSize returns the largest DER size a stamped certificate can have (see Prepared.MaxSize).
func (s *Stamp) MaxSize() int { return s.maxSize }

// VariesValidity reports whether the stamp was made with StampConfig.VaryValidity and accepts a validity of
// each certificate's own.
func (s *Stamp) VariesValidity() bool { return s.vary }

// SubjectKey is a subject public key with its DER SubjectPublicKeyInfo (RFC 5280 4.1.2.7), encoded once by
// x509.MarshalPKIXPublicKey, the encoder x509.CreateCertificate uses, for a caller that needs the encoding
// itself (the SHA-256 of the SubjectPublicKeyInfo a store keeps) as well as a stamped certificate.
type SubjectKey struct {
	pub  crypto.PublicKey
	spki []byte
}

// NewSubjectKey encodes pub's SubjectPublicKeyInfo.
func NewSubjectKey(pub crypto.PublicKey) (*SubjectKey, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &SubjectKey{pub: pub, spki: spki}, nil
}

// Public returns the public key.
func (k *SubjectKey) Public() crypto.PublicKey { return k.pub }

// SPKI returns the DER SubjectPublicKeyInfo. The caller must not modify it.
func (k *SubjectKey) SPKI() []byte { return k.spki }

// StampInput is what a stamped certificate has of its own.
type StampInput struct {
	// Serial is the serial number: positive, and as long in DER as the stamp's (NewSerial gives 16 octets).
	Serial *big.Int
	// CommonName is the subject's common name, of the stamp's string type and encoded length.
	CommonName string
	// Key is the subject key, of the stamp's type and size.
	Key *SubjectKey
	// NotBefore and NotAfter are the validity the full path's template would carry (RFC 5280 4.1.2.5); both
	// zero keep the stamp's own. Another validity than the stamp's needs a stamp made with VaryValidity and
	// times of the stamp's encoding (UTCTime through 2049, GeneralizedTime from 2050); anything else is
	// refused with ErrNotStampable.
	NotBefore, NotAfter time.Time
}

// Stamped is a stamped TBSCertificate awaiting its signature, the stamp's counterpart of a Prepared: Sign
// redeems it once.
type Stamped struct {
	stamp    *Stamp
	cn       string
	tbs      []byte
	redeemed atomic.Bool
}

// TBS returns a copy of the TBSCertificate bytes that Sign will sign.
func (t *Stamped) TBS() []byte { return bytes.Clone(t.tbs) }

// Issue returns the certificate the full path would issue for serial, commonName and pub, signed by the CA
// key: Prepare and Sign for a StampInput without a validity of its own. It applies the subject check first; a
// serial number, common name or key whose encoding is not exactly as long as the stamp's is refused with
// ErrNotStampable (nothing is signed: issue it through Prepare and Issue). As x509.CreateCertificate does, the
// signature is verified with the CA's public key before the certificate is returned (ErrBadSignature
// otherwise), which catches a faulty signer or HSM.
func (s *Stamp) Issue(ctx context.Context, serial *big.Int, commonName string, pub crypto.PublicKey) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key, err := NewSubjectKey(pub)
	if err != nil {
		return nil, fmt.Errorf("stamp %q under %q: subject key: %w", commonName, s.issuer.cert.Subject.String(), err)
	}
	t, err := s.Prepare(StampInput{Serial: serial, CommonName: commonName, Key: key})
	if err != nil {
		return nil, err
	}
	return s.Sign(ctx, t)
}

// Prepare applies the subject check to in and stamps its TBSCertificate, ready for Sign. An input that does
// not fit the stamp (see StampInput) is refused with ErrNotStampable: nothing is signed, and the caller issues
// it through the Issuer's Prepare and Issue.
func (s *Stamp) Prepare(in StampInput) (*Stamped, error) {
	if in.Key == nil {
		return nil, fmt.Errorf("stamp %q under %q: no subject key", in.CommonName, s.issuer.cert.Subject.String())
	}
	if err := s.check(in.CommonName, in.Key.pub); err != nil {
		return nil, fmt.Errorf("stamp %q under %q: %w", in.CommonName, s.issuer.cert.Subject.String(), err)
	}
	tbs, err := s.tbsFor(in)
	if err != nil {
		return nil, fmt.Errorf("stamp %q under %q: %w", in.CommonName, s.issuer.cert.Subject.String(), err)
	}
	return &Stamped{stamp: s, cn: in.CommonName, tbs: tbs}, nil
}

// Sign signs t's TBSCertificate with the CA key, verifies the signature with the CA certificate's key and
// returns the DER certificate. t is redeemed even if signing fails; a second call returns ErrRedeemed.
func (s *Stamp) Sign(ctx context.Context, t *Stamped) ([]byte, error) {
	name := s.issuer.cert.Subject.String()
	if t == nil || t.stamp != s {
		return nil, fmt.Errorf("stamp under %q: the certificate was not stamped by this stamp", name)
	}
	if !t.redeemed.CompareAndSwap(false, true) {
		return nil, ErrRedeemed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	der, err := s.sign(t.tbs)
	if err != nil {
		return nil, fmt.Errorf("stamp %q under %q: %w", t.cn, name, err)
	}
	return der, nil
}

// tbsFor returns the stamped TBSCertificate for in. Each value is encoded by the function
// x509.CreateCertificate uses for it (a DER INTEGER, asn1.Marshal of the string and of the UTC time,
// x509.MarshalPKIXPublicKey), and must be exactly as long as the value it replaces, so that no length of an
// enclosing element changes.
func (s *Stamp) tbsFor(in StampInput) ([]byte, error) {
	serial, cn := in.Serial, in.CommonName
	// RFC 5280 4.1.2.2: a positive INTEGER; DER adds a zero octet when the top bit of the magnitude is set.
	if serial == nil || serial.Sign() <= 0 {
		return nil, errors.New("serial number must be positive (RFC 5280 4.1.2.2)")
	}
	mag := serial.Bytes()
	pad := int(mag[0] >> 7)
	if len(mag)+pad != s.l.serial.n {
		return nil, notStampable("serial number %x is %d octets in DER; the stamp's is %d (NewSerial gives 16)", mag, len(mag)+pad, s.l.serial.n)
	}
	notBefore, notAfter, err := s.validity(in.NotBefore, in.NotAfter)
	if err != nil {
		return nil, err
	}
	// pkix.Name writes a common name as asn1.Marshal does: PrintableString when every character allows it,
	// UTF8String otherwise. A different string type is refused even at the same length, so that a stamped
	// name is always of the type the linted one had.
	cnDER, err := asn1.Marshal(cn)
	if err != nil {
		return nil, fmt.Errorf("common name %q: %w", cn, err)
	}
	if old := s.l.cn.of(s.tbs); len(cnDER) != len(old) || cnDER[0] != old[0] {
		return nil, notStampable("common name %q encodes as a %d-byte %s; the stamp's is a %d-byte %s", cn, len(cnDER), stringType(cnDER[0]), len(old), stringType(old[0]))
	}
	spki := in.Key.spki
	// Everything up to the key bits (tags, lengths, algorithm and parameters) must be the stamp's: the same
	// key type and size.
	if old := s.l.spki.of(s.tbs); len(spki) != len(old) || !bytes.Equal(spki[:s.l.key], old[:s.l.key]) {
		return nil, notStampable("subject key %s has a %d-byte SubjectPublicKeyInfo; the stamp's is %d bytes of another key type (%s)", keyDesc(in.Key.pub), len(spki), len(old), s.keyType())
	}
	tbs := slices.Clone(s.tbs)
	if pad == 1 {
		tbs[s.l.serial.off] = 0
	}
	copy(tbs[s.l.serial.off+pad:], mag)
	copy(tbs[s.l.notBefore.off:], notBefore)
	copy(tbs[s.l.notAfter.off:], notAfter)
	copy(tbs[s.l.cn.off:], cnDER)
	copy(tbs[s.l.spki.off:], spki)
	if s.l.ski.n > 0 {
		// RFC 7093 section 2 method 1, as profile.SubjectKeyID computes it; locate checked that the stamped
		// certificate's identifier is exactly that.
		h := sha256.Sum256(spki[s.l.key:])
		copy(tbs[s.l.ski.off:], h[:s.l.ski.n])
	}
	return tbs, nil
}

// validity returns the encoded notBefore and notAfter Times for a stamped certificate: the stamp's own for
// zero times, else notBefore and notAfter encoded as x509.CreateCertificate encodes them (encoding/asn1 of
// the UTC time: UTCTime before 2050, GeneralizedTime from 2050 on, RFC 5280 4.1.2.5), each of which must be
// of the type and length it replaces.
func (s *Stamp) validity(notBefore, notAfter time.Time) (nb, na []byte, err error) {
	oldNB, oldNA := s.l.notBefore.of(s.tbs), s.l.notAfter.of(s.tbs)
	if notBefore.IsZero() && notAfter.IsZero() {
		return oldNB, oldNA, nil
	}
	if notBefore.IsZero() || notAfter.IsZero() {
		return nil, nil, errors.New("a validity needs both notBefore and notAfter")
	}
	if nb, err = timeDER("notBefore", notBefore, oldNB); err != nil {
		return nil, nil, err
	}
	if na, err = timeDER("notAfter", notAfter, oldNA); err != nil {
		return nil, nil, err
	}
	if !s.vary && (!bytes.Equal(nb, oldNB) || !bytes.Equal(na, oldNA)) {
		return nil, nil, notStampable("validity %s to %s is not the stamp's, and the stamp was made without VaryValidity",
			notBefore.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339))
	}
	return nb, na, nil
}

// timeDER encodes t as x509.CreateCertificate encodes a validity bound, and refuses an encoding of another
// type or length than old's.
func timeDER(field string, t time.Time, old []byte) ([]byte, error) {
	der, err := asn1.Marshal(t.UTC())
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", field, t.UTC().Format(time.RFC3339), err)
	}
	if len(der) != len(old) || der[0] != old[0] {
		return nil, notStampable("%s %s encodes as a %d-byte %s; the stamp's is a %d-byte %s (RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050)",
			field, t.UTC().Format(time.RFC3339), len(der), timeType(der[0]), len(old), timeType(old[0]))
	}
	return der, nil
}

func timeType(tag byte) string {
	switch cbasn1.Tag(tag) {
	case cbasn1.UTCTime:
		return "UTCTime"
	case cbasn1.GeneralizedTime:
		return "GeneralizedTime"
	}
	return fmt.Sprintf("time of tag 0x%02x", tag)
}

// sign signs tbs as Issue does and assembles the certificate.
func (s *Stamp) sign(tbs []byte) ([]byte, error) {
	i := s.issuer
	// crypto.SignMessage hashes for signers that expect a digest and passes the message to those that hash
	// themselves (Ed25519, crypto.MessageSigner HSM keys), as x509.CreateCertificate and Issue do.
	sig, err := crypto.SignMessage(i.signer, rand.Reader, tbs, i.alg.opts)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	// The check x509.CreateCertificate makes after signing, with the CA certificate's key: a CA must not emit
	// a certificate whose signature does not verify. The certificate is not parsed again: its structure is
	// the stamped-from certificate's, which parsed, and only same-length values produced by the standard
	// library's encoders changed.
	if err := i.cert.CheckSignature(i.alg.x509, tbs, sig); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	// RFC 5280 4.1: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }.
	// signatureAlgorithm is the stamped-from certificate's; the signature field inside the TBSCertificate is
	// never stamped, so the two stay identical as 4.1.1.2 requires.
	b := cryptobyte.NewBuilder(make([]byte, 0, s.maxSize))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(s.algID)
		b.AddASN1BitString(sig)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("assemble certificate: %w", err)
	}
	if s.maxDER > 0 && len(der) > s.maxDER {
		return nil, fmt.Errorf("%w: the stamped certificate is %d bytes DER; the limit is %d", ErrTooLarge, len(der), s.maxDER)
	}
	return der, nil
}

// selfCheck stamps a probe (fresh serial of the same length, cfg.ProbeCN, fresh key of the same type and,
// with VaryValidity, the validity cfg.Template gives it) and builds it through Prepare, lint included: the
// stamp is refused unless both TBSCertificates are identical and the lint findings the same.
func (s *Stamp) selfCheck(cfg StampConfig) error {
	if cfg.ProbeCN == string(cnValue(s.l.cn.of(s.tbs))) {
		return notStampable("the probe common name %q is the stamped certificate's; take another", cfg.ProbeCN)
	}
	pub, err := x509.ParsePKIXPublicKey(s.l.spki.of(s.tbs))
	if err != nil {
		return notStampable("subject key: %v", err)
	}
	probeKey, err := throwawayKey(pub)
	if err != nil {
		return notStampable("probe key: %v", err)
	}
	key, err := NewSubjectKey(probeKey.Public())
	if err != nil {
		return notStampable("probe key: %v", err)
	}
	serial, err := randomSerialOctets(s.l.serial.n)
	if err != nil {
		return err
	}
	tmpl, err := cfg.Template(serial, cfg.ProbeCN, probeKey.Public())
	if err != nil {
		return fmt.Errorf("%w: probe template for %q: %w", ErrNotStampable, cfg.ProbeCN, err)
	}
	in := StampInput{Serial: serial, CommonName: cfg.ProbeCN, Key: key}
	if cfg.VaryValidity {
		// The probe proves that the validity varies alone only if both of its bounds differ from the stamped
		// certificate's.
		for _, f := range []struct {
			name string
			t    time.Time
			old  span
		}{{"notBefore", tmpl.NotBefore, s.l.notBefore}, {"notAfter", tmpl.NotAfter, s.l.notAfter}} {
			der, err := asn1.Marshal(f.t.UTC())
			if err != nil {
				return notStampable("probe %s: %v", f.name, err)
			}
			if bytes.Equal(der, f.old.of(s.tbs)) {
				return notStampable("the probe's %s %s is the stamped certificate's: build the probe at another issuance time", f.name, f.t.UTC().Format(time.RFC3339))
			}
		}
		in.NotBefore, in.NotAfter = tmpl.NotBefore, tmpl.NotAfter
		s.vary = true
	}
	var opts []PrepareOption
	if cfg.MaxDERSize > 0 {
		opts = append(opts, MaxDERSize(cfg.MaxDERSize))
	}
	full, err := s.issuer.Prepare(tmpl, probeKey.Public(), opts...)
	if err != nil {
		return fmt.Errorf("%w: probe %q through the full path: %w", ErrNotStampable, cfg.ProbeCN, err)
	}
	if err := cfg.Check(cfg.ProbeCN, probeKey.Public()); err != nil {
		return fmt.Errorf("%w: the subject check refuses the probe %q, which the template accepts: %w", ErrNotStampable, cfg.ProbeCN, err)
	}
	stamped, err := s.tbsFor(in)
	if err != nil {
		return fmt.Errorf("probe %q: %w", cfg.ProbeCN, err)
	}
	if !bytes.Equal(stamped, full.tbs) {
		at := 0
		for at < min(len(stamped), len(full.tbs)) && stamped[at] == full.tbs[at] {
			at++
		}
		return notStampable("the stamped probe %q differs from the full path's TBSCertificate at byte %d (%d and %d bytes): the template depends on the serial, name, key or time somewhere else",
			cfg.ProbeCN, at, len(stamped), len(full.tbs))
	}
	if !slices.EqualFunc(full.warnings, s.warnings, func(a, b Finding) bool { return a.Lint == b.Lint }) {
		return notStampable("the probe %q lints with warnings %v, the stamped certificate with %v", cfg.ProbeCN, full.warnings, s.warnings)
	}
	return nil
}

// randomSerialOctets returns a positive serial number whose DER INTEGER content is exactly n octets, like
// NewSerial for n = 16.
func randomSerialOctets(n int) (*big.Int, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random serial: %w", err)
	}
	b[0] = b[0]&0x3f | 0x40
	return new(big.Int).SetBytes(b), nil
}

// locate parses a TBSCertificate (RFC 5280 4.1) and returns where its per-certificate fields are. A
// certificate whose subject has no single commonName, whose subject key identifier is not RFC 7093 method 1
// of its key, or in which a per-certificate value occurs more than once, cannot be stamped.
func locate(tbs []byte) (stampLayout, error) {
	var l stampLayout
	malformed := errors.New("malformed TBSCertificate")
	top := cursor{b: tbs, end: len(tbs)}
	var seq, serial, validity, subject, spki cursor
	if !top.read(cbasn1.SEQUENCE, nil, &seq) || !top.empty() {
		return l, malformed
	}
	// version [0] EXPLICIT, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo.
	if !seq.skipOptional(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!seq.read(cbasn1.INTEGER, nil, &serial) ||
		!seq.read(cbasn1.SEQUENCE, nil, nil) || // signature
		!seq.read(cbasn1.SEQUENCE, nil, nil) || // issuer
		!seq.read(cbasn1.SEQUENCE, nil, &validity) ||
		!seq.read(cbasn1.SEQUENCE, nil, &subject) ||
		!seq.read(cbasn1.SEQUENCE, &l.spki, &spki) {
		return l, malformed
	}
	l.serial = serial.rest()
	if l.serial.n == 0 || tbs[l.serial.off]&0x80 != 0 {
		return l, notStampable("the serial number is not a positive INTEGER (RFC 5280 4.1.2.2)")
	}
	// RFC 5280 4.1.2.5: Validity ::= SEQUENCE { notBefore Time, notAfter Time }, Time ::= CHOICE { utcTime
	// UTCTime, generalTime GeneralizedTime }. The stamp replaces each by a Time of the same type and length.
	var nbTag, naTag cbasn1.Tag
	if !validity.next(&nbTag, &l.notBefore, nil) || !validity.next(&naTag, &l.notAfter, nil) || !validity.empty() ||
		!isTime(nbTag) || !isTime(naTag) {
		return l, errors.New("malformed validity")
	}

	// subject: SEQUENCE OF RelativeDistinguishedName, each a SET OF AttributeTypeAndValue.
	nCN := 0
	for !subject.empty() {
		var rdn cursor
		if !subject.read(cbasn1.SET, nil, &rdn) {
			return l, errors.New("malformed subject name")
		}
		for !rdn.empty() {
			var atv cursor
			var oid asn1.ObjectIdentifier
			var value span
			if !rdn.read(cbasn1.SEQUENCE, nil, &atv) || !atv.oid(&oid) || !atv.next(nil, &value, nil) || !atv.empty() {
				return l, errors.New("malformed subject attribute")
			}
			if oid.Equal(oidAttrCommonName) {
				nCN++
				l.cn = value
			}
		}
	}
	if nCN != 1 {
		return l, notStampable("the subject has %d common names; a stamp replaces exactly one", nCN)
	}

	// subjectPublicKeyInfo: SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }.
	var bits cursor
	if !spki.read(cbasn1.SEQUENCE, nil, nil) || !spki.read(cbasn1.BIT_STRING, nil, &bits) || !spki.empty() {
		return l, errors.New("malformed subjectPublicKeyInfo")
	}
	if bits.end-bits.off < 2 || tbs[bits.off] != 0 {
		return l, notStampable("the subject public key is not a whole number of octets")
	}
	l.key = bits.off + 1 - l.spki.off

	// issuerUniqueID [1] and subjectUniqueID [2] (RFC 5280 4.1.2.8; conforming CAs do not generate them),
	// then extensions [3].
	var exts cursor
	if !seq.skipOptional(cbasn1.Tag(1).ContextSpecific()) || !seq.skipOptional(cbasn1.Tag(2).ContextSpecific()) {
		return l, malformed
	}
	if seq.peek(cbasn1.Tag(3).Constructed().ContextSpecific()) {
		var list cursor
		if !seq.read(cbasn1.Tag(3).Constructed().ContextSpecific(), nil, &exts) || !exts.read(cbasn1.SEQUENCE, nil, &list) || !exts.empty() {
			return l, errors.New("malformed extensions")
		}
		nSKI := 0
		for !list.empty() {
			// Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }.
			var ext, value, keyID cursor
			var oid asn1.ObjectIdentifier
			if !list.read(cbasn1.SEQUENCE, nil, &ext) || !ext.oid(&oid) || !ext.skipOptional(cbasn1.BOOLEAN) ||
				!ext.read(cbasn1.OCTET_STRING, nil, &value) || !ext.empty() {
				return l, errors.New("malformed extension")
			}
			if !oid.Equal(oidExtSKI) {
				continue
			}
			nSKI++
			// extnValue holds KeyIdentifier ::= OCTET STRING (RFC 5280 4.2.1.2).
			if !value.read(cbasn1.OCTET_STRING, nil, &keyID) || !value.empty() {
				return l, errors.New("malformed subject key identifier")
			}
			l.ski = keyID.rest()
		}
		if nSKI > 1 {
			return l, notStampable("the certificate has %d subject key identifier extensions", nSKI)
		}
	}
	if !seq.empty() {
		return l, malformed
	}
	keyBits := tbs[l.spki.off+l.key : l.spki.off+l.spki.n]
	if l.ski.n > 0 {
		// profile.Template computes the identifier with RFC 7093 section 2 method 1: the leftmost 160 bits of
		// the SHA-256 of the subjectPublicKey bits. Any other derivation cannot be reproduced for a new key.
		h := sha256.Sum256(keyBits)
		if !bytes.Equal(l.ski.of(tbs), h[:20]) {
			return l, notStampable("the subject key identifier is not RFC 7093 method 1 (truncated SHA-256) of the subject key")
		}
	}

	// A per-certificate value that occurs a second time (the common name repeated in a subject alternative
	// name, say) would keep the stamped-from certificate's value there. This search only refuses; it never
	// locates anything. A very short common name may occur by chance, which refuses too.
	for _, f := range []struct {
		what string
		b    []byte
	}{
		{"serial number", l.serial.of(tbs)},
		{"notBefore", l.notBefore.of(tbs)},
		{"notAfter", l.notAfter.of(tbs)},
		{"common name", cnValue(l.cn.of(tbs))},
		{"subject public key", keyBits},
		{"subject key identifier", l.ski.of(tbs)},
	} {
		if len(f.b) == 0 {
			continue
		}
		if n := bytes.Count(tbs, f.b); n != 1 {
			return l, notStampable("the %s occurs %d times in the certificate; a stamp can replace it only where the subject carries it", f.what, n)
		}
	}
	return l, nil
}

func isTime(tag cbasn1.Tag) bool { return tag == cbasn1.UTCTime || tag == cbasn1.GeneralizedTime }

// cnValue returns the content of a DER element (a string attribute value), or nil.
func cnValue(elem []byte) []byte {
	s := cryptobyte.String(elem)
	var v cryptobyte.String
	var tag cbasn1.Tag
	if !s.ReadAnyASN1(&v, &tag) {
		return nil
	}
	return v
}

// cursor reads DER elements from b[off:end], a stretch of the TBSCertificate b, keeping track of offsets so
// that a field found by parsing can be replaced in place.
type cursor struct {
	b        []byte
	off, end int
}

func (c *cursor) empty() bool { return c.off == c.end }

// rest is the unread stretch.
func (c *cursor) rest() span { return span{c.off, c.end - c.off} }

func (c *cursor) peek(tag cbasn1.Tag) bool {
	s := cryptobyte.String(c.b[c.off:c.end])
	return s.PeekASN1Tag(tag)
}

// next reads the next element, of any tag. tag, elem and content, where not nil, receive its tag, the span
// of the whole element and a cursor on its content.
func (c *cursor) next(tag *cbasn1.Tag, elem *span, content *cursor) bool {
	s := cryptobyte.String(c.b[c.off:c.end])
	var body cryptobyte.String
	var t cbasn1.Tag
	if !s.ReadAnyASN1(&body, &t) {
		return false
	}
	start, n := c.off, c.end-c.off-len(s)
	c.off += n
	if tag != nil {
		*tag = t
	}
	if elem != nil {
		*elem = span{start, n}
	}
	if content != nil {
		*content = cursor{b: c.b, off: start + n - len(body), end: start + n}
	}
	return true
}

// read reads the next element, which must have the tag want.
func (c *cursor) read(want cbasn1.Tag, elem *span, content *cursor) bool {
	return c.peek(want) && c.next(nil, elem, content)
}

func (c *cursor) skipOptional(tag cbasn1.Tag) bool {
	return !c.peek(tag) || c.next(nil, nil, nil)
}

func (c *cursor) oid(out *asn1.ObjectIdentifier) bool {
	s := cryptobyte.String(c.b[c.off:c.end])
	before := len(s)
	if !s.ReadASN1ObjectIdentifier(out) {
		return false
	}
	c.off += before - len(s)
	return true
}

func stringType(tag byte) string {
	switch cbasn1.Tag(tag) {
	case cbasn1.PrintableString:
		return "PrintableString"
	case cbasn1.UTF8String:
		return "UTF8String"
	case cbasn1.IA5String:
		return "IA5String"
	}
	return fmt.Sprintf("string of tag 0x%02x", tag)
}

// keyType names the stamp's subject key type.
func (s *Stamp) keyType() string {
	pub, err := x509.ParsePKIXPublicKey(s.l.spki.of(s.tbs))
	if err != nil {
		return "unknown"
	}
	return keyDesc(pub)
}

func keyDesc(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != nil {
			return "ECDSA " + k.Curve.Params().Name
		}
		return "ECDSA"
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		if k.N != nil {
			return fmt.Sprintf("RSA %d", k.N.BitLen())
		}
		return "RSA"
	}
	return fmt.Sprintf("%T", pub)
}
