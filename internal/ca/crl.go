package ca

// This file encodes and signs CRLs (RFC 5280 section 5) without crypto/x509. x509.CreateRevocationList takes
// every entry as a big.Int and a pkix.Extension slice and marshals them through reflection; for a CA with a
// million revoked certificates that costs more than reading them from the store. CRLEntries appends each
// entry's DER as the store walk yields it. A small CRL's entries stay in memory and Issuer.SignCRL returns the
// whole CRL; a large CRL's entries are written out as they come (CRLEntries.WriteTo, to a spool the caller
// keeps), and Issuer.SignCRLBody reads them back once to hash the TBSCertList, whose header, which carries
// their length, is only known at the end. It returns the CRL as its header, the caller's entries and its
// tail, so that no step holds the whole CRL.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// DER encodings of the fixed parts of entries and extensions.
var (
	derOIDReasonCode     = []byte{0x06, 0x03, 0x55, 0x1d, 0x15} // id-ce-cRLReasons, RFC 5280 5.3.1
	derOIDInvalidityDate = []byte{0x06, 0x03, 0x55, 0x1d, 0x18} // id-ce-invalidityDate, RFC 5280 5.3.2
)

// crlSigAlg is how a CA key signs a CRL: the AlgorithmIdentifier DER and the hash handed to the signer.
// The choice is the one x509.CreateRevocationList makes for the key (and internal/issuer for certificates):
// SHA-256 with P-256 and RSA, SHA-384 with P-384, SHA-512 with P-521 (RFC 5480 4), pure Ed25519 (RFC 8410 3).
type crlSigAlg struct {
	algID []byte
	hash  crypto.Hash // 0 for Ed25519, which signs the message itself
}

func crlSigAlgFor(pub crypto.PublicKey) (crlSigAlg, error) {
	var oid []byte
	var hash crypto.Hash
	rsaNull := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			oid, hash = []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}, crypto.SHA256 // ecdsa-with-SHA256, RFC 5758 3.2
		case elliptic.P384():
			oid, hash = []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}, crypto.SHA384
		case elliptic.P521():
			oid, hash = []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04}, crypto.SHA512
		default:
			return crlSigAlg{}, fmt.Errorf("unsupported CA curve %s", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		oid = []byte{0x2b, 0x65, 0x70} // id-Ed25519, RFC 8410 3: parameters absent
	case *rsa.PublicKey:
		// sha256WithRSAEncryption, RFC 4055 5: parameters NULL.
		oid, hash, rsaNull = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b}, crypto.SHA256, true
	default:
		return crlSigAlg{}, fmt.Errorf("unsupported CA key type %T", pub)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(oid) })
		if rsaNull {
			b.AddASN1NULL()
		}
	})
	der, err := b.Bytes()
	return crlSigAlg{algID: der, hash: hash}, err
}

// CRLEntries builds the revokedCertificates of one CRL entry by entry (RFC 5280 5.1.2.6). The zero value holds
// no entries.
type CRLEntries struct {
	entries []byte // the DER of every entry added since the last WriteTo: content of the revokedCertificates SEQUENCE
	n       int
	written int64  // octets handed to WriteTo
	serial  []byte // scratch for the serial being decoded
}

