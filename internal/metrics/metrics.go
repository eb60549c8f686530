// Package metrics exposes Keyward's operational metrics in the Prometheus text format (/metrics): what the
// server, the registration authority, the CA custodian and the store observe as they work, and what is read at
// scrape time (CA expiry, the audit head and checkpoint, CRL freshness, the database pools). The packages that
// observe do not import Prometheus: each offers a small observer hook that a Metrics value fills.
package metrics

import (
	"context"
	"crypto/x509"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyward/keyward/internal/store"
)

// Metrics is one process's metrics registry. It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	decisions    *prometheus.CounterVec
	refusals     *prometheus.CounterVec
	signDuration *prometheus.HistogramVec
	signErrors   *prometheus.CounterVec
	commit       prometheus.Histogram
	groupSize    prometheus.Histogram
	rateLimited  *prometheus.CounterVec
	ocspSigned   *prometheus.CounterVec

	mu      sync.Mutex
	crls    map[crlKey]CRLState
	ocsp    map[string]OCSPState   // by CA id
	filters map[string]FilterState // by scope
}

// OCSPState is the newest OCSP response this process signed for one CA.
type OCSPState struct {
	ThisUpdate time.Time
	Bytes      int
}

// FilterState is the newest signed revocation filter of one scope ("dev", "dev/demo-implant") that this
// process serves.
type FilterState struct {
	Version              int64
	IssuedAt, NextUpdate time.Time
	Bytes                int
}

type crlKey struct {
	ca    string
	delta bool
}

// CRLState is what the publisher last published or found current for one CA's complete or delta CRL.
type CRLState struct {
	ThisUpdate, NextUpdate time.Time
	Bytes, Entries         int
}

