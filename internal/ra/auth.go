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
	tokens   map[string]*cachedToken // by token hash
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

// DefaultTokenValidity is how long a new operator token authenticates unless its creator says otherwise: a
// credential that is never rotated outlives the people and machines that hold it (NIST SP 800-57 Pt. 1 5.3,
// cryptoperiods), so a token that never expires must be asked for explicitly.
const DefaultTokenValidity = 90 * 24 * time.Hour

// maxTokenValidity bounds an explicit validity: ten years, beyond which "never" says what is meant.
const maxTokenValidity = 10 * 365 * 24 * time.Hour

// TokenRequest is what CreateToken makes.
type TokenRequest struct {
	Name string
	Role string
	// ValidFor is how long the token authenticates, DefaultTokenValidity if zero.
	ValidFor time.Duration
	// NeverExpires makes a token without expiry; ValidFor must then be zero.
	NeverExpires bool
}

// Token states, as listings show them.
const (
	TokenActive  = "active"
	TokenRevoked = "revoked"
	TokenExpired = "expired"
)

// TokenState returns the state of t at now: revoked, expired or active. Revocation wins: a revoked token that
// has expired since is still listed as revoked, with its reason.
func TokenState(t *store.Token, now time.Time) string {
	switch {
	case t.RevokedAt != nil:
		return TokenRevoked
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return TokenExpired
	}
	return TokenActive
}

// validTokenName reports whether name can name a token: 1 to 64 printable ASCII characters without spaces or a
// colon (a ceremony's --witness NAME:TOKENFILE splits at the first colon).
func validTokenName(name string) bool {
	return name != "" && len(name) <= 64 && !strings.ContainsFunc(name, func(c rune) bool { return c <= ' ' || c >= 0x7f || c == ':' })
}

// CreateToken creates an operator token for p and returns it; only its hash is stored. Names are unique, so an
// audit event's "operator:NAME" names one credential.
func (r *RA) CreateToken(ctx context.Context, p Principal, req TokenRequest) (string, error) {
	if err := r.authorize(ctx, p, audit.ActionTokenCreate, req.Name, "create operator tokens", RoleAdmin); err != nil {
		return "", err
	}
	return r.createToken(ctx, p, req, OperatorRoles)
}

func (r *RA) createToken(ctx context.Context, p Principal, req TokenRequest, roles []string) (string, error) {
	var err error
	switch {
	case !contains(roles, req.Role):
		err = FieldErrorf(KindBadRequest, "role", "role %q is not an operator role (use one of %s)", req.Role, strings.Join(roles, ", "))
	case !validTokenName(req.Name):
		err = FieldErrorf(KindBadRequest, "name", "token name %.40q: 1 to 64 printable ASCII characters without spaces or colons", req.Name)
	case req.NeverExpires && req.ValidFor != 0:
		err = FieldErrorf(KindBadRequest, "expires", "a token either expires after a time or never, not both")
	case req.ValidFor < 0 || req.ValidFor > maxTokenValidity:
		err = FieldErrorf(KindBadRequest, "expires", "token validity %s: from a minute to 10 years, or never", req.ValidFor)
	case req.ValidFor > 0 && req.ValidFor < time.Minute:
		err = FieldErrorf(KindBadRequest, "expires", "token validity %s: from a minute to 10 years, or never", req.ValidFor)
	}
	if err != nil {
		r.refuse(ctx, p, audit.ActionTokenCreate, "-", map[string]string{"token_role": req.Role}, err)
		return "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	h := HashToken(tok)
	now := r.now()
	id := hex.EncodeToString(h[:8])
	rec := &store.Token{ID: id, Name: req.Name, Role: req.Role, Hash: h, CreatedAt: now}
	d := map[string]string{"name": req.Name, "role": req.Role, "expires": "never"}
	if !req.NeverExpires {
		v := req.ValidFor
		if v == 0 {
			v = DefaultTokenValidity
		}
		exp := now.Add(v)
		rec.ExpiresAt = &exp
		d["expires"] = exp.Format(time.RFC3339)
	}
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertToken(ctx, rec); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionTokenCreate, "token:"+id, now, d)
	})
	if errors.Is(err, store.ErrExists) {
		// The hash is 256 random bits: a taken name is the one conflict that happens.
		err = FieldErrorf(KindConflict, "name", "an operator token named %q exists already (names are unique, revoked tokens' included): choose another name", req.Name)
		r.refuse(ctx, p, audit.ActionTokenCreate, "-", map[string]string{"name": req.Name, "token_role": req.Role}, err)
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("create token %q: %w", req.Name, err)
	}
	return tok, nil
}