// Add appends one entry: serialHex (the serial as the store keeps it, hexadecimal), its revocation date, its
// CRLReason (0, unspecified, adds no reasonCode: RFC 5280 5.3.1 says the extension SHOULD then be absent)
// and, when not nil, its invalidity date. The entry extensions come in the order x509.CreateRevocationList
// writes them (invalidityDate, then reasonCode), so that both encoders give the same bytes.
func (c *CRLEntries) Add(serialHex string, revokedAt time.Time, reason int, invalidity *time.Time) error {
	if reason < 0 || reason > 10 || reason == 7 {
		// RFC 5280 5.3.1: CRLReason is 0..10, and 7 is not used.
		return fmt.Errorf("serial %s: CRL reason %d is not a CRLReason of RFC 5280 5.3.1", serialHex, reason)
	}
	serial, err := c.decodeSerial(serialHex)
	if err != nil {
		return err
	}
	// RFC 5280 5.1.2.6: revocationDate is a Time; 5.1.2.4 rules on UTCTime and GeneralizedTime apply.
	revokedAt = revokedAt.UTC()
	y := revokedAt.Year()
	if y < 0 || y > 9999 {
		return fmt.Errorf("serial %s: revocation date %s cannot be encoded", serialHex, revokedAt)
	}
	timeLen := 2 + 13
	if y < 1950 || y >= 2050 {
		timeLen = 2 + 15
	}
	extsLen := 0
	if invalidity != nil {
		if iy := invalidity.UTC().Year(); iy < 0 || iy > 9999 {
			return fmt.Errorf("serial %s: invalidity date %s cannot be encoded", serialHex, invalidity)
		}
		extsLen += 2 + len(derOIDInvalidityDate) + 2 + 2 + 15
	}
	if reason != 0 {
		extsLen += 2 + len(derOIDReasonCode) + 2 + 3
	}
	content := 2 + len(serial) + timeLen
	if extsLen > 0 {
		content += derHeaderLen(extsLen) + extsLen
	}
	b := appendDERHeader(c.entries, 0x30, content) // RevokedCertificate SEQUENCE
	b = appendDERHeader(b, 0x02, len(serial))
	b = append(b, serial...)
	b = appendDERTime(b, revokedAt)
	if extsLen > 0 {
		b = appendDERHeader(b, 0x30, extsLen) // crlEntryExtensions Extensions
		if invalidity != nil {
			// RFC 5280 5.3.2: invalidityDate, non-critical, a GeneralizedTime in an OCTET STRING.
			b = append(b, 0x30, byte(len(derOIDInvalidityDate)+2+2+15))
			b = append(b, derOIDInvalidityDate...)
			b = append(b, 0x04, 2+15)
			b = appendGeneralizedTime(b, invalidity.UTC())
		}
		if reason != 0 {
			// RFC 5280 5.3.1: reasonCode, non-critical, an ENUMERATED in an OCTET STRING.
			b = append(b, 0x30, byte(len(derOIDReasonCode)+2+3))
			b = append(b, derOIDReasonCode...)
			b = append(b, 0x04, 0x03, 0x0a, 0x01, byte(reason))
		}
	}
	c.entries = b
	c.n++
	return nil
}

// decodeSerial returns the DER INTEGER content of a stored hexadecimal serial: minimal, with a zero octet in
// front when the high bit is set, so the value stays positive (RFC 5280 4.1.2.2, X.690 8.3.2).
func (c *CRLEntries) decodeSerial(serialHex string) ([]byte, error) {
	n := (len(serialHex) + 1) / 2
	if serialHex == "" || n > 64 {
		return nil, fmt.Errorf("stored serial %q is not a hexadecimal serial number", serialHex)
	}
	// c.serial[0] stays zero: the sign octet, if one is needed.
	if cap(c.serial) < n+1 {
		c.serial = make([]byte, n+1, 2*n+2)
	}
	c.serial = c.serial[:n+1]
	c.serial[0] = 0
	dst := c.serial[1:]
	odd := len(serialHex) % 2
	for i := range dst {
		var hi, lo byte
		if i > 0 || odd == 0 {
			hi = fromHex(serialHex[2*i-odd])
		}
		lo = fromHex(serialHex[2*i+1-odd])
		if hi|lo > 0xf {
			return nil, fmt.Errorf("stored serial %q is not hexadecimal", serialHex)
		}
		dst[i] = hi<<4 | lo
	}
	for len(dst) > 1 && dst[0] == 0 {
		dst = dst[1:]
	}
	if dst[0]&0x80 != 0 {
		// The octet before dst is c.serial[0] or a skipped leading zero.
		dst = c.serial[len(c.serial)-len(dst)-1:]
	}
	return dst, nil
}

// fromHex returns the value of a hexadecimal digit, or 0xff.
func fromHex(ch byte) byte {
	switch {
	case '0' <= ch && ch <= '9':
		return ch - '0'
	case 'a' <= ch && ch <= 'f':
		return ch - 'a' + 10
	case 'A' <= ch && ch <= 'F':
		return ch - 'A' + 10
	}
	return 0xff
}

