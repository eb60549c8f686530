package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a log destination shared by the server's goroutines and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// accessLines returns the access lines logged so far, as JSON objects.
func (l *lockedBuffer) accessLines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// TestAccessLog: every request gets one access line (JSON) with its request id — the caller's when it is safe
// to echo, else a fresh one, returned in X-Request-Id either way —, route, status, bytes, duration and
// principal; a refused request's line carries its reason; the token never appears in the log.
func TestAccessLog(t *testing.T) {
	var buf lockedBuffer
	ts := startDeps(t, nil, Deps{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	// do returns the response's status and headers; its body is read and closed.
	do := func(method, path, token, reqID string, body []byte) (int, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.url+path, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if reqID != "" {
			req.Header.Set(RequestIDHeader, reqID)
		}
		resp, err := ts.client(0).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	issue, _ := json.Marshal(map[string]string{"profile": "implant-identity", "csr": csrPEM(t, "DEMO-00004242")})
	if code, h := do("POST", "/api/v1/certificates", ts.admin, "ticket-4711", issue); code != 201 || h.Get(RequestIDHeader) != "ticket-4711" {
		t.Fatalf("issue: %d, request id %q", code, h.Get(RequestIDHeader))
	}
	code, h := do("GET", "/api/v1/cas", "not-a-token", "bad id with spaces; and more", nil)
	generated := h.Get(RequestIDHeader)
	if code != 401 || len(generated) != 24 {
		t.Fatalf("refused request: %d, request id %q (want a generated one)", code, generated)
	}
	lines := buf.accessLines(t)
	byID := map[string]map[string]any{}
	for _, l := range lines {
		byID[l["request_id"].(string)] = l
	}
	ok := byID["ticket-4711"]
	if ok == nil || ok["route"] != "POST /api/v1/certificates" || ok["status"] != float64(201) || ok["principal"] == nil ||
		ok["bytes"].(float64) <= 0 || ok["duration_ms"] == nil || ok["reason"] != nil {
		t.Fatalf("access line of the issuance: %v", ok)
	}
	refused := byID[generated]
	if refused == nil || refused["status"] != float64(401) || !strings.Contains(refused["reason"].(string), "token") || refused["principal"] != nil {
		t.Fatalf("access line of the refusal: %v", refused)
	}
	buf.mu.Lock()
	logged := buf.b.String()
	buf.mu.Unlock()
	if strings.Contains(logged, ts.admin) || strings.Contains(logged, "not-a-token") {
		t.Fatal("a bearer token appears in the log")
	}
}