// ListTokens returns every operator token, revoked and expired ones included, in order of creation, for an
// administrator or auditor. The records hold hashes, never tokens.
func (r *RA) ListTokens(ctx context.Context, p Principal) ([]*store.Token, error) {
	if err := r.authorize(ctx, p, audit.ActionTokenList, "-", "list operator tokens", RoleAdmin, RoleAuditor); err != nil {
		return nil, err
	}
	toks, err := r.cfg.Store.ListTokens(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	return toks, nil
}

// maxReasonLen bounds a revocation reason: it is free text, kept in the token record and its audit event.
const maxReasonLen = 256

// RevokeToken revokes the operator token named name for reason, for an administrator. From the moment it commits
// the token is refused by this process, and by every other node once its change feed delivers the revocation
// (within a second or two; RA.Changed clears the token cache). Revoking an unknown name is not found, a revoked
// token a conflict.
func (r *RA) RevokeToken(ctx context.Context, p Principal, name, reason string) (*store.Token, error) {
	subject := name
	if !validTokenName(name) {
		// The name may come from a request path: a refusal records only a bounded, quoted form of it.
		subject = fmt.Sprintf("%.64q", name)
	}
	if err := r.authorize(ctx, p, audit.ActionTokenRevoke, subject, "revoke operator tokens", RoleAdmin); err != nil {
		return nil, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > maxReasonLen || strings.ContainsFunc(reason, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		err := FieldErrorf(KindBadRequest, "reason", "say why the token is revoked: 1 to %d characters on one line", maxReasonLen)
		r.refuse(ctx, p, audit.ActionTokenRevoke, "-", map[string]string{"name": subject}, err)
		return nil, err
	}
	t, err := r.cfg.Store.TokenByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		err = errorf(KindNotFound, "no operator token is named %.64q ('keyward token list' shows them)", name)
		r.refuse(ctx, p, audit.ActionTokenRevoke, "-", nil, err)
		return nil, err
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	revoked := func() error {
		return errorf(KindConflict, "operator token %q was revoked already at %s (%s)", name, t.RevokedAt.Format(time.RFC3339), t.RevocationReason)
	}
	if t.RevokedAt != nil {
		err := revoked()
		r.refuse(ctx, p, audit.ActionTokenRevoke, "token:"+t.ID, map[string]string{"name": name}, err)
		return nil, err
	}
	now := r.now()
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.RevokeToken(ctx, t.ID, now, reason); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionTokenRevoke, "token:"+t.ID, now, map[string]string{"name": name, "role": t.Role, "reason": reason})
	})
	if errors.Is(err, store.ErrNotFound) {
		// Revoked by someone else between the read and the transaction.
		err = errorf(KindConflict, "operator token %q was revoked already", name)
		r.refuse(ctx, p, audit.ActionTokenRevoke, "token:"+t.ID, map[string]string{"name": name}, err)
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("revoke token %q: %w", name, err)
	}
	t.RevokedAt, t.RevocationReason = &now, reason
	r.caches.clear(true, false, false)
	return t, nil
}

// Authentication refusals of operator tokens. Each is KindUnauthorized (HTTP 401); the messages tell a holder
// of the token what happened to it, which tells someone who does not hold it nothing.
var (
	// ErrBadToken: an unknown or malformed token.
	ErrBadToken = Sentinel(KindUnauthorized, "unknown operator token")
	// ErrRevokedToken: the token was revoked.
	ErrRevokedToken = Sentinel(KindUnauthorized, "operator token revoked: ask an administrator for a new one")
	// ErrExpiredToken: the token has expired.
	ErrExpiredToken = Sentinel(KindUnauthorized, "operator token expired: ask an administrator for a new one")
)