// Len is the number of entries added.
func (c *CRLEntries) Len() int { return c.n }

// Buffered is the number of octets of the entries added since the last WriteTo.
func (c *CRLEntries) Buffered() int { return len(c.entries) }

// WriteTo writes the DER of the entries added since the last call to w and forgets it, keeping the count: the
// entries of a large CRL go to the caller's spool a buffer at a time, and are signed with Issuer.SignCRLBody.
func (c *CRLEntries) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(c.entries)
	c.written += int64(n)
	if err == nil && n < len(c.entries) {
		err = io.ErrShortWrite
	}
	c.entries = c.entries[:0]
	return int64(n), err
}

// Body returns the CRLBody of the entries held in memory (none were written out), for SignCRLBody.
func (c *CRLEntries) Body() CRLBody {
	return CRLBody{Size: int64(len(c.entries)), Open: func() (io.Reader, error) { return bytes.NewReader(c.entries), nil }}
}

// CRLBody is the content of a CRL's revokedCertificates (RFC 5280 5.1.2.6) kept by the caller, for a CRL too
// large to hold in memory: Size octets, the DER of every RevokedCertificate one after the other as
// CRLEntries.WriteTo wrote them, which Open reads from the start each time it is called. A Size of 0 makes a
// CRL without revokedCertificates.
type CRLBody struct {
	Size int64
	Open func() (io.Reader, error)
}

// copyTo copies the body's Size octets to w, and fails if it holds more or fewer.
func (b CRLBody) copyTo(w io.Writer) error {
	if b.Size == 0 {
		return nil
	}
	r, err := b.Open()
	if err != nil {
		return fmt.Errorf("read CRL entries: %w", err)
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	n, err := io.Copy(w, io.LimitReader(r, b.Size+1))
	if err != nil {
		return fmt.Errorf("read CRL entries: %w", err)
	}
	if n != b.Size {
		return fmt.Errorf("CRL entries are %d octets, not the %d they were when signed", n, b.Size)
	}
	return nil
}

// SignedCRL is a signed CRL whose entries stay where the caller keeps them: its DER is Head, the Size octets
// of Body, then Tail.
type SignedCRL struct {
	// Head holds the CertificateList and TBSCertList headers, the fields before the entries and the
	// revokedCertificates header.
	Head []byte
	Body CRLBody
	// Tail holds the crlExtensions, the signatureAlgorithm and the signature.
	Tail []byte
}

// Size is the length of the DER CRL.
func (c *SignedCRL) Size() int64 { return int64(len(c.Head)) + c.Body.Size + int64(len(c.Tail)) }

// WriteTo writes the DER CRL to w, reading its entries from the body.
func (c *SignedCRL) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	if _, err := cw.Write(c.Head); err != nil {
		return cw.n, err
	}
	if err := c.Body.copyTo(cw); err != nil {
		return cw.n, err
	}
	_, err := cw.Write(c.Tail)
	return cw.n, err
}

