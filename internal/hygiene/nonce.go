package hygiene

import (
	"crypto/ecdsa"
	"crypto/sha1" //nolint:gosec // only to name the digest a legacy ecdsa-with-SHA1 CSR signature covers
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
)

// Signature is what the fleet scan keeps of the signature on an accepted CSR (RFC 2986 4.2): enough to find a
// signature nonce used twice and, for ECDSA, to solve for the private key, at about a hundred octets instead of
// the whole request.
type Signature struct {
	Algorithm x509.SignatureAlgorithm
	// Digest is, for ECDSA, the hash of the signed CertificationRequestInfo under the signature's own hash
	// function (what the ECDSA equation signs, FIPS 186-5 6.4.1); for Ed25519, its SHA-256, which only tells
	// two signed messages apart (the Ed25519 equation needs the whole message).
	Digest []byte
	// R and S are the signature's halves as unsigned big-endian octets: ECDSA's r and s (the nonce's
	// commitment is r = x(kG) mod n); Ed25519's encoded point R = [r]B and scalar S (RFC 8032 5.1.6).
	R, S []byte
}

// CSRSignature returns what the scan keeps of csr's signature, and false for a signature algorithm whose
// signatures leave no nonce behind (RSA PKCS #1 v1.5 is deterministic; RSA-PSS salts are not kept).
func CSRSignature(csr *x509.CertificateRequest) (Signature, bool) {
	if csr == nil {
		return Signature{}, false
	}
	switch csr.SignatureAlgorithm {
	case x509.ECDSAWithSHA1, x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
		var sig struct{ R, S *big.Int }
		if rest, err := asn1.Unmarshal(csr.Signature, &sig); err != nil || len(rest) != 0 || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 {
			return Signature{}, false
		}
		return Signature{Algorithm: csr.SignatureAlgorithm, Digest: digest(csr.SignatureAlgorithm, csr.RawTBSCertificateRequest),
			R: sig.R.Bytes(), S: sig.S.Bytes()}, true
	case x509.PureEd25519:
		if len(csr.Signature) != 64 {
			return Signature{}, false
		}
		h := sha256.Sum256(csr.RawTBSCertificateRequest)
		return Signature{Algorithm: csr.SignatureAlgorithm, Digest: h[:], R: csr.Signature[:32:32], S: csr.Signature[32:]}, true
	}
	return Signature{}, false
}

// digest hashes msg with the hash function of an ECDSA signature algorithm.
func digest(alg x509.SignatureAlgorithm, msg []byte) []byte {
	switch alg {
	case x509.ECDSAWithSHA1:
		h := sha1.Sum(msg) //nolint:gosec // the digest a legacy signature covers, not a choice of hash
		return h[:]
	case x509.ECDSAWithSHA384:
		h := sha512.Sum384(msg)
		return h[:]
	case x509.ECDSAWithSHA512:
		h := sha512.Sum512(msg)
		return h[:]
	}
	h := sha256.Sum256(msg)
	return h[:]
}

// ECDSASignature is one ECDSA signature with the digest it signs.
type ECDSASignature struct {
	R, S   *big.Int
	Digest []byte
}

// RecoverNonceReuse reports whether two signatures by pub that share r (the same nonce k, or its negation)
// give away the private key: it solves k = (h1 − h2) / (s1 − s2) and d = (s1·k − h1) / r (mod n), also with s2
// negated (a signature (r, n − s) verifies as well as (r, s), so either may have been made with −k), and
// confirms a candidate d only by checking that d·G is pub. It returns true only when so confirmed, and never
// returns or keeps d: the scan reports that the key is recovered, not the key.
//
// Two signatures of the same digest share r and s honestly (one CSR sent twice): nothing is recoverable and it
// returns false, as it does for any pair with different r.
func RecoverNonceReuse(pub *ecdsa.PublicKey, a, b ECDSASignature) bool {
	if pub == nil || pub.Curve == nil || a.R == nil || b.R == nil || a.S == nil || b.S == nil || a.R.Cmp(b.R) != 0 {
		return false
	}
	want, err := pub.ECDH() // validates the point; P-256, P-384 and P-521 only
	if err != nil {
		return false
	}
	n := pub.Curve.Params().N
	if a.R.Sign() <= 0 || a.R.Cmp(n) >= 0 {
		return false
	}
	h1, h2 := hashToInt(a.Digest, n), hashToInt(b.Digest, n)
	dh := new(big.Int).Sub(h1, h2)
	dh.Mod(dh, n)
	if dh.Sign() == 0 {
		return false // the same message: no second equation
	}
	rInv := new(big.Int).ModInverse(a.R, n)
	if rInv == nil {
		return false
	}
	size := (n.BitLen() + 7) / 8
	buf := make([]byte, size)
	defer clear(buf)
	for _, s2 := range []*big.Int{b.S, new(big.Int).Sub(n, b.S)} {
		ds := new(big.Int).Sub(a.S, s2)
		ds.Mod(ds, n)
		dsInv := new(big.Int).ModInverse(ds, n)
		if dsInv == nil {
			continue
		}
		k := new(big.Int).Mul(dh, dsInv)
		k.Mod(k, n)
		d := new(big.Int).Mul(a.S, k)
		d.Sub(d, h1)
		d.Mul(d, rInv)
		d.Mod(d, n)
		ok := false
		if d.Sign() != 0 {
			d.FillBytes(buf)
			if priv, err := want.Curve().NewPrivateKey(buf); err == nil {
				ok = priv.PublicKey().Equal(want)
			}
		}
		d.SetInt64(0)
		k.SetInt64(0)
		if ok {
			return true
		}
	}
	return false
}

// hashToInt turns a digest into the integer the ECDSA equation uses: its leftmost bits, as many as the order
// n has (FIPS 186-5 6.4.1 step 2; crypto/ecdsa does the same).
func hashToInt(hash []byte, n *big.Int) *big.Int {
	orderBits := n.BitLen()
	orderBytes := (orderBits + 7) / 8
	if len(hash) > orderBytes {
		hash = hash[:orderBytes]
	}
	ret := new(big.Int).SetBytes(hash)
	if excess := len(hash)*8 - orderBits; excess > 0 {
		ret.Rsh(ret, uint(excess))
	}
	return ret
}