// tokenRefused is a known token refused (revoked, expired): it says which, for the refusal's audit event, and
// reads as its sentinel to the caller.
type tokenRefused struct {
	name, id string
	err      *Error
}

func (e *tokenRefused) Error() string { return e.err.Error() }
func (e *tokenRefused) Unwrap() error { return e.err }

// operatorPrefix starts the id of a principal authenticated by an operator token; the token's name follows it.
const operatorPrefix = "operator:"

// lastUsedResolution is how stale a token's recorded last use may get: recording it costs a write, so a token
// used every second writes once a minute.
const lastUsedResolution = time.Minute

// cachedToken is what the token cache keeps of a token: enough to refuse it once it expires without a read.
type cachedToken struct {
	p        Principal
	id       string
	expires  *time.Time
	lastUsed time.Time // as recorded, or as last written by this process
}

// Authenticate returns the principal an operator token stands for. A revoked or expired token is refused on
// every request: expiry is checked against the clock on each use, and a revocation clears the cache of every
// process that follows the change feed.
func (r *RA) Authenticate(ctx context.Context, token string) (Principal, error) {
	t, err := r.token(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	return t.p, nil
}

// AuthenticatedToken is a principal authenticated by an operator token, with the token's non-secret id.
type AuthenticatedToken struct {
	Principal Principal
	// ID is the token's id as listings and audit subjects show it ("token:ID"), not the token.
	ID string
}

// AuthenticateToken is Authenticate that also returns the token's id, for a decision that records which
// credential proved who acted (a firmware approval, a ceremony witness).
func (r *RA) AuthenticateToken(ctx context.Context, token string) (AuthenticatedToken, error) {
	t, err := r.token(ctx, token)
	if err != nil {
		return AuthenticatedToken{}, err
	}
	return AuthenticatedToken{Principal: t.p, ID: t.id}, nil
}

func (r *RA) token(ctx context.Context, token string) (*cachedToken, error) {
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 128 {
		return nil, ErrBadToken
	}
	h := HashToken(token)
	key := string(h)
	now := r.now()
	var c *cachedToken
	if r.caches.followed.Load() {
		r.caches.mu.Lock()
		c = r.caches.tokens[key]
		r.caches.mu.Unlock()
	}
	if c == nil {
		t, err := r.cfg.Store.TokenByHash(ctx, h)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrBadToken
		} else if err != nil {
			return nil, wrap(KindUnavailable, err)
		}
		if subtle.ConstantTimeCompare(t.Hash, h) != 1 {
			return nil, ErrBadToken
		}
		if t.RevokedAt != nil {
			return nil, &tokenRefused{name: t.Name, id: t.ID, err: ErrRevokedToken}
		}
		c = &cachedToken{p: Principal{ID: operatorPrefix + t.Name, Role: t.Role}, id: t.ID, expires: t.ExpiresAt}
		if t.LastUsedAt != nil {
			c.lastUsed = *t.LastUsedAt
		}
		if r.caches.followed.Load() {
			r.caches.mu.Lock()
			if r.caches.tokens == nil || len(r.caches.tokens) >= maxTokenCache {
				r.caches.tokens = map[string]*cachedToken{}
			}
			r.caches.tokens[key] = c
			r.caches.mu.Unlock()
		}
	}
	if c.expires != nil && !now.Before(*c.expires) {
		return nil, &tokenRefused{name: strings.TrimPrefix(c.p.ID, operatorPrefix), id: c.id, err: ErrExpiredToken}
	}
	r.touchToken(ctx, c, now)
	return c, nil
}