// Bytes returns the DER CRL, for a CRL small enough to hold in memory.
func (c *SignedCRL) Bytes() ([]byte, error) {
	b := bytes.NewBuffer(make([]byte, 0, c.Size()))
	if _, err := c.WriteTo(b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// CRLParams is everything of a CRL but its issuer and its entries.
type CRLParams struct {
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	// Extensions are the DER Extension elements after the AKI and the CRL number (the issuing distribution
	// point and freshestCRL or delta CRL indicator), in order.
	Extensions [][]byte
}

// SignCRL signs the CRL of the entries in e, all held in memory, with the CA's key: a CA signs its own CRLs
// (RFC 5280 5.1.1.2, 6.3.3; Keyward issues no indirect CRLs), with the cRLSign key usage of its certificate.
func (i *Issuer) SignCRL(p CRLParams, e *CRLEntries) ([]byte, error) {
	if err := i.Usable(); err != nil {
		return nil, err
	}
	der, err := e.finish(i.cert, i.guard, p)
	if err != nil {
		return nil, fmt.Errorf("sign CRL %d of %s: %w", p.Number, i.ca.ID, err)
	}
	return der, nil
}

// SignCRLBody signs the CRL of the entries in body as SignCRL does, reading them once to hash the
// TBSCertList (an Ed25519 CA reads them into memory: see maxEd25519TBS). The CRL it returns reads them again
// when it is written out.
func (i *Issuer) SignCRLBody(p CRLParams, body CRLBody) (*SignedCRL, error) {
	if err := i.Usable(); err != nil {
		return nil, err
	}
	crl, err := signCRLBody(i.cert, i.guard, p, body)
	if err != nil {
		return nil, fmt.Errorf("sign CRL %d of %s: %w", p.Number, i.ca.ID, err)
	}
	return crl, nil
}

// finish signs the CRL of the entries added so far and returns its DER CertificateList (RFC 5280 5.1.1).
func (c *CRLEntries) finish(issuerCert *x509.Certificate, signer crypto.Signer, p CRLParams) ([]byte, error) {
	if c.written > 0 {
		return nil, errors.New("the CRL entries were written out: sign them with SignCRLBody")
	}
	crl, err := signCRLBody(issuerCert, signer, p, c.Body())
	if err != nil {
		return nil, err
	}
	return crl.Bytes()
}

// signCRLBody signs the CRL of the entries in body. It makes the checks x509.CreateRevocationList makes: the
// issuer may sign CRLs (cRLSign, RFC 5280 4.2.1.3) and has a subject key identifier for the AKI (5.2.1),
// nextUpdate is not before thisUpdate.
func signCRLBody(issuerCert *x509.Certificate, signer crypto.Signer, p CRLParams, body CRLBody) (*SignedCRL, error) {
	if issuerCert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, errors.New("CA certificate lacks the cRLSign key usage (RFC 5280 4.2.1.3)")
	}
	if len(issuerCert.SubjectKeyId) == 0 {
		return nil, errors.New("CA certificate has no subject key identifier for the CRL's AKI (RFC 5280 5.2.1)")
	}
	if p.NextUpdate.Before(p.ThisUpdate) {
		return nil, fmt.Errorf("CRL nextUpdate %s is before thisUpdate %s", p.NextUpdate, p.ThisUpdate)
	}
	if p.Number < 0 {
		return nil, fmt.Errorf("CRL number %d is negative (RFC 5280 5.2.3)", p.Number)
	}
	for _, t := range []time.Time{p.ThisUpdate, p.NextUpdate} {
		if y := t.UTC().Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("CRL time %s cannot be encoded", t)
		}
	}
	alg, err := crlSigAlgFor(signer.Public())
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(signer.Public(), issuerCert.PublicKey) {
		return nil, errors.New("CA key does not match the CA certificate")
	}

	// Everything of the TBSCertList but the entries is small: cryptobyte writes it, before and after.
	var head cryptobyte.Builder
	head.AddASN1Int64(1) // version v2 (RFC 5280 5.1.2.1: v2 because extensions are present)
	head.AddBytes(alg.algID)
	issuer := issuerCert.RawSubject // RFC 5280 5.1.2.3: the issuer name is the CA certificate's subject, as encoded there
	head.AddBytes(issuer)
	head.AddBytes(appendDERTime(nil, p.ThisUpdate.UTC())) // 5.1.2.4
	head.AddBytes(appendDERTime(nil, p.NextUpdate.UTC())) // 5.1.2.5
	headDER, err := head.Bytes()
	if err != nil {
		return nil, err
	}
	var tail cryptobyte.Builder
	tail.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { // crlExtensions [0] EXPLICIT
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			// RFC 5280 5.2.1: authorityKeyIdentifier, non-critical, keyIdentifier [0] = the CA's SKI.
			addExtension(b, []byte{0x55, 0x1d, 0x23}, false, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(issuerCert.SubjectKeyId) })
				})
			})
			// RFC 5280 5.2.3: cRLNumber, non-critical.
			addExtension(b, []byte{0x55, 0x1d, 0x14}, false, func(b *cryptobyte.Builder) { b.AddASN1Int64(p.Number) })
			for _, e := range p.Extensions {
				b.AddBytes(e)
			}
		})
	})
	tailDER, err := tail.Bytes()
	if err != nil {
		return nil, err
	}

	if body.Size < 0 {
		return nil, fmt.Errorf("CRL entries of %d octets", body.Size)
	}
	// RFC 5280 5.1.2.6: with no revoked certificates, revokedCertificates is absent.
	tbsContent := int64(len(headDER)) + int64(len(tailDER))
	if body.Size > 0 {
		tbsContent += int64(derHeaderLen64(body.Size)) + body.Size
	}
	// The header holds room for the CertificateList's own header in front (filled in once the signature's
	// length is known: at most 2+8 octets), the TBSCertList's header and its fields up to the entries.
	const front = 10
	hdr := make([]byte, front, front+10+len(headDER)+10)
	hdr = appendDERHeader64(hdr, 0x30, tbsContent)
	hdr = append(hdr, headDER...)
	if body.Size > 0 {
		hdr = appendDERHeader64(hdr, 0x30, body.Size)
	}
	sig, err := signTBS(signer, issuerCert.PublicKey, alg, hdr[front:], body, tailDER)
	if err != nil {
		return nil, err
	}
	trailer := make([]byte, 0, len(tailDER)+len(alg.algID)+6+len(sig))
	trailer = append(trailer, tailDER...)
	trailer = append(trailer, alg.algID...)
	trailer = appendDERHeader(trailer, 0x03, len(sig)+1)
	trailer = append(trailer, 0) // no unused bits
	trailer = append(trailer, sig...)
	outer := int64(derHeaderLen64(tbsContent)) + tbsContent + int64(len(alg.algID)) + int64(derHeaderLen(len(sig)+1)) + int64(len(sig)) + 1
	start := front - derHeaderLen64(outer)
	appendDERHeader64(hdr[start:start], 0x30, outer)
	return &SignedCRL{Head: hdr[start:], Body: body, Tail: trailer}, nil
}

