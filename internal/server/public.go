package server

// The public listener: plain HTTP serving only signed public objects, as RFC 5280 practice expects (CRLs,
// OCSP responses, CA certificates and revocation filters are signed, and fetching them over TLS would make
// revocation checking depend on itself; RFC 5280 8, RFC 6960 A.1). It serves nothing that needs
// authentication and accepts no state change: GET and HEAD for objects, and GET and POST for OCSP.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
)

// maxOCSPRequest bounds an OCSP request: a single-certificate request with a nonce is under 200 bytes.
const maxOCSPRequest = 10 << 10

// Public serves the public objects of a node from memory. It is safe for concurrent use.
type Public struct {
	hier *hierarchy.Config
	svc  *revocation.Service
	ocsp *revocation.Responder
	log  *slog.Logger
	// ObserveFilter, if set before serving, is called by Reload with each scope's filter it serves (metrics).
	ObserveFilter func(f *store.PublishedFilter)

	mu      sync.RWMutex
	objects map[string]publicObject
	kick    chan struct{} // Kick
}

type publicObject struct {
	data        []byte
	contentType string
	maxAge      time.Duration
	// crl is set for a CRL: served with http.ServeContent (conditional and range requests), from data if it
	// is stored whole, else read from the store a chunk at a time.
	crl *store.PublishedCRL
}

// crlObject is the served object of a published CRL.
func crlObject(c *store.PublishedCRL) publicObject {
	return publicObject{data: c.DER, contentType: "application/pkix-crl", maxAge: maxAge(c), crl: c}
}

// NewPublic returns the public listener's handler state for the CAs of hier, published by svc. Call Reload
// before serving.
func NewPublic(hier *hierarchy.Config, svc *revocation.Service, responder *revocation.Responder, log *slog.Logger) *Public {
	return &Public{hier: hier, svc: svc, ocsp: responder, log: log, objects: map[string]publicObject{}, kick: make(chan struct{}, 1)}
}

// Kick asks RunRevocation to refresh the OCSP responder and reload the served objects soon: after this node
// published, and after a change to a certificate's or a CA's state committed by any process (the change
// feed). The responder reads that state from the store, so it does not wait for a publication: among nodes
// sharing a database one node publishes each round, and the others would otherwise answer from their cache
// until their next check.
func (p *Public) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Reload rebuilds the set of served objects from the store: every active CA's certificate at
// /ca/<issuer>.crt, its complete CRL at /crl/<issuer>.crl (the path profiles put in certificates, with
// <issuer> = profile.IssuerID) and its delta CRL at /crl/<issuer>-delta.crl, but only a delta whose base is the
// complete CRL served beside it, and the newest full revocation filter of each environment and product line
// at /filter/<env>.kwf and /filter/<env>/<product>.kwf.
func (p *Public) Reload(ctx context.Context) error {
	cas, err := p.svc.Reader().ListCAs(ctx)
	if err != nil {
		return err
	}
	objs := map[string]publicObject{}
	for _, ca := range cas {
		if (ca.Kind != store.CAKindRoot && ca.Kind != store.CAKindIssuing) || len(ca.CertDER) == 0 {
			continue
		}
		pair, err := p.svc.CurrentCRLs(ctx, ca.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		id := profile.IssuerID(pair.CA)
		objs["/ca/"+id+".crt"] = publicObject{data: ca.CertDER, contentType: "application/pkix-cert", maxAge: 24 * time.Hour}
		objs[revocation.CRLPath(pair.CA)] = crlObject(pair.Full)
		if pair.Delta != nil {
			objs[revocation.DeltaCRLPath(pair.CA)] = crlObject(pair.Delta)
		}
	}
	for _, env := range p.hier.EnvironmentNames() {
		scopes := []string{env}
		for _, pl := range p.hier.ProductLineNames(env) {
			scopes = append(scopes, revocation.Scope(env, pl))
		}
		for _, scope := range scopes {
			f, err := p.svc.Reader().LatestFilter(ctx, scope)
			if errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			objs["/filter/"+scope+".kwf"] = publicObject{data: f.Data, contentType: "application/octet-stream", maxAge: time.Hour}
			if p.ObserveFilter != nil {
				p.ObserveFilter(f)
			}
		}
	}
	p.mu.Lock()
	p.objects = objs
	p.mu.Unlock()
	return nil
}

func maxAge(c *store.PublishedCRL) time.Duration {
	// Caches may keep a CRL until half of its validity has passed; a revocation publishes a new delta sooner.
	return min(c.NextUpdate.Sub(c.ThisUpdate)/2, 5*time.Minute)
}

// Handler returns the public HTTP handler.
func (p *Public) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ocsp", p.ocspPost)
	mux.HandleFunc("GET /ocsp/", p.ocspGet)
	mux.HandleFunc("GET /audit/checkpoint", p.auditCheckpoint)
	mux.HandleFunc("GET /", p.object)
	return mux
}