// New returns a registry with Keyward's metrics and the Go runtime's and process's own.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), crls: map[crlKey]CRLState{}, ocsp: map[string]OCSPState{}, filters: map[string]FilterState{}}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyward_http_requests_total",
		Help: "HTTP requests served, by route (the matched pattern), method and status code."}, []string{"route", "method", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "keyward_http_request_duration_seconds",
		Help:    "Time from the request's arrival to the end of its response, by route and method.",
		Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"route", "method"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyward_issuances_total",
		Help: "Certificates issued and recorded, by action (cert.issue, est.enroll, est.reenroll, ...), profile and issuing CA."}, []string{"action", "profile", "ca"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyward_refusals_total",
		Help: "Requests refused and audited, by action and reason (the error kind: bad-request, forbidden, conflict, ...)."}, []string{"action", "reason"})
	m.signDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "keyward_sign_duration_seconds",
		Help:    "Signatures made with CA and service keys, by keystore backend (soft, pkcs11) and key purpose.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}}, []string{"backend", "purpose"})
	m.signErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyward_sign_errors_total",
		Help: "Signatures that failed, by keystore backend and key purpose."}, []string{"backend", "purpose"})
	m.commit = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keyward_db_commit_duration_seconds",
		Help:    "Duration of each group-commit transaction: the requests' writes, audit events and the durable commit.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1}})
	m.groupSize = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keyward_db_commit_group_requests",
		Help:    "Requests committed together in one group-commit transaction.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyward_rate_limited_requests_total",
		Help: "Requests answered 429 because their source made too many refused requests, by listener face (api, est)."}, []string{"face"})
	m.ocspSigned = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyward_ocsp_responses_signed_total",
		Help: "OCSP responses signed (not served from the responder's cache), by CA id."}, []string{"ca"})
	for _, c := range []prometheus.Collector{m.httpRequests, m.httpDuration, m.decisions, m.refusals, m.signDuration, m.signErrors, m.commit, m.groupSize, m.rateLimited, m.ocspSigned,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Register adds a collector (the scrape-time State collector).
func (m *Metrics) Register(c prometheus.Collector) { m.reg.MustRegister(c) }

// HTTP records one request (server access log).
func (m *Metrics) HTTP(route, method string, code int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

// RateLimited records a 429 on face ("api" or "est").
func (m *Metrics) RateLimited(face string) { m.rateLimited.WithLabelValues(face).Inc() }

// Issued records a certificate issued and committed (ra.Observer).
func (m *Metrics) Issued(action, profile, ca string) {
	m.decisions.WithLabelValues(action, profile, ca).Inc()
}

// Refused records an audited refusal (ra.Observer).
func (m *Metrics) Refused(action, reason string) { m.refusals.WithLabelValues(action, reason).Inc() }

// Committed records a group commit of n requests that took d (ra.Observer).
func (m *Metrics) Committed(n int, d time.Duration) {
	m.commit.Observe(d.Seconds())
	m.groupSize.Observe(float64(n))
}

// Signed records one signature by a key of purpose in backend (ca.SignObserver).
func (m *Metrics) Signed(backend, purpose string, d time.Duration, err error) {
	if err != nil {
		m.signErrors.WithLabelValues(backend, purpose).Inc()
		return
	}
	m.signDuration.WithLabelValues(backend, purpose).Observe(d.Seconds())
}

// CRL records what the publisher last published or found current for CA ca.
func (m *Metrics) CRL(ca string, delta bool, s CRLState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crls[crlKey{ca, delta}] = s
}

// OCSP records an OCSP response the responder signed for CA ca (revocation.Responder.Observe).
func (m *Metrics) OCSP(ca string, thisUpdate time.Time, bytes int) {
	m.ocspSigned.WithLabelValues(ca).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.ocsp[ca]; !ok || !thisUpdate.Before(cur.ThisUpdate) {
		m.ocsp[ca] = OCSPState{ThisUpdate: thisUpdate, Bytes: bytes}
	}
}

// Filter records the revocation filter of scope that the public listener serves now.
func (m *Metrics) Filter(scope string, s FilterState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.filters[scope] = s
}

// Source is what State reads from the store at scrape time.
type Source interface {
	ListCAs(ctx context.Context) ([]*store.CA, error)
	AuditHead(ctx context.Context) (int64, []byte, error)
	LatestCheckpoint(ctx context.Context) (*store.Checkpoint, error)
	// CountExpiring counts the valid certificates of profile with after < NotAfter <= before.
	CountExpiring(ctx context.Context, profile string, after, before time.Time) (int64, error)
}

// RenewalCacheTTL is how long State keeps the per-profile counts of certificates in their renewal window: the
// count is a range scan of the not_after index, at most once a minute however often Prometheus scrapes.
const RenewalCacheTTL = 60 * time.Second

// State reads, at each scrape, what is not observed as it happens: every CA's remaining validity, the audit
// head and the age of the newest checkpoint, the CRLs', OCSP responses' and filters' age, the certificates in
// their profile's renewal window, the database pools, and what the store keeps in memory (store.Warmer).
type State struct {
	m     *Metrics
	st    Source
	pools func() []store.PoolStats
	now   func() time.Time

	caNotAfter, auditHead, checkpointAge, checkpointSize, crlAge, crlNext, crlBytes, crlEntries *prometheus.Desc
	poolOpen, poolInUse, poolWaits, poolWaitSeconds                                             *prometheus.Desc
	renewalDue, ocspAge, ocspBytes, filterAge, filterNext, filterBytes, filterVersion           *prometheus.Desc
	keyFilterBytes, keyFilterKeys                                                               *prometheus.Desc

	mu      sync.Mutex
	certs   map[string]certCache // CA id -> its parsed NotAfter, by the DER it was parsed from
	windows map[string]time.Duration
	renewal map[string]int64 // profile -> certificates in its renewal window, as of renewalAt
	renewAt time.Time
}

type certCache struct {
	der      string
	notAfter time.Time
}

// NewState returns the scrape-time collector over st; pools, if not nil, reports the database pools.
func (m *Metrics) NewState(st Source, pools func() []store.PoolStats, now func() time.Time) *State {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &State{m: m, st: st, pools: pools, now: now, certs: map[string]certCache{},
		caNotAfter:      d("keyward_ca_expiry_seconds", "Seconds until the CA certificate's notAfter (negative once expired), by CA id and status.", "ca", "status"),
		auditHead:       d("keyward_audit_head_sequence", "Sequence number of the newest audit event."),
		checkpointAge:   d("keyward_audit_checkpoint_age_seconds", "Seconds since the newest signed audit checkpoint."),
		checkpointSize:  d("keyward_audit_checkpoint_size", "Events covered by the newest signed audit checkpoint."),
		crlAge:          d("keyward_crl_age_seconds", "Seconds since the thisUpdate of the CA's newest complete or delta CRL this process published or checked.", "ca", "kind"),
		crlNext:         d("keyward_crl_next_update_seconds", "Seconds until the nextUpdate of the CA's newest CRL (negative: stale).", "ca", "kind"),
		crlBytes:        d("keyward_crl_bytes", "Size of the CA's newest CRL in bytes.", "ca", "kind"),
		crlEntries:      d("keyward_crl_entries", "Revoked entries in the CA's newest CRL.", "ca", "kind"),
		poolOpen:        d("keyward_db_pool_open_connections", "Open database connections, by pool.", "pool"),
		poolInUse:       d("keyward_db_pool_in_use_connections", "Database connections in use, by pool.", "pool"),
		poolWaits:       d("keyward_db_pool_waits_total", "Times a request waited for a database connection, by pool.", "pool"),
		poolWaitSeconds: d("keyward_db_pool_wait_seconds_total", "Total time requests waited for a database connection, by pool.", "pool"),
		renewalDue:      d("keyward_certificates_in_renewal_window", "Valid certificates whose notAfter is within their profile's renewal window (the profile's renewal_window fraction of its validity) and not past, by profile; counted at most once a minute.", "profile"),
		ocspAge:         d("keyward_ocsp_response_age_seconds", "Seconds since the thisUpdate of the newest OCSP response this process signed for the CA.", "ca"),
		ocspBytes:       d("keyward_ocsp_response_bytes", "Size of the newest OCSP response this process signed for the CA, in bytes.", "ca"),
		filterAge:       d("keyward_filter_age_seconds", "Seconds since the newest served revocation filter of the scope (environment or environment/product line) was issued.", "scope"),
		filterNext:      d("keyward_filter_next_update_seconds", "Seconds until the nextUpdate of the served revocation filter of the scope (negative: stale).", "scope"),
		filterBytes:     d("keyward_filter_bytes", "Size of the served revocation filter of the scope, in bytes.", "scope"),
		filterVersion:   d("keyward_filter_version", "Version of the served revocation filter of the scope.", "scope"),
		keyFilterBytes:  d("keyward_key_filter_bytes", "Memory of the SQLite store's filter of certified keys, in bytes (0 until it is built)."),
		keyFilterKeys:   d("keyward_key_filter_keys", "Keys in the SQLite store's filter of certified keys."),
	}
}

// SetRenewalWindows sets the renewal window of each profile (its renewal_window fraction of its validity) for
// keyward_certificates_in_renewal_window. Call it before the collector is registered.
func (s *State) SetRenewalWindows(w map[string]time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.windows = w
	s.renewal, s.renewAt = nil, time.Time{}
}

// renewalCounts returns the per-profile counts, from the cache while it is younger than RenewalCacheTTL.
// A profile whose count fails is left out (and the next scrape tries again).
func (s *State) renewalCounts(ctx context.Context, now time.Time) map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.renewal != nil && now.Sub(s.renewAt) < RenewalCacheTTL && !now.Before(s.renewAt) {
		return s.renewal
	}
	out := make(map[string]int64, len(s.windows))
	complete := true
	for name, w := range s.windows {
		n, err := s.st.CountExpiring(ctx, name, now, now.Add(w))
		if err != nil {
			complete = false
			continue
		}
		out[name] = n
	}
	if complete {
		s.renewal, s.renewAt = out, now
	}
	return out
}

// Describe implements prometheus.Collector.
func (s *State) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.caNotAfter, s.auditHead, s.checkpointAge, s.checkpointSize, s.crlAge, s.crlNext, s.crlBytes, s.crlEntries,
		s.poolOpen, s.poolInUse, s.poolWaits, s.poolWaitSeconds, s.renewalDue, s.ocspAge, s.ocspBytes, s.filterAge, s.filterNext, s.filterBytes, s.filterVersion, s.keyFilterBytes, s.keyFilterKeys} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A read that fails leaves its metrics out of this scrape (and
// /readyz says why).
func (s *State) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := s.now()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if cas, err := s.st.ListCAs(ctx); err == nil {
		for _, c := range cas {
			if na, ok := s.notAfter(c); ok {
				g(s.caNotAfter, na.Sub(now).Seconds(), c.ID, c.Status)
			}
		}
	}
	if seq, _, err := s.st.AuditHead(ctx); err == nil {
		g(s.auditHead, float64(seq))
	}
	if cp, err := s.st.LatestCheckpoint(ctx); err == nil {
		g(s.checkpointAge, now.Sub(cp.CreatedAt).Seconds())
		g(s.checkpointSize, float64(cp.Size))
	}
	for name, n := range s.renewalCounts(ctx, now) {
		g(s.renewalDue, float64(n), name)
	}
	s.m.mu.Lock()
	crls := make(map[crlKey]CRLState, len(s.m.crls))
	for k, v := range s.m.crls {
		crls[k] = v
	}
	ocsps := make(map[string]OCSPState, len(s.m.ocsp))
	for k, v := range s.m.ocsp {
		ocsps[k] = v
	}
	filters := make(map[string]FilterState, len(s.m.filters))
	for k, v := range s.m.filters {
		filters[k] = v
	}
	s.m.mu.Unlock()
	for ca, v := range ocsps {
		g(s.ocspAge, now.Sub(v.ThisUpdate).Seconds(), ca)
		g(s.ocspBytes, float64(v.Bytes), ca)
	}
	for scope, v := range filters {
		g(s.filterAge, now.Sub(v.IssuedAt).Seconds(), scope)
		g(s.filterNext, v.NextUpdate.Sub(now).Seconds(), scope)
		g(s.filterBytes, float64(v.Bytes), scope)
		g(s.filterVersion, float64(v.Version), scope)
	}
	for k, v := range crls {
		kind := "complete"
		if k.delta {
			kind = "delta"
		}
		g(s.crlAge, now.Sub(v.ThisUpdate).Seconds(), k.ca, kind)
		g(s.crlNext, v.NextUpdate.Sub(now).Seconds(), k.ca, kind)
		g(s.crlBytes, float64(v.Bytes), k.ca, kind)
		g(s.crlEntries, float64(v.Entries), k.ca, kind)
	}
	if w, ok := s.st.(store.Warmer); ok {
		ws := w.WarmStats()
		g(s.keyFilterBytes, float64(ws.Bytes))
		g(s.keyFilterKeys, float64(ws.Keys))
	}
	if s.pools != nil {
		for _, p := range s.pools() {
			g(s.poolOpen, float64(p.Open), p.Name)
			g(s.poolInUse, float64(p.InUse), p.Name)
			ch <- prometheus.MustNewConstMetric(s.poolWaits, prometheus.CounterValue, float64(p.Waits), p.Name)
			ch <- prometheus.MustNewConstMetric(s.poolWaitSeconds, prometheus.CounterValue, p.WaitTime.Seconds(), p.Name)
		}
	}
}

// notAfter returns CA c's notAfter, parsing its certificate once per DER.
func (s *State) notAfter(c *store.CA) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cc, ok := s.certs[c.ID]; ok && cc.der == string(c.CertDER) {
		return cc.notAfter, true
	}
	cert, err := x509.ParseCertificate(c.CertDER)
	if err != nil {
		return time.Time{}, false
	}
	s.certs[c.ID] = certCache{der: string(c.CertDER), notAfter: cert.NotAfter}
	return cert.NotAfter, true
}
