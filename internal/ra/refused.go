package ra

// Requests refused before or at authentication are counted, not audited one by one: an unauthenticated caller
// decides how many it sends, and one audit event per request would let anyone grow the trail (and slow every
// enrollment, which appends under the same chain head) at will. The counts are kept per reason and per source
// address and written as one refused event per reason per window (FlushRefusals, every minute while the server
// runs: RunRefusalAudit), so a flood adds a handful of events whatever its size. The server logs each request.

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/audit"
)

// Reasons a request is refused before or at authentication, besides the operator-token ones (AuthNoToken,
// AuthUnknownToken, AuthRevokedToken, AuthExpiredToken, AuthForbiddenRole): the subject of their aggregated
// audit event.
const (
	RefusalNoClientCert      = "no-client-certificate"      // an EST route without a TLS client certificate
	RefusalUnknownClientCert = "unknown-client-certificate" // a client certificate of no known station or device
	RefusalRateLimited       = "rate-limited"               // a source over its rate of refused requests (HTTP 429)
	// RefusalPublic: a public route (EST cacerts) asked for what does not exist, an unknown label for
	// instance. The caller is anonymous, so it is counted like the others rather than audited one by one.
	RefusalPublic = "bad-public-request"
)

// refusalWindow is the aggregation window: one event per reason per window.
const refusalWindow = time.Minute

// maxRefusalSources bounds the sources counted one by one per reason and window, so a flood from many addresses
// cannot grow memory without limit. Past it the counts follow the Space-Saving algorithm (Metwally, Agrawal and
// El Abbadi, 2005): a new source takes the place of the least counted one and inherits its count plus one, so a
// heavy source arriving late is still named among the busiest, with a count that may be over-estimated.
const maxRefusalSources = 1024

// topRefusalSources is how many of the busiest sources an aggregated event names, each cut to 40 bytes so that
// the list fits in one detail value (audit.MaxDetail).
const topRefusalSources = 5

type refusalCounts struct {
	mu       sync.Mutex
	byReason map[string]*reasonCount
}

type reasonCount struct {
	total       int64
	sources     map[string]int64
	evicted     bool // more sources than maxRefusalSources: counts are Space-Saving estimates
	first, last time.Time
}

// CountRefusal counts one request from source (an IP address, with the principal's id for a forbidden role)
// refused for reason, for the next aggregated audit event. It touches no store and takes a mutex only.
func (r *RA) CountRefusal(source, reason string) {
	now := r.now()
	c := &r.refusals
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byReason == nil {
		c.byReason = map[string]*reasonCount{}
	}
	rc := c.byReason[reason]
	if rc == nil {
		rc = &reasonCount{sources: map[string]int64{}, first: now}
		c.byReason[reason] = rc
	}
	rc.total++
	rc.last = now
	if _, ok := rc.sources[source]; ok || len(rc.sources) < maxRefusalSources {
		rc.sources[source]++
		return
	}
	minSrc, minN := "", int64(-1)
	for s, n := range rc.sources {
		if minN < 0 || n < minN {
			minSrc, minN = s, n
		}
	}
	delete(rc.sources, minSrc)
	rc.sources[source] = minN + 1
	rc.evicted = true
}

// FlushRefusals appends one refused audit event (action auth.refusals, subject the reason) for each reason counted
// since the last flush, and starts a new window. It returns the number of events appended. A reason whose event
// cannot be stored is logged with its counts and dropped from the window: the server log then holds them.
func (r *RA) FlushRefusals(ctx context.Context) (int, error) {
	c := &r.refusals
	c.mu.Lock()
	counts := c.byReason
	c.byReason = nil
	c.mu.Unlock()
	reasons := make([]string, 0, len(counts))
	for reason := range counts {
		reasons = append(reasons, reason)
	}
	sort.Strings(reasons)
	n := 0
	var firstErr error
	for _, reason := range reasons {
		rc := counts[reason]
		d := rc.details()
		cause := fmt.Errorf("%d requests refused (%s) from %s sources between %s and %s", rc.total, reason, d["sources"],
			rc.first.Format(time.RFC3339), rc.last.Format(time.RFC3339))
		err := r.appendRefusal(ctx, Principal{ID: "unauthenticated"}, audit.ActionAuthRefusals, reason, d, cause)
		if err != nil {
			r.cfg.Logger.ErrorContext(ctx, "audit of refused requests failed", "reason", reason, "requests", rc.total, "top_sources", d["top_sources"], "err", err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		n++
	}
	return n, firstErr
}

// details are the aggregated event's details: counts, the window, and the busiest sources.
func (rc *reasonCount) details() map[string]string {
	type src struct {
		addr string
		n    int64
	}
	list := make([]src, 0, len(rc.sources))
	for a, n := range rc.sources {
		list = append(list, src{a, n})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].n != list[j].n {
			return list[i].n > list[j].n
		}
		return list[i].addr < list[j].addr
	})
	var top []string
	for i := 0; i < len(list) && i < topRefusalSources; i++ {
		top = append(top, audit.Bound(list[i].addr, 40)+"="+strconv.FormatInt(list[i].n, 10))
	}
	sources := strconv.Itoa(len(rc.sources))
	if rc.evicted {
		sources = "more than " + sources
	}
	d := map[string]string{
		"requests":    strconv.FormatInt(rc.total, 10),
		"sources":     sources,
		"first":       rc.first.Format(time.RFC3339Nano),
		"last":        rc.last.Format(time.RFC3339Nano),
		"top_sources": strings.Join(top, " "),
	}
	if rc.evicted {
		d["top_sources_estimated"] = "true" // Space-Saving upper bounds, see maxRefusalSources
	}
	return d
}

// RunRefusalAudit flushes the refusal counts every window until ctx ends, and once more then (with a short
// deadline of its own), so that a server that stops loses no count.
func (r *RA) RunRefusalAudit(ctx context.Context) {
	t := time.NewTicker(refusalWindow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = r.FlushRefusals(fctx)
			cancel()
			return
		case <-t.C:
			_, _ = r.FlushRefusals(ctx)
		}
	}
}