func (p *Public) object(w http.ResponseWriter, r *http.Request) {
	p.mu.RLock()
	o, ok := p.objects[r.URL.Path]
	p.mu.RUnlock()
	if !ok {
		http.Error(w, "no such public object: this listener serves /ca/<issuer>.crt, /crl/<issuer>.crl, /crl/<issuer>-delta.crl, /filter/<scope>.kwf, /audit/checkpoint and /ocsp", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", o.contentType)
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(o.maxAge.Seconds())))
	if o.crl == nil {
		_, _ = w.Write(o.data)
		return
	}
	// A client that has this CRL gets 304 Not Modified (If-None-Match), and one resuming the download of a CRL
	// of millions of entries asks for a range. No Last-Modified: two CRLs of one CA may be issued within the
	// same second (thisUpdate's precision), and If-Modified-Since would then keep the older one.
	w.Header().Set("ETag", crlETag(o.crl))
	content := io.ReadSeeker(bytes.NewReader(o.data))
	if o.crl.Chunked() {
		content = p.svc.OpenCRL(r.Context(), o.crl)
	}
	http.ServeContent(w, r, "", time.Time{}, content)
}

// crlETag is the strong entity tag of a published CRL: its issuer, kind and number name one DER (a CA never
// reuses a CRL number, RFC 5280 5.2.3), and its thisUpdate and size guard against a database recreated since.
func crlETag(c *store.PublishedCRL) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%t\x00%d\x00%d\x00%d", c.IssuerID, c.Delta, c.Number, c.ThisUpdate.Unix(), c.Size)))
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// ocspPost answers RFC 6960 A.1 POST: the DER request is the body.
func (p *Public) ocspPost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOCSPRequest+1))
	if err != nil || len(body) > maxOCSPRequest {
		http.Error(w, fmt.Sprintf("OCSP request body unreadable or larger than %d bytes", maxOCSPRequest), http.StatusBadRequest)
		return
	}
	p.writeOCSP(w, r, body)
}

// ocspGet answers RFC 6960 A.1 GET: /ocsp/{url-encoding of the base64 of the DER request}. The base64 may
// contain '/', so everything after the prefix is the request.
func (p *Public) ocspGet(w http.ResponseWriter, r *http.Request) {
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp/")
	dec, err := url.PathUnescape(raw)
	if err == nil {
		var der []byte
		if der, err = base64.StdEncoding.DecodeString(dec); err == nil && len(der) <= maxOCSPRequest {
			p.writeOCSP(w, r, der)
			return
		}
	}
	// An undecodable request still gets an OCSP answer: malformedRequest (RFC 6960 2.3).
	p.writeOCSP(w, r, nil)
}

func (p *Public) writeOCSP(w http.ResponseWriter, r *http.Request, der []byte) {
	resp := p.ocsp.Respond(r.Context(), der)
	w.Header().Set("Content-Type", "application/ocsp-response")
	if r.Method == http.MethodGet {
		w.Header().Set("Cache-Control", "public, max-age=300")
	}
	_, _ = w.Write(resp)
}

// ServePublic runs the plain-HTTP public listener on ln until ctx is cancelled, then shuts down gracefully.
func (p *Public) ServePublic(ctx context.Context, ln net.Listener, grace time.Duration) error {
	hs := &http.Server{
		Handler:           p.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second, // a large CRL to a slow client
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("public listener shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// RunRevocation starts the revocation machinery behind the public listener: the CRL publisher (every
// interval, and at once after a local revocation), the OCSP responder's refresh and the reload of served
// objects (every interval, after a publication, and on Kick). It returns when ctx ends.
func RunRevocation(ctx context.Context, pub *Public, publisher *revocation.Publisher, interval time.Duration) {
	publisher.Published = pub.Kick
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); publisher.Run(ctx, interval) }()
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if err := pub.Reload(ctx); err != nil && ctx.Err() == nil {
				pub.log.WarnContext(ctx, "public objects reload", "err", err)
			}
			if err := pub.ocsp.Refresh(ctx); err != nil && ctx.Err() == nil {
				pub.log.WarnContext(ctx, "OCSP responder refresh", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-pub.kick:
			}
		}
	}()
	wg.Wait()
}
