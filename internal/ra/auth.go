package ra

// Authentication reads: operator tokens, and the CAs and stations behind TLS client certificates. They are read
// on every request, so while the change feed is followed (Changed) they are cached, and every change to what a
// cache holds clears it; without the feed (a one-shot CLI process) nothing is cached.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// tokenPrefix marks Keyward operator tokens so secret scanners can find leaked ones.
const tokenPrefix = "kwt_"

// maxTokenCache bounds the token cache: a flood of distinct valid tokens cannot grow it without limit.
const maxTokenCache = 10000

type caches struct {
	followed atomic.Bool

	mu       sync.Mutex
	tokens   map[string]Principal // by token hash
	stations map[string]*store.Station
	clients  *ClientCAs
	// current maps a CA role to the CA that fills it (roles.go). Unlike the others it is kept whether or not
	// the feed is followed: the RA clears it after its own changes to CAs, and a process that does not follow
	// the feed is a command that ends before a change elsewhere could matter.
	current map[string]string
}

func (c *caches) clear(tokens, stations, cas bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tokens {
		c.tokens = nil
	}
	if stations {
		c.stations = nil
	}
	if cas {
		c.clients = nil
		c.current = nil
	}
}

// FollowPrefixes are the action prefixes of the changes the RA's caches follow (feed.Subscribe).
var FollowPrefixes = []string{audit.PrefixToken, audit.PrefixStation, audit.PrefixCA, audit.PrefixKey}

// Changed applies changes reported by the change feed and, from its first call, lets the RA cache what
// authentication reads: each change clears the cache of what it touched.
func (r *RA) Changed(changes []store.Change) {
	var tokens, stations, cas bool
	for _, ch := range changes {
		switch {
		case strings.HasPrefix(ch.Action, audit.PrefixToken):
			tokens = true
		case strings.HasPrefix(ch.Action, audit.PrefixStation):
			stations = true
		case strings.HasPrefix(ch.Action, audit.PrefixCA), strings.HasPrefix(ch.Action, audit.PrefixKey):
			cas = true
		}
	}
	r.caches.clear(tokens, stations, cas)
	r.caches.followed.Store(true)
}

// HashToken returns the stored form of an operator token: SHA-256 is enough because tokens are 256 random bits,
// not passwords.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// CreateToken creates an operator token with a role for p and returns it; only its hash is stored.
func (r *RA) CreateToken(ctx context.Context, p Principal, name, role string) (string, error) {
	if err := r.authorize(ctx, p, audit.ActionTokenCreate, name, "create operator tokens", RoleAdmin); err != nil {
		return "", err
	}
	if !contains(OperatorRoles, role) {
		return "", FieldErrorf(KindBadRequest, "role", "role %q is not an operator role (use one of %s)", role, strings.Join(OperatorRoles, ", "))
	}
	if name == "" || len(name) > 64 || strings.ContainsFunc(name, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		return "", FieldErrorf(KindBadRequest, "name", "token name %.40q: 1 to 64 printable characters without spaces", name)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	h := HashToken(tok)
	now := r.now()
	id := hex.EncodeToString(h[:8])
	err := r.tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertToken(ctx, &store.Token{ID: id, Name: name, Role: role, Hash: h, CreatedAt: now}); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionTokenCreate, "token:"+id, now, map[string]string{"name": name, "role": role})
	})
	if err != nil {
		return "", fmt.Errorf("create token %q: %w", name, err)
	}
	return tok, nil
}

// ErrBadToken is returned by Authenticate for an unknown, malformed or revoked token.
var ErrBadToken = Sentinel(KindUnauthorized, "unknown or revoked operator token")

// operatorPrefix starts the id of a principal authenticated by an operator token; the token's name follows it.
const operatorPrefix = "operator:"

