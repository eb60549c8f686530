package console

import (
	"bytes"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// pages are the parsed templates: each page's "content" with the shared layout.
type pages struct {
	t map[string]*template.Template
}

var pageNames = []string{"login", "dashboard", "certificates", "certificate", "confirm", "devices", "device", "firmware", "stations", "error"}

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"timep": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"short": func(b []byte) string {
		h := hex.EncodeToString(b)
		if len(h) > 16 {
			return h[:16] + "…"
		}
		return h
	},
	"hex":     func(b []byte) string { return hex.EncodeToString(b) },
	"reason":  store.ReasonName,
	"join":    strings.Join,
	"has":     slices.Contains[[]string],
	"list":    func(items ...string) []string { return items },
	"details": details,
}

// details lists an event's details as key=value, sorted, without the recorded table state (state:* keys, which
// the audit verifier reads, not people), each cut to a readable length.
func details(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		if strings.HasPrefix(k, "state:") {
			continue
		}
		if len(v) > 120 {
			v = v[:120] + "…"
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// pemOf is a certificate's PEM.
func pemOf(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func parsePages() (*pages, error) {
	p := &pages{t: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		p.t[name] = t
	}
	return p, nil
}

// navLink is one entry of the navigation bar, shown to the roles its page allows.
type navLink struct {
	Href, Label string
	Roles       []string
}

var nav = []navLink{
	{Prefix + "/", "Dashboard", readers},
	{Prefix + "/certificates", "Certificates", readers},
	{Prefix + "/devices", "Devices", historians},
	{Prefix + "/firmware", "Firmware", firmware},
	{Prefix + "/stations", "Stations", readers},
}

// view is what every page's template gets.
type view struct {
	Title     string
	Signed    bool
	Who, Role string
	CSRF      string
	ExpiresMS int64 // when the session ends if unused (the script counts down to it)
	Nav       []navLink
	Active    string
	Data      any
}

// errorPage is the data of the error page.
type errorPage struct {
	Message string
	SignIn  bool
}

// render writes page name with status. s is nil for a signed-out page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, title string, data any) {
	v := view{Title: title, Data: data, Active: r.URL.Path}
	if s != nil {
		v.Signed, v.Who, v.Role, v.CSRF, v.ExpiresMS = true, s.p.ID, s.p.Role, s.csrf, s.expires.UnixMilli()
		for _, l := range nav {
			if slices.Contains(l.Roles, s.p.Role) {
				v.Nav = append(v.Nav, l)
			}
		}
	}
	var buf bytes.Buffer
	if err := c.pages.t[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		c.log.ErrorContext(r.Context(), "console template", "page", name, "err", err)
		http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
