package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/est"
)

// strangerCert is a self-signed client certificate of no Keyward CA.
func strangerCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	k := p256Key(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// TestUnauthenticatedFlood sends 5,000 requests refused before authentication to a running server over TLS:
// EST without a client certificate, EST with an unknown one (and a 30 KB label), the public EST cacerts of a
// 30 KB label that does not exist, and operator calls with a bad token. They add at most a handful of audit events, which count every one of them.
func TestUnauthenticatedFlood(t *testing.T) {
	ts := startWith(t, writeConfig(estConfig))
	before := len(ts.events(t))
	stranger := strangerCert(t, "DEMO-\x00"+strings.Repeat("X", 1000))
	longLabel := strings.Repeat("L", 30<<10)
	csr := csrB64(t, p256Key(t), "DEMO-00000001")
	kinds := []struct {
		reason string
		n      int
		status int
		do     func(c *http.Client) (*http.Response, error)
	}{
		{ra.RefusalNoClientCert, 1500, 401, func(c *http.Client) (*http.Response, error) {
			return c.Post(ts.url+enrollPath("demo-implant.dev"), "application/pkcs10", bytes.NewReader(csr))
		}},
		{ra.RefusalUnknownClientCert, 1500, 401, func(c *http.Client) (*http.Response, error) {
			return c.Post(ts.url+enrollPath(longLabel), "application/pkcs10", bytes.NewReader(csr))
		}},
		{ra.RefusalPublic, 500, 404, func(c *http.Client) (*http.Response, error) {
			return c.Get(ts.url + "/.well-known/est/" + longLabel + "/cacerts")
		}},
		{ra.AuthUnknownToken, 1500, 401, func(c *http.Client) (*http.Response, error) {
			req, _ := http.NewRequest("GET", ts.url+"/api/v1/cas", nil)
			req.Header.Set("Authorization", "Bearer kwt_not-a-token")
			return c.Do(req)
		}},
	}
	var wrong atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, k := range kinds {
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var c *http.Client
				if k.reason == ra.RefusalUnknownClientCert {
					c = ts.mtls(&stranger)
				} else {
					c = ts.mtls(nil)
				}
				for i := 0; i < k.n/4; i++ {
					resp, err := k.do(c)
					if err != nil {
						wrong.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != k.status {
						wrong.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("5,000 refused requests in %v", time.Since(start))
	if n := wrong.Load(); n != 0 {
		t.Fatalf("%d requests were not answered 401 (404 for cacerts)", n)
	}
	if err := ts.shutdown(); err != nil { // the last window is flushed when the server stops
		t.Fatal(err)
	}
	evs := ts.events(t)[before:]
	if len(evs) > 8 { // one per reason, two if a minute boundary split the flood
		t.Fatalf("5,000 refused requests added %d audit events, want at most 8", len(evs))
	}
	counted := map[string]int{}
	for _, e := range evs {
		if e.Action != audit.ActionAuthRefusals || e.Outcome != audit.OutcomeRefused {
			t.Fatalf("unexpected event %+v", e)
		}
		n, _ := strconv.Atoi(e.Details["requests"])
		counted[e.Subject] += n
		for k, v := range e.Details {
			if len(v) > 2*audit.MaxDetail || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				t.Fatalf("detail %s of %s is %d bytes or not printable: %.80q", k, e.Subject, len(v), v)
			}
		}
		if !strings.Contains(e.Details["top_sources"], "127.0.0.1=") {
			t.Errorf("event %s does not name the source: %v", e.Subject, e.Details)
		}
	}
	for _, k := range kinds {
		if counted[k.reason] != k.n {
			t.Errorf("reason %s: audit counts %d requests, want %d", k.reason, counted[k.reason], k.n)
		}
	}
}

// TestRateLimit: past its rate of refused requests a source gets 429 with Retry-After on every authenticated
// route, its own valid credentials included, until the bucket refills; authenticated traffic never spends the
// budget, and the 429s are counted in the aggregated audit event.
func TestRateLimit(t *testing.T) {
	// Five refusals per 10 s: a slow machine refills at most a token or two while the test runs.
	ts := startDeps(t, writeConfig(estConfig), Deps{RateLimit: Rate{N: 5, Per: 10 * time.Second}})
	before := len(ts.events(t))
	// Authenticated requests, however many, are never limited.
	for i := 0; i < 50; i++ {
		if code, body := ts.do(t, "GET", "/api/v1/cas", ts.admin, nil); code != 200 {
			t.Fatalf("authenticated request %d: %d %s", i, code, body)
		}
	}
	c := ts.mtls(nil)
	codes := map[int]int{}
	var retry string
	for i := 0; i < 40; i++ {
		resp, err := c.Post(ts.url+enrollPath("demo-implant.dev"), "application/pkcs10", strings.NewReader("MA=="))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retry = resp.Header.Get("Retry-After")
		}
	}
	if codes[401] < 5 || codes[401] > 8 || codes[429] < 30 {
		t.Fatalf("status counts %v, want about 5 × 401 then 429", codes)
	}
	secs, err := strconv.Atoi(retry)
	if err != nil || secs < 1 || secs > 2 {
		t.Fatalf("Retry-After %q, want 1 or 2 (seconds until a token refills at 0.5/s)", retry)
	}
	// The limited source is refused even with a valid token: its credentials are not checked at all.
	if code, body := ts.do(t, "GET", "/api/v1/cas", ts.admin, nil); code != http.StatusTooManyRequests || !strings.Contains(string(body), "retry after") {
		t.Fatalf("limited source with a valid token: %d %s, want 429", code, body)
	}
	// Public routes stay open.
	if code, _ := ts.do(t, "GET", "/healthz", "", nil); code != 200 {
		t.Fatalf("healthz from a limited source: %d", code)
	}
	time.Sleep(time.Duration(secs)*time.Second + 100*time.Millisecond)
	if code, body := ts.do(t, "GET", "/api/v1/cas", ts.admin, nil); code != 200 {
		t.Fatalf("after Retry-After: %d %s", code, body)
	}
	if err := ts.shutdown(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range ts.events(t)[before:] {
		got[e.Subject] = e.Details["requests"]
	}
	if got[ra.RefusalRateLimited] != strconv.Itoa(codes[429]+1) || got[ra.RefusalNoClientCert] != strconv.Itoa(codes[401]) {
		t.Fatalf("aggregated events %v, want rate-limited=%d no-client-certificate=%d", got, codes[429]+1, codes[401])
	}
}

// TestHostileCSRBounded: an authenticated station's CSR with a 60 KB common name, or a NUL byte in it, is refused
// and audited with every stored string escaped and bounded.
func TestHostileCSRBounded(t *testing.T) {
	ts := startWith(t, writeConfig(estConfig))
	_, station := addStation(t, ts, "dev", []string{"demo-implant"}, 0)
	sc := ts.mtls(&station)
	for _, cn := range []string{strings.Repeat("D", 60<<10), "DEMO-\x00000001", "DEMO\n-1\\x00"} {
		der, err := est.NewCSR(p256Key(t), cn)
		if err != nil {
			t.Fatal(err)
		}
		before := len(ts.events(t))
		code, body, _ := ts.post(t, sc, enrollPath("demo-implant.dev"), "application/pkcs10", bytes.NewReader(est.EncodeBase64(der)), nil)
		if code != http.StatusBadRequest {
			t.Fatalf("CN %.20q: %d %.200s, want 400", cn, code, body)
		}
		evs := ts.events(t)[before:]
		if len(evs) != 1 || evs[0].Outcome != audit.OutcomeRefused {
			t.Fatalf("CN %.20q: %d events, want one refusal", cn, len(evs))
		}
		e := evs[0]
		fields := map[string]string{"actor": e.Actor, "subject": e.Subject}
		for k, v := range e.Details {
			fields["details."+k] = v
		}
		size := 0
		for k, v := range fields {
			limit := audit.MaxDetail
			if k == "details.reason" {
				limit = 2 * audit.MaxDetail
			}
			if len(v) > limit || !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\n") {
				t.Errorf("CN %.20q: %s is %d bytes (limit %d) or not escaped: %.80q", cn, k, len(v), limit, v)
			}
			size += len(v)
		}
		if strings.Contains(cn, "\x00") && !strings.Contains(e.Subject, `\x00`) {
			t.Errorf("NUL not escaped in the subject: %q", e.Subject)
		}
		if size > 2048 {
			t.Errorf("CN %.20q: the refusal stores %d bytes", cn, size)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"10/s": {10, time.Second}, "600/m": {600, time.Minute}, "5/h": {5, time.Hour}, "off": {}, "0": {}, " 3/s ": {3, time.Second}} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "10", "10/d", "-1/s", "0/s", "x/s", "1000001/s", "10/S", "1e3/s"} {
		if _, err := ParseRate(bad); err == nil || !strings.Contains(err.Error(), "rate limit") {
			t.Errorf("ParseRate(%q): %v, want an error naming the rule", bad, err)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"10/s", "600/m", "off", "1/h", "/s", "9999999999999999999/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if r.N < 0 || r.N > maxRate || (r.N > 0 && r.Per <= 0) {
			t.Fatalf("ParseRate(%q) = %+v", s, r)
		}
		back, err := ParseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRate(%q).String() = %q does not read back: %v %v", s, r.String(), back, err)
		}
	})
}

// TestLimiterBucket: a source spends one token per refusal, waits (1 - tokens) / rate for the next, and sources
// past the bound are not tracked; idle full buckets are forgotten to make room.
func TestLimiterBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(Rate{N: 2, Per: time.Second}, func() time.Time { return now })
	if l.wait("a") != 0 {
		t.Fatal("an unknown source waits")
	}
	l.charge("a")
	if l.wait("a") != 0 {
		t.Fatal("one refusal of two allowed makes the source wait")
	}
	l.charge("a")
	if w := l.wait("a"); w != 500*time.Millisecond {
		t.Fatalf("wait %v, want 500ms (one token at 2/s)", w)
	}
	now = now.Add(250 * time.Millisecond)
	if w := l.wait("a"); w != 250*time.Millisecond {
		t.Fatalf("wait %v after 250ms, want 250ms", w)
	}
	now = now.Add(250 * time.Millisecond)
	if l.wait("a") != 0 {
		t.Fatal("still waiting once a token refilled")
	}
	if newLimiter(Rate{}, time.Now) != nil {
		t.Fatal("the zero rate limits")
	}
	var none *limiter
	none.charge("x")
	if none.wait("x") != 0 {
		t.Fatal("no limiter made a source wait")
	}

	l = newLimiter(Rate{N: 1, Per: time.Hour}, func() time.Time { return now })
	for i := 0; i < maxLimitedSources; i++ {
		l.charge(strconv.Itoa(i))
	}
	l.charge("one-too-many")
	if l.wait("one-too-many") != 0 || len(l.buckets) != maxLimitedSources {
		t.Fatalf("%d sources tracked past the bound", len(l.buckets))
	}
	now = now.Add(2 * time.Hour) // every bucket full again: forgotten when room is needed
	l.charge("newcomer")
	if len(l.buckets) != 1 || l.wait("newcomer") == 0 {
		t.Fatalf("%d sources after the sweep; newcomer waits %v", len(l.buckets), l.wait("newcomer"))
	}
}
