package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// OCSP request parsing. golang.org/x/crypto/ocsp.ParseRequest drops the request extensions, and so the nonce,
// so Keyward parses requests itself (RFC 6960 4.1.1) with cryptobyte.

// oidNonce is id-pkix-ocsp-nonce (RFC 6960 4.4.1).
var oidNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// Hash algorithm identifiers a CertID may use: SHA-1 (what OpenSSL and most clients send, RFC 6960 B.1) and
// the SHA-2 family.
var certIDHashes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
	new  func() hash.Hash
}{
	{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, crypto.SHA1, sha1.New},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, crypto.SHA256, sha256.New},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, crypto.SHA384, sha512.New384},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, crypto.SHA512, sha512.New},
}

// maxNonce is the longest nonce accepted (RFC 8954 2.1: 1 to 32 octets).
const maxNonce = 32

// OCSPRequest is a parsed single-certificate OCSP request.
type OCSPRequest struct {
	Hash           crypto.Hash
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	Serial         *big.Int
	// NonceExt is the raw extnValue of the nonce extension (an OCTET STRING holding the nonce), nil if none.
	NonceExt []byte
}

// ErrMalformedRequest is returned by ParseOCSPRequest; the responder answers malformedRequest (RFC 6960 2.3).
var ErrMalformedRequest = errors.New("malformed OCSP request")

// ParseOCSPRequest parses a DER OCSPRequest (RFC 6960 4.1.1) with exactly one Request, keeping the nonce
// extension. A signed request's signature is ignored (RFC 6960 4.1.2: optional; Keyward serves anyone).
func ParseOCSPRequest(der []byte) (*OCSPRequest, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrMalformedRequest, what) }
	input := cryptobyte.String(der)
	var req, tbs cryptobyte.String
	if !input.ReadASN1(&req, cbasn1.SEQUENCE) || !input.Empty() {
		return nil, bad("not a DER SEQUENCE")
	}
	if !req.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, bad("no tbsRequest")
	}
	// version [0] EXPLICIT INTEGER DEFAULT v1(0); requestorName [1] EXPLICIT GeneralName OPTIONAL.
	var version int64
	if !tbs.ReadOptionalASN1Integer(&version, cbasn1.Tag(0).ContextSpecific().Constructed(), int64(0)) || version != 0 {
		return nil, bad("version is not v1")
	}
	if !tbs.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific().Constructed()) {
		return nil, bad("bad requestorName")
	}
	var list cryptobyte.String
	if !tbs.ReadASN1(&list, cbasn1.SEQUENCE) {
		return nil, bad("no requestList")
	}
	var one, certID cryptobyte.String
	if !list.ReadASN1(&one, cbasn1.SEQUENCE) {
		return nil, bad("empty requestList")
	}
	if !list.Empty() {
		return nil, bad("more than one certificate in one request; send one request per certificate")
	}
	if !one.ReadASN1(&certID, cbasn1.SEQUENCE) || !one.SkipOptionalASN1(cbasn1.Tag(0).ContextSpecific().Constructed()) || !one.Empty() {
		return nil, bad("bad Request")
	}
	out := &OCSPRequest{}
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !certID.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, bad("bad hashAlgorithm")
	}
	for _, h := range certIDHashes {
		if h.oid.Equal(oid) {
			out.Hash = h.hash
		}
	}
	if out.Hash == 0 {
		return nil, bad(fmt.Sprintf("CertID hash algorithm %v is not SHA-1 or SHA-2", oid))
	}
	var nameHash, keyHash cryptobyte.String
	out.Serial = new(big.Int)
	if !certID.ReadASN1(&nameHash, cbasn1.OCTET_STRING) || !certID.ReadASN1(&keyHash, cbasn1.OCTET_STRING) ||
		!certID.ReadASN1Integer(out.Serial) || !certID.Empty() {
		return nil, bad("bad CertID")
	}
	if len(nameHash) != out.Hash.Size() || len(keyHash) != out.Hash.Size() {
		return nil, bad("CertID hash lengths do not match the hash algorithm")
	}
	out.IssuerNameHash, out.IssuerKeyHash = bytes.Clone(nameHash), bytes.Clone(keyHash)
	// requestExtensions [2] EXPLICIT Extensions OPTIONAL.
	var exts cryptobyte.String
	var hasExts bool
	if !tbs.ReadOptionalASN1(&exts, &hasExts, cbasn1.Tag(2).ContextSpecific().Constructed()) || !tbs.Empty() {
		return nil, bad("bad requestExtensions")
	}
	if hasExts {
		var seq cryptobyte.String
		if !exts.ReadASN1(&seq, cbasn1.SEQUENCE) || !exts.Empty() {
			return nil, bad("bad Extensions")
		}
		for !seq.Empty() {
			var ext, value cryptobyte.String
			var id asn1.ObjectIdentifier
			var critical bool
			if !seq.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&id) ||
				!ext.ReadOptionalASN1Boolean(&critical, cbasn1.BOOLEAN, false) || !ext.ReadASN1(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
				return nil, bad("bad Extension")
			}
			if !id.Equal(oidNonce) {
				continue // RFC 6960 4.4: unrecognised non-critical extensions are ignored
			}
			// RFC 8954 2.1: Nonce ::= OCTET STRING (SIZE(1..32)).
			inner := value
			var nonce cryptobyte.String
			if !inner.ReadASN1(&nonce, cbasn1.OCTET_STRING) || !inner.Empty() || len(nonce) < 1 || len(nonce) > maxNonce {
				return nil, bad("nonce must be an OCTET STRING of 1 to 32 octets (RFC 8954)")
			}
			out.NonceExt = bytes.Clone(value)
		}
	}
	if !req.SkipOptionalASN1(cbasn1.Tag(0).ContextSpecific().Constructed()) || !req.Empty() {
		return nil, bad("bad optionalSignature")
	}
	return out, nil
}

