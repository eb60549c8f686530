package cli

import (
	"os"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/config"
)

func TestPublicURLDerive(t *testing.T) {
	host, _ := os.Hostname()
	if host == "" {
		host = "127.0.0.1"
	}
	for _, tc := range []struct {
		listen, url, want string
		warn              bool
	}{
		{"127.0.0.1:8080", "", "http://127.0.0.1:8080", false},
		{"crl.example.com:80", "", "http://crl.example.com:80", false},
		{"[::1]:8080", "", "http://[::1]:8080", false},
		{"0.0.0.0:8080", "", "http://" + host + ":8080", true},
		{"[::]:8080", "", "http://" + host + ":8080", true},
		{":8080", "", "http://" + host + ":8080", true},
		{"0.0.0.0:8080", "https://crl.example.com/pki", "https://crl.example.com/pki", false},
		{"", "", "http://127.0.0.1:8080", false},
	} {
		o := publicOptions{listen: tc.listen, url: tc.url}
		settings := []config.Setting{{Key: "serve.public-url", Source: config.SourceDefault}}
		if err := o.derive(settings); err != nil {
			t.Fatalf("%s: %v", tc.listen, err)
		}
		if o.url != tc.want || (o.warning != "") != tc.warn {
			t.Errorf("listen %q url %q: got %q (warning %q), want %q (warning %v)", tc.listen, tc.url, o.url, o.warning, tc.want, tc.warn)
		}
		if tc.url == "" && tc.listen != "" && (settings[0].Source != "derived" || settings[0].Value != tc.want) {
			t.Errorf("listen %q: setting %+v", tc.listen, settings[0])
		}
	}
	for _, bad := range []string{"crl.example.com", "ftp://crl.example.com", "http://", "http://u:p@crl.example.com", "http://crl.example.com/?a=b", "http://crl.example.com/#x"} {
		o := publicOptions{listen: "127.0.0.1:8080", url: bad}
		if err := o.derive(nil); err == nil || !strings.Contains(err.Error(), "is not an http:// or https:// URL") || strings.Contains(err.Error(), "u:p@") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
