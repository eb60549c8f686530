package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/metrics"
	"github.com/keyward/keyward/internal/ra"
)

// RequestIDHeader carries a request's id: a caller's own id is kept when it is safe to log (at most 64
// letters, digits, '.', '_' or '-'), otherwise one is made; the response returns it either way, and the access
// line, the audit's refusal log lines and the caller's support ticket can then name the same request.
const RequestIDHeader = "X-Request-Id"

// access is what the access line of one request says beside what the HTTP layer knows: filled in by the
// route's authentication (principal) and by the refusal or failure paths (reason).
type access struct {
	id        string
	principal string
	reason    string
}

type accessKey struct{}

func accessOf(r *http.Request) *access {
	a, _ := r.Context().Value(accessKey{}).(*access)
	return a
}

// notePrincipal records who the request authenticated as, for its access line.
func notePrincipal(r *http.Request, p ra.Principal) {
	if a := accessOf(r); a != nil {
		a.principal = p.ID
	}
}

// noteReason records why the request was refused or failed, for its access line. The reason is Keyward's own
// text; it may quote what the caller sent and is bounded like an audit detail.
func noteReason(r *http.Request, err error) {
	if a := accessOf(r); a != nil && err != nil {
		a.reason = audit.Bound(err.Error(), 2*audit.MaxDetail)
	}
}

// RequestID returns the id of the request being served, or "".
func RequestID(ctx context.Context) string {
	if a, _ := ctx.Value(accessKey{}).(*access); a != nil {
		return a.id
	}
	return ""
}

// accessLog wraps next so that every request is logged once, when it ends, at info level: request id, method,
// route (the matched pattern, not the raw path, with the path bounded beside it), status, duration, response
// bytes, principal, the TLS client certificate's subject, the source address and, for a refusal or failure,
// its reason. No header, token, body or key is ever logged.
func accessLog(log *slog.Logger, m *metrics.Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		a := &access{id: requestID(r.Header.Get(RequestIDHeader))}
		w.Header().Set(RequestIDHeader, a.id)
		rw := &recordingWriter{ResponseWriter: w, status: http.StatusOK}
		r = r.WithContext(context.WithValue(r.Context(), accessKey{}, a))
		next.ServeHTTP(rw, r)
		took := time.Since(start)
		if m != nil {
			m.HTTP(r.Pattern, r.Method, rw.status, took)
		}
		attrs := []slog.Attr{
			slog.String("request_id", a.id),
			slog.String("method", r.Method),
			slog.String("route", r.Pattern),
			slog.String("path", boundPath(r)),
			slog.Int("status", rw.status),
			slog.Float64("duration_ms", float64(took.Microseconds())/1000),
			slog.Int64("bytes", rw.bytes),
			slog.String("remote", sourceOf(r)),
		}
		if a.principal != "" {
			attrs = append(attrs, slog.String("principal", audit.Bound(a.principal, audit.MaxDetail)))
		}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			attrs = append(attrs, slog.String("client_cert", audit.Bound(r.TLS.PeerCertificates[0].Subject.String(), audit.MaxDetail)))
		}
		if a.reason != "" {
			attrs = append(attrs, slog.String("reason", a.reason))
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// requestID returns the caller's id if it is safe to log and echo, else a fresh random one.
func requestID(given string) string {
	if len(given) > 0 && len(given) <= 64 {
		ok := true
		for i := 0; i < len(given) && ok; i++ {
			c := given[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		}
		if ok {
			return given
		}
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// recordingWriter remembers the status and counts the bytes of a response.
type recordingWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *recordingWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer (flushes, deadlines).
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
