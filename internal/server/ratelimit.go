package server

// The per-source rate limit of refused requests. Each source address (the TCP peer: the server trusts no
// forwarding header) has a token bucket of Rate.N tokens that refills at N per Rate.Per; every request refused
// before or at authentication (401, 403) takes a token. A source whose bucket is empty is answered 429 Too Many
// Requests with Retry-After (RFC 6585 4, RFC 9110 10.2.3) on every authenticated route, before its credentials
// are checked, until a token has refilled: a flood of bad credentials costs a map lookup per request, while
// callers that authenticate never spend a token, however fast they enroll.

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/ra"
)

// Rate is a number of refused requests per period allowed to one source; the zero Rate sets no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// DefaultRate is the default of 'keyward serve --rate-limit': ten refused requests per second from one address
// (a burst of ten), far above a misconfigured client's retries and far below a flood.
var DefaultRate = Rate{N: 10, Per: time.Second}

// String returns the rate as ParseRate reads it.
func (r Rate) String() string {
	if r.N <= 0 {
		return "off"
	}
	for _, u := range rateUnits {
		if r.Per == u.per {
			return strconv.Itoa(r.N) + "/" + u.name
		}
	}
	return fmt.Sprintf("%d/%s", r.N, r.Per)
}

var rateUnits = []struct {
	name string
	per  time.Duration
}{{"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}

// maxRate bounds N: a larger number is no limit in practice, and bounds the bucket's arithmetic.
const maxRate = 1_000_000

// ParseRate reads a rate limit: "N/s", "N/m" or "N/h" (N from 1 to 1000000 refused requests per second,
// minute or hour), or "off" (or "0") for none.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" {
		return Rate{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate limit %.40q: write N/s, N/m or N/h (refused requests per second, minute or hour from one address), or off", s)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > maxRate {
		return Rate{}, fmt.Errorf("rate limit %.40q: the count must be a whole number from 1 to %d (or write off)", s, maxRate)
	}
	for _, u := range rateUnits {
		if unit == u.name {
			return Rate{N: n, Per: u.per}, nil
		}
	}
	return Rate{}, fmt.Errorf("rate limit %.40q: the period must be s, m or h", s)
}

// maxLimitedSources bounds the sources the limiter tracks. Past it, sources whose bucket is full are forgotten;
// if that frees nothing, a new source goes untracked (served, and still counted in the audit) until it does.
const maxLimitedSources = 1 << 16

// limiterRef holds the server's limiter, which SetRateLimit replaces while requests are served.
type limiterRef struct{ p atomic.Pointer[limiter] }

func (r *limiterRef) get() *limiter { return r.p.Load() }

// SetRateLimit makes r the rate limit of refused requests from now on (a configuration reload). Sources start
// afresh with a full bucket.
func (s *Server) SetRateLimit(r Rate) { s.limit.p.Store(newLimiter(r, s.ra.Now)) }

type limiter struct {
	rate    Rate
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(r Rate, now func() time.Time) *limiter {
	if r.N <= 0 || r.Per <= 0 {
		return nil
	}
	return &limiter{rate: r, now: now, buckets: map[string]*bucket{}}
}

// refill brings b up to now; callers hold l.mu.
func (l *limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = math.Min(float64(l.rate.N), b.tokens+el.Seconds()*float64(l.rate.N)/l.rate.Per.Seconds())
		b.at = now
	}
}

// wait returns how long source must wait before it is served again, or 0 if it may be served now.
func (l *limiter) wait(source string) time.Duration {
	if l == nil {
		return 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[source]
	if b == nil {
		return 0
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(l.rate.Per) / float64(l.rate.N))
}

// charge takes a token from source for a refused request.
func (l *limiter) charge(source string) {
	if l == nil {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[source]
	if b == nil {
		if len(l.buckets) >= maxLimitedSources {
			for k, v := range l.buckets {
				if l.refill(v, now); v.tokens >= float64(l.rate.N) {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= maxLimitedSources {
				return
			}
		}
		b = &bucket{tokens: float64(l.rate.N), at: now}
		l.buckets[source] = b
	}
	l.refill(b, now)
	b.tokens = math.Max(0, b.tokens-1)
}

// sourceOf is the address a request's limit and refusal counts are kept for: the TCP peer's IP address.
func sourceOf(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// limited answers 429 with Retry-After, counted for the aggregated audit event, if the request's source is over
// its rate of refused requests; it reports whether it did.
func (s *Server) limited(w http.ResponseWriter, r *http.Request, text bool) bool {
	lim := s.limit.get()
	wait := lim.wait(sourceOf(r))
	if wait <= 0 {
		return false
	}
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	s.ra.CountRefusal(sourceOf(r), ra.RefusalRateLimited)
	if s.metrics != nil {
		face := "api"
		if text {
			face = "est"
		}
		s.metrics.RateLimited(face)
	}
	s.log.DebugContext(r.Context(), "request refused", "reason", ra.RefusalRateLimited, "remote", sourceOf(r), "method", r.Method, "path", boundPath(r))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	msg := fmt.Sprintf("too many refused requests from %s (limit %s): retry after %d s", sourceOf(r), lim.rate, secs)
	if text {
		writeText(w, http.StatusTooManyRequests, msg)
	} else {
		writeError(w, http.StatusTooManyRequests, msg)
	}
	return true
}