// OCSPConfig tunes the responder.
type OCSPConfig struct {
	// Validity is the span from thisUpdate to nextUpdate of a response (default 24h). Cached responses are
	// re-signed when half of it has passed.
	Validity time.Duration
	// MaxCached bounds the number of cached responses (default 1,000,000); when full, the cache is emptied.
	MaxCached int
}

// Responder answers OCSP requests for every CA of the node from pre-signed responses held in memory. It is
// safe for concurrent use.
type Responder struct {
	s   *Service
	cfg OCSPConfig
	// Observe, if set before serving, is called with each response signed (not one served from the cache): the
	// CA it answers for, its thisUpdate and its size (metrics).
	Observe func(ca string, thisUpdate time.Time, size int)

	mu      sync.RWMutex
	issuers []*ocspIssuer
	cache   map[string]*cached // issuer id + "/" + serial + "/" + hash
	seq     int64              // revocation head the cache reflects
}

type ocspIssuer struct {
	id     string
	status string
	row    *store.CA
	cert   *x509.Certificate
	// children are the CAs below a root, by serial: a root answers for their certificates.
	children  map[string]*store.CA
	nameHash  map[crypto.Hash][]byte
	keyHash   map[crypto.Hash][]byte
	delegate  *ca.Delegate
	loadedErr error
}

type cached struct {
	der     []byte
	refresh time.Time
}

// NewResponder returns a responder for the service's CAs. Call Refresh before serving.
func NewResponder(s *Service, cfg OCSPConfig) *Responder {
	if cfg.Validity <= 0 {
		cfg.Validity = 24 * time.Hour
	}
	if cfg.MaxCached <= 0 {
		cfg.MaxCached = 1_000_000
	}
	return &Responder{s: s, cfg: cfg, cache: map[string]*cached{}}
}