// Authenticate returns the principal an operator token stands for.
func (r *RA) Authenticate(ctx context.Context, token string) (Principal, error) {
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 128 {
		return Principal{}, ErrBadToken
	}
	h := HashToken(token)
	key := string(h)
	if r.caches.followed.Load() {
		r.caches.mu.Lock()
		p, ok := r.caches.tokens[key]
		r.caches.mu.Unlock()
		if ok {
			return p, nil
		}
	}
	t, err := r.cfg.Store.TokenByHash(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrBadToken
	} else if err != nil {
		return Principal{}, wrap(KindUnavailable, err)
	}
	if subtle.ConstantTimeCompare(t.Hash, h) != 1 || t.RevokedAt != nil {
		return Principal{}, ErrBadToken
	}
	p := Principal{ID: operatorPrefix + t.Name, Role: t.Role}
	if r.caches.followed.Load() {
		r.caches.mu.Lock()
		if r.caches.tokens == nil || len(r.caches.tokens) >= maxTokenCache {
			r.caches.tokens = map[string]Principal{}
		}
		r.caches.tokens[key] = p
		r.caches.mu.Unlock()
	}
	return p, nil
}

// ClientCAs are the CAs that issue TLS client certificates: station CAs (factory stations), issuing and site CAs
// (devices; a device provisioned at a site renews at headquarters with its site-CA certificate).
type ClientCAs struct {
	Pool   *x509.CertPool
	ByRaw  map[string]*store.CA // by the CA certificate's DER
	loaded time.Time
}

// clientCAReload is the least time between two reloads of the client CAs asked for by an unknown issuer, so a
// flood of unknown certificates cannot turn into a flood of store reads.
const clientCAReload = time.Second

// ClientCAs returns the active CAs that issue client certificates, from the cache while the change feed is
// followed (a CA created by another process arrives with its change). With reload, for a certificate whose
// issuer the cached CAs do not know, they are read again if the last read is older than clientCAReload, in case
// the change is on its way.
func (r *RA) ClientCAs(ctx context.Context, reload bool) (*ClientCAs, error) {
	if r.caches.followed.Load() {
		r.caches.mu.Lock()
		c := r.caches.clients
		r.caches.mu.Unlock()
		if c != nil && (!reload || time.Since(c.loaded) < clientCAReload) {
			return c, nil
		}
	}
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	c := &ClientCAs{Pool: x509.NewCertPool(), ByRaw: map[string]*store.CA{}, loaded: time.Now()}
	for _, ca := range cas {
		// A superseded generation still authenticates the devices it certified, so they can renew onto the
		// next; a revoked CA authenticates nobody.
		if (ca.Kind != store.CAKindStation && ca.Kind != store.CAKindIssuing && ca.Kind != store.CAKindSite) ||
			(ca.Status != store.CAStatusActive && ca.Status != store.CAStatusSuperseded) || len(ca.CertDER) == 0 {
			continue
		}
		cert, err := x509.ParseCertificate(ca.CertDER)
		if err != nil {
			return nil, fmt.Errorf("parse CA %s: %w", ca.ID, err)
		}
		c.Pool.AddCert(cert)
		c.ByRaw[string(cert.Raw)] = ca
	}
	if r.caches.followed.Load() {
		r.caches.mu.Lock()
		r.caches.clients = c
		r.caches.mu.Unlock()
	}
	return c, nil
}

// StationCaller returns the caller a factory-station client certificate leaf (issued by station CA ca) stands
// for: the registered station whose certificate it is, or a KindUnauthorized error.
func (r *RA) StationCaller(ctx context.Context, ca *store.CA, leaf *x509.Certificate) (Caller, error) {
	id := leaf.Subject.CommonName
	var st *store.Station
	if r.caches.followed.Load() {
		r.caches.mu.Lock()
		st = r.caches.stations[id]
		r.caches.mu.Unlock()
	}
	if st == nil {
		var err error
		st, err = r.cfg.Store.GetStation(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return Caller{}, wrap(KindUnavailable, err)
		}
		if err == nil && r.caches.followed.Load() {
			r.caches.mu.Lock()
			if r.caches.stations == nil {
				r.caches.stations = map[string]*store.Station{}
			}
			r.caches.stations[id] = st
			r.caches.mu.Unlock()
		}
	}
	if st == nil || st.CertSerial != SerialString(leaf) || st.Environment != ca.Environment {
		return Caller{}, errorf(KindUnauthorized, "client certificate %q (serial %s) belongs to no registered factory station", id, SerialString(leaf))
	}
	// A copy: the enrollment re-checks the station on its locked row, and must not share the cached one.
	cp := *st
	return Caller{Principal: StationPrincipal(st.ID), Station: &cp, Cert: leaf, Environment: ca.Environment}, nil
}
