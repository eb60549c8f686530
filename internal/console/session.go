package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/ra"
)

// Cookie names. The __Host- prefix makes browsers refuse the cookie unless it is Secure, set over HTTPS, for
// path / and without a Domain, so no other host or path can plant or shadow it.
const (
	SessionCookie = "__Host-keyward-console"
	LoginCookie   = "__Host-keyward-login" // the sign-in form's CSRF token, before there is a session
)

// maxSessions bounds the sessions held in memory; signing in past it ends the oldest.
const maxSessions = 10000

// loginTTL is how long a sign-in form may wait before it is submitted.
const loginTTL = 15 * time.Minute

// session is one signed-in operator. It holds the principal and the name and id of the token it signed in with,
// never the token.
type session struct {
	key     [32]byte // SHA-256 of the session id: the id itself is only in the browser's cookie
	csrf    string
	p       ra.Principal
	token   string // the token's name, to re-check it on every request
	tokenID string
	created time.Time
	seen    time.Time
	expires time.Time // when it ends if unused: min(seen+idle, created+lifetime)
}

// sessions are the console's sessions on this node, in memory: a restart signs everyone out.
type sessions struct {
	idle, lifetime time.Duration
	mu             sync.Mutex
	m              map[[32]byte]*session
}

func newSessions(idle, lifetime time.Duration) *sessions {
	return &sessions{idle: idle, lifetime: lifetime, m: map[[32]byte]*session{}}
}

// random returns n bytes from crypto/rand as unpadded base64url.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for p and returns it with its id, which goes into the cookie only.
func (ss *sessions) create(p ra.Principal, tokenName, tokenID string, now time.Time) (*session, string) {
	id := random(32)
	s := &session{key: sha256.Sum256([]byte(id)), csrf: random(32), p: p, token: tokenName, tokenID: tokenID, created: now, seen: now}
	s.expires = ss.expiry(s)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= maxSessions {
		ss.prune(now)
	}
	for len(ss.m) >= maxSessions {
		var oldest *session
		for _, o := range ss.m {
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
		delete(ss.m, oldest.key)
	}
	ss.m[s.key] = s
	return s, id
}

func (ss *sessions) expiry(s *session) time.Time {
	e := s.seen.Add(ss.idle)
	if hard := s.created.Add(ss.lifetime); hard.Before(e) {
		e = hard
	}
	return e
}

// errExpired is why a request with a session cookie of an ended session has no session.
var errExpired = errors.New("the console session expired or was ended")

// get returns the live session of r's cookie and marks it used; with no cookie, nil and nil; with the cookie of
// an unknown or expired session, nil and errExpired (the session is then forgotten).
func (ss *sessions) get(r *http.Request, now time.Time) (*session, error) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return nil, nil
	}
	key := sha256.Sum256([]byte(ck.Value))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[key]
	if s == nil {
		return nil, errExpired
	}
	if !now.Before(s.expires) {
		delete(ss.m, key)
		return nil, errExpired
	}
	s.seen = now
	s.expires = ss.expiry(s)
	return s, nil
}

func (ss *sessions) end(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, s.key)
}

// prune forgets expired sessions; ss.mu is held.
func (ss *sessions) prune(now time.Time) {
	for k, s := range ss.m {
		if !now.Before(s.expires) {
			delete(ss.m, k)
		}
	}
}

// cookie returns a console cookie: HttpOnly (no script reads it), Secure (HTTPS only), SameSite=Strict (no
// other site's page sends it along), for the whole host as the __Host- prefix requires.
func cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
}