// touchToken records that token c was used at now, at most once per lastUsedResolution. It changes no decided
// state and appends no audit event (the request it authenticated is audited if it changes anything); a failure
// is logged, not returned: authentication does not depend on it.
func (r *RA) touchToken(ctx context.Context, c *cachedToken, now time.Time) {
	r.caches.mu.Lock()
	due := now.Sub(c.lastUsed) >= lastUsedResolution
	if due {
		c.lastUsed = now
	}
	r.caches.mu.Unlock()
	if !due {
		return
	}
	err := r.counter(ctx, func(tx store.Tx) error { return tx.SetTokenLastUsed(ctx, c.id, now.Truncate(time.Second)) })
	if err != nil {
		r.cfg.Logger.WarnContext(ctx, "record operator token use", "token", c.id, "err", err)
	}
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

// AuthRefusal is an operator API request refused before any decision: at authentication (401) or by the
// route's roles (403).
type AuthRefusal struct {
	// Source is the client's address (host, without the port).
	Source string
	// Method and Route are the request's method and the registered route pattern it matched (never the raw
	// path, which the client chooses).
	Method, Route string
	// Principal is who was refused a route its role does not allow; zero for an authentication refusal.
	Principal Principal
	// Err is why: an authentication error (ErrBadToken, ErrRevokedToken, ErrExpiredToken, a missing token) or
	// the authorisation error.
	Err error
	// Local marks a refusal in a local CLI process, audited at once; a refusal over the network is counted for
	// the aggregated event of its reason.
	Local bool
}

// Reasons of authentication refusals, as AuthRefusalReason names them.
const (
	AuthNoToken       = "no-token"
	AuthUnknownToken  = "unknown-token"
	AuthRevokedToken  = "revoked-token"
	AuthExpiredToken  = "expired-token"
	AuthForbiddenRole = "forbidden-role"
	AuthUnavailable   = "unavailable"
)

// AuthRefusalReason classifies a refusal for counting and for its audit event.
func AuthRefusalReason(a AuthRefusal) string {
	switch {
	case a.Principal.ID != "":
		return AuthForbiddenRole
	case errors.Is(a.Err, ErrRevokedToken):
		return AuthRevokedToken
	case errors.Is(a.Err, ErrExpiredToken):
		return AuthExpiredToken
	case errors.Is(a.Err, ErrBadToken):
		return AuthUnknownToken
	case KindOf(a.Err) == KindUnavailable:
		return AuthUnavailable
	}
	return AuthNoToken
}

// RefuseAuth leaves the trace of a refused operator request: a structured log line naming the source, the route
// and the reason, and, for a known token refused, which token (by name and id, never the token). It is the one
// place such refusals are recorded. A refusal over the network is counted for the aggregated auth.refusals event
// of its reason (CountRefusal, refused.go), not audited alone: the caller decides how many it sends. A refusal
// in a local CLI process (Local) is audited at once (action auth.refuse), since the process ends before any
// aggregated event would be written.
func (r *RA) RefuseAuth(ctx context.Context, a AuthRefusal) {
	reason := AuthRefusalReason(a)
	if reason == AuthUnavailable {
		return // not the caller's doing: the face logs the backend error
	}
	d := map[string]string{"source": a.Source, "route": a.Method + " " + a.Route, "refusal": reason}
	var tr *tokenRefused
	if errors.As(a.Err, &tr) {
		d["token"], d["token_id"] = tr.name, tr.id
	}
	p := a.Principal
	if p.ID == "" {
		p = Principal{ID: "unauthenticated"}
	}
	attrs := []any{"source", a.Source, "method", a.Method, "route", audit.Bound(a.Route, audit.MaxDetail), "refusal", reason,
		"actor", audit.Bound(p.ID, audit.MaxDetail)}
	if tr != nil {
		attrs = append(attrs, "token", tr.name)
	}
	r.cfg.Logger.WarnContext(ctx, "operator API request refused", attrs...)
	if a.Local {
		r.refuse(ctx, p, audit.ActionAuthRefuse, a.Method+" "+a.Route, d, a.Err)
		return
	}
	src := a.Source
	switch {
	case a.Principal.ID != "":
		src += " " + a.Principal.ID
	case tr != nil:
		src += " token:" + tr.name
	}
	r.CountRefusal(src, reason)
}
