package client

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestNewRefusesBadServerURLsAndTokens(t *testing.T) {
	for _, tc := range []struct{ url, token, want string }{
		{"http://127.0.0.1:8443", "t", "use https://"},
		{"https://127.0.0.1:8443/api", "t", "no path"},
		{"https://u:p@127.0.0.1:8443", "t", "no path, query or user"},
		{"127.0.0.1:8443", "t", "server URL"},
		{"https://127.0.0.1:8443", " ", "token is empty"},
		{"https://127.0.0.1:8443", "a\nb", "spans lines"},
	} {
		_, err := NewWithTLS(tc.url, tc.token, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewWithTLS(%q, %q) = %v, want an error with %q", tc.url, tc.token, err, tc.want)
		}
		if strings.Contains(tc.token, "b") && err != nil && strings.Contains(err.Error(), tc.token) {
			t.Errorf("error quotes the token: %v", err)
		}
	}
	if _, err := New("https://127.0.0.1:8443", "t", []byte("not pem")); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("New with a CA file holding no certificate: %v", err)
	}
}

func TestEmptyPathSegmentRefusedBeforeSending(t *testing.T) {
	c, err := NewWithTLS("https://127.0.0.1:1", "t", nil)
	if err == nil {
		_, err = c.DeviceAction(context.Background(), DeviceRef{Environment: "dev", Serial: "SN"}, Suspend)
	}
	if err == nil || !strings.Contains(err.Error(), "path segment is empty") {
		t.Fatalf("DeviceAction without a product line: %v, want a refusal before any request", err)
	}
	if _, err := c.DeviceAction(context.Background(), DeviceRef{"dev", "p", "SN"}, "explode"); err == nil || !strings.Contains(err.Error(), `device action "explode"`) {
		t.Fatalf("DeviceAction with an unknown action: %v", err)
	}
	if _, err := c.SetStationState(context.Background(), "s", "delete"); err == nil {
		t.Fatal("SetStationState accepted delete")
	}
}

func TestErrorKinds(t *testing.T) {
	for status, kind := range map[int]Kind{400: KindBadRequest, 401: KindUnauthorized, 403: KindForbidden, 404: KindNotFound, 409: KindConflict,
		429: KindTooManyRequests, 503: KindUnavailable, 500: KindInternal, 502: KindInternal} {
		if got := kindOf(status); got != kind {
			t.Errorf("kindOf(%d) = %s, want %s", status, got, kind)
		}
	}
	var err error = &Error{StatusCode: 404, Kind: KindNotFound, Message: "no certificate with serial ab"}
	if !errors.Is(err, &Error{Kind: KindNotFound}) || errors.Is(err, &Error{Kind: KindConflict}) {
		t.Fatalf("errors.Is on kinds: %v", err)
	}
}