// Refresh loads the CAs and their delegated responders (issuing responders that are missing or due for
// renewal), and drops cached responses of certificates whose revocation state changed since the last call.
func (r *Responder) Refresh(ctx context.Context) error {
	cas, err := r.s.rs.ListCAs(ctx)
	if err != nil {
		return err
	}
	head, err := r.s.rs.RevocationHead(ctx)
	if err != nil {
		return err
	}
	var issuers []*ocspIssuer
	for _, row := range cas {
		// A superseded generation and a revoked CA still answer for what they issued.
		if (row.Kind != store.CAKindIssuing && row.Kind != store.CAKindRoot) || !SignsStatus(row.Status) || len(row.CertDER) == 0 {
			continue
		}
		cert, err := x509.ParseCertificate(row.CertDER)
		if err != nil {
			return fmt.Errorf("CA %s: %w", row.ID, err)
		}
		oi := &ocspIssuer{id: row.ID, status: row.Status, row: row, cert: cert, nameHash: map[crypto.Hash][]byte{}, keyHash: map[crypto.Hash][]byte{}}
		if row.Kind == store.CAKindRoot {
			oi.children = map[string]*store.CA{}
			for _, c := range cas {
				if c.ParentID == row.ID && len(c.CertDER) > 0 {
					if cc, err := x509.ParseCertificate(c.CertDER); err == nil {
						oi.children[cc.SerialNumber.Text(16)] = c
					}
				}
			}
		}
		var spki struct {
			Algorithm asn1.RawValue
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(cert.RawSubjectPublicKeyInfo, &spki); err != nil {
			return fmt.Errorf("CA %s key: %w", row.ID, err)
		}
		// RFC 6960 4.1.1: issuerNameHash over the DER issuer name, issuerKeyHash over the value of the BIT
		// STRING subjectPublicKey (without tag, length and unused-bits octet).
		for _, h := range certIDHashes {
			nh := h.new()
			nh.Write(cert.RawSubject)
			kh := h.new()
			kh.Write(spki.PublicKey.Bytes)
			oi.nameHash[h.hash], oi.keyHash[h.hash] = nh.Sum(nil), kh.Sum(nil)
		}
		switch {
		case row.KeyURI != "":
			oi.delegate, oi.loadedErr = r.s.ra.Delegate(ctx, row.ID, keystore.PurposeOCSPSigning)
		case row.Kind == store.CAKindRoot:
			// An offline root answers through the responder it certified in a ceremony.
			oi.delegate, oi.loadedErr = r.s.ra.RootResponder(ctx, row)
		default:
			oi.loadedErr = fmt.Errorf("CA %s is offline: no OCSP responder can be certified here", row.ID)
		}
		issuers = append(issuers, oi)
	}
	r.mu.RLock()
	from := r.seq
	// A CA whose state changed (revoked, superseded) or a CA below a root that changed: every cached answer
	// may be stale.
	stale := len(issuers) != len(r.issuers)
	for i := 0; !stale && i < len(issuers); i++ {
		stale = issuers[i].id != r.issuers[i].id || issuers[i].status != r.issuers[i].status || !sameChildren(issuers[i].children, r.issuers[i].children)
	}
	r.mu.RUnlock()
	var changed []string
	if head > from {
		for _, oi := range issuers {
			err := r.s.rs.WalkRevocationChanges(ctx, oi.id, from, func(e *store.RevocationEntry) error {
				changed = append(changed, oi.id+"/"+e.Serial+"/")
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.issuers = issuers
	if stale {
		r.cache = map[string]*cached{}
	}
	for _, prefix := range changed {
		for _, h := range certIDHashes {
			delete(r.cache, prefix+fmt.Sprint(int(h.hash)))
		}
	}
	r.seq = head
	return nil
}

// Run refreshes the responder every interval, and at once when kick receives, until ctx ends.
func (r *Responder) Run(ctx context.Context, interval time.Duration, kick <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.s.log.WarnContext(ctx, "OCSP responder refresh", "err", err)
		}
	}
}

// Respond answers one DER OCSP request. It always returns a DER OCSPResponse: malformedRequest for a request
// that does not parse, unauthorized for an issuer this responder does not serve (RFC 6960 2.3), else a
// signed response with status good, revoked or unknown, from the cache unless the request carries a nonce.
func (r *Responder) Respond(ctx context.Context, der []byte) []byte {
	req, err := ParseOCSPRequest(der)
	if err != nil {
		return ocsp.MalformedRequestErrorResponse
	}
	r.mu.RLock()
	var oi *ocspIssuer
	for _, c := range r.issuers {
		if bytes.Equal(c.nameHash[req.Hash], req.IssuerNameHash) && bytes.Equal(c.keyHash[req.Hash], req.IssuerKeyHash) {
			oi = c
			break
		}
	}
	if oi == nil || oi.delegate == nil {
		r.mu.RUnlock()
		return ocsp.UnauthorizedErrorResponse
	}
	serial := req.Serial.Text(16)
	key := oi.id + "/" + serial + "/" + fmt.Sprint(int(req.Hash))
	now := r.s.now()
	if req.NonceExt == nil {
		if c := r.cache[key]; c != nil && now.Before(c.refresh) {
			r.mu.RUnlock()
			return c.der
		}
	}
	r.mu.RUnlock()
	resp, err := r.sign(ctx, oi, req, serial, now)
	if err != nil {
		r.s.log.ErrorContext(ctx, "OCSP response", "issuer", oi.id, "serial", serial, "err", err)
		return ocsp.InternalErrorErrorResponse
	}
	if r.Observe != nil {
		r.Observe(oi.id, now.Truncate(time.Second), len(resp))
	}
	if req.NonceExt == nil {
		r.mu.Lock()
		if len(r.cache) >= r.cfg.MaxCached {
			r.cache = map[string]*cached{}
		}
		r.cache[key] = &cached{der: resp, refresh: now.Add(r.cfg.Validity / 2)}
		r.mu.Unlock()
	}
	return resp
}

func (r *Responder) sign(ctx context.Context, oi *ocspIssuer, req *OCSPRequest, serial string, now time.Time) ([]byte, error) {
	st := singleStatus{status: ocsp.Unknown}
	c, err := r.s.rs.GetCertificate(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Unknown to this CA (RFC 6960 2.2), including a certificate of another Keyward CA asked under this one,
		// unless it is the certificate of a CA below this root.
		if child := oi.children[serial]; child != nil {
			st.status = ocsp.Good
			if child.Status == store.CAStatusRevoked && child.RevokedAt != nil {
				st.status, st.reason, st.revokedAt = ocsp.Revoked, child.RevocationReason, *child.RevokedAt
			}
		}
	case err != nil:
		return nil, err
	case c.IssuerID != oi.id:
	case c.Status == store.CertStatusRevoked:
		st.status, st.reason = ocsp.Revoked, c.RevocationReason
		if c.RevokedAt != nil {
			st.revokedAt = *c.RevokedAt
		}
	default:
		st.status = ocsp.Good
	}
	if oi.status == store.CAStatusRevoked && oi.row.RevokedAt != nil && st.status != ocsp.Unknown {
		// Everything a revoked CA issued is revoked with it (RFC 5280 5.3.1: cACompromise when its key was
		// compromised), as of the CA's revocation unless revoked earlier on its own.
		if st.status != ocsp.Revoked || oi.row.RevokedAt.Before(st.revokedAt) {
			st.status, st.revokedAt, st.reason = ocsp.Revoked, *oi.row.RevokedAt, subtreeReason(oi.row.RevocationReason)
		}
	}
	var hashOID asn1.ObjectIdentifier
	for _, h := range certIDHashes {
		if h.hash == req.Hash {
			hashOID = h.oid
		}
	}
	return oi.delegate.SignOCSP(ca.OCSPResponse{HashOID: hashOID, IssuerNameHash: req.IssuerNameHash, IssuerKeyHash: req.IssuerKeyHash, Serial: req.Serial,
		Status: st.status, RevokedAt: st.revokedAt, Reason: st.reason, NonceExt: req.NonceExt,
		ThisUpdate: now.Truncate(time.Second), NextUpdate: now.Add(r.cfg.Validity).Truncate(time.Second)})
}

// subtreeReason is the reason given for a certificate whose issuing CA was revoked for reason.
func subtreeReason(reason int) int {
	if reason == store.ReasonKeyCompromise || reason == store.ReasonCACompromise {
		return store.ReasonCACompromise
	}
	return reason
}

func sameChildren(a, b map[string]*store.CA) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		if y := b[k]; y == nil || y.Status != x.Status {
			return false
		}
	}
	return true
}

type singleStatus struct {
	status    int
	revokedAt time.Time
	reason    int
}