// addExtension writes one Extension (RFC 5280 4.1): extnID, critical only when TRUE (DER omits a DEFAULT
// FALSE), extnValue wrapping what value writes.
func addExtension(b *cryptobyte.Builder, oid []byte, critical bool, value func(*cryptobyte.Builder)) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(oid) })
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// ExtensionDER encodes one Extension (RFC 5280 4.1) whose value is already DER, for CRLParams.Extensions.
func ExtensionDER(oid []byte, critical bool, value []byte) ([]byte, error) {
	var b cryptobyte.Builder
	addExtension(&b, oid, critical, func(b *cryptobyte.Builder) { b.AddBytes(value) })
	return b.Bytes()
}

// maxEd25519TBS bounds the TBSCertList an Ed25519 CA signs. Ed25519 signs the message itself, not a digest:
// PureEdDSA (RFC 8032 5.1.6, the only Ed25519 of X.509, RFC 8410 3) hashes it twice, the second time after a
// value computed from the first, so the TBSCertList is read into memory whole, and a PKCS#11 token takes it in
// one call (CKM_EDDSA). 1 GiB holds about 20 million entries; ECDSA and RSA CAs sign a digest computed as
// the entries are read, in constant memory, at any size.
const maxEd25519TBS = 1 << 30

// signTBS signs the TBSCertList prefix || body || suffix with the CA key and checks the signature before it is
// published, as crypto/x509 does: a faulty signer (an HSM, a bit flip) must not publish a CRL that no relying
// party accepts. The digest of a large CRL is computed once for both, as the body is read.
func signTBS(signer crypto.Signer, pub crypto.PublicKey, alg crlSigAlg, prefix []byte, body CRLBody, suffix []byte) ([]byte, error) {
	var msg []byte
	if alg.hash != 0 {
		h := alg.hash.New()
		h.Write(prefix)
		if err := body.copyTo(h); err != nil {
			return nil, err
		}
		h.Write(suffix)
		msg = h.Sum(nil)
	} else {
		size := int64(len(prefix)) + body.Size + int64(len(suffix))
		if size > maxEd25519TBS {
			return nil, fmt.Errorf("an Ed25519 CA signs its CRL's TBSCertList from memory (RFC 8032 PureEdDSA), and this one is %d octets, more than %d: "+
				"publish the CRLs of this many revoked certificates with an ECDSA CA", size, int64(maxEd25519TBS))
		}
		buf := bytes.NewBuffer(make([]byte, 0, size))
		buf.Write(prefix)
		if err := body.copyTo(buf); err != nil {
			return nil, err
		}
		buf.Write(suffix)
		msg = buf.Bytes()
	}
	sig, err := signer.Sign(rand.Reader, msg, alg.hash)
	if err != nil {
		return nil, err
	}
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, msg, sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, alg.hash, msg, sig) == nil
	}
	if !ok {
		return nil, errors.New("the CA signer returned a CRL signature that does not verify")
	}
	return sig, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// derHeaderLen is the length of the identifier and length octets of a DER element with n content octets.
func derHeaderLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n < 0x100:
		return 3
	case n < 0x10000:
		return 4
	case n < 0x1000000:
		return 5
	}
	return 6
}

// derHeaderLen64 is derHeaderLen of a length that may exceed what 4 length octets hold (a CRL of more than
// 4 GiB; X.690 8.1.3.5 allows up to 126 octets).
func derHeaderLen64(n int64) int {
	if n < 1<<32 {
		return derHeaderLen(int(n))
	}
	l := 2
	for ; n > 0; n >>= 8 {
		l++
	}
	return l
}

// appendDERHeader64 is appendDERHeader of a length that may exceed 4 octets.
func appendDERHeader64(b []byte, tag byte, n int64) []byte {
	if n < 1<<32 {
		return appendDERHeader(b, tag, int(n))
	}
	octets := derHeaderLen64(n) - 2
	b = append(b, tag, 0x80|byte(octets))
	for i := octets - 1; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

// appendDERHeader appends the identifier octet tag and the DER definite length n (X.690 8.1.3).
func appendDERHeader(b []byte, tag byte, n int) []byte {
	b = append(b, tag)
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// appendDERTime appends t (UTC, year 0..9999) as RFC 5280 5.1.2.4 asks of CRL times: UTCTime through 2049,
// GeneralizedTime from 2050 (and before 1950), in seconds with no fraction, with Z.
func appendDERTime(b []byte, t time.Time) []byte {
	if y := t.Year(); y < 1950 || y >= 2050 {
		return appendGeneralizedTime(b, t)
	}
	b = append(b, 0x17, 13) // UTCTime YYMMDDHHMMSSZ
	return appendTimeDigits(b, t, false)
}

// appendGeneralizedTime appends t as GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 4.1.2.5.2: no fraction).
func appendGeneralizedTime(b []byte, t time.Time) []byte {
	b = append(b, 0x18, 15)
	return appendTimeDigits(b, t, true)
}

func appendTimeDigits(b []byte, t time.Time, fullYear bool) []byte {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	if fullYear {
		b = append(b, byte('0'+y/1000), byte('0'+y/100%10))
	}
	return append(b, byte('0'+y/10%10), byte('0'+y%10),
		byte('0'+int(mo)/10), byte('0'+int(mo)%10), byte('0'+d/10), byte('0'+d%10),
		byte('0'+h/10), byte('0'+h%10), byte('0'+mi/10), byte('0'+mi%10), byte('0'+s/10), byte('0'+s%10), 'Z')
}

// IssuingDistributionPoint returns the DER Extension of a CA's CRLs' issuing distribution point (RFC 5280
// 5.2.5, critical): no distribution point name (so the CRL applies both to certificates that name a CRL
// distribution point and to compact ones that name none), and the scope: onlyContainsCACerts for a root, whose
// CRL lists the CAs it revoked, onlyContainsUserCerts for every other CA.
func IssuingDistributionPoint(root bool) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		tag := cbasn1.Tag(1).ContextSpecific() // onlyContainsUserCerts [1] IMPLICIT BOOLEAN
		if root {
			tag = cbasn1.Tag(2).ContextSpecific() // onlyContainsCACerts [2] IMPLICIT BOOLEAN
		}
		b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
	})
	idp, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return ExtensionDER([]byte{0x55, 0x1d, 0x1c}, true, idp)
}
