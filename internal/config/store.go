package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultDB is what 'keyward init' remembers when it is given no database: the SQLite file in the data
// directory.
const DefaultDB = "sqlite:keyward.db"

// Redact returns a database or sink URL with its password (in the user information, or a password= or
// sslpassword= query parameter) replaced by "xxxxx", for printing. Anything that is not a URL is returned
// with everything after its scheme hidden, since it may be a password.
func Redact(s string) string {
	if s == "" || strings.HasPrefix(s, "sqlite:") || strings.HasPrefix(s, "file:") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		scheme, _, ok := strings.Cut(s, ":")
		if ok && !strings.ContainsAny(scheme, "/@ ") {
			return scheme + ":xxxxx"
		}
		return "xxxxx"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if isSecretParam(k) {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func isSecretParam(k string) bool {
	k = strings.ToLower(k)
	return k == "password" || k == "sslpassword" || strings.Contains(k, "secret") || strings.Contains(k, "token")
}

// StoreChoice is the store a command opens, and why.
type StoreChoice struct {
	// DB is the database URL to open ("" for the SQLite default in the data directory).
	DB string
	// Source says where it came from: "flag --db", "env KEYWARD_DB", "file DIR/keyward.yaml:N" or "default".
	Source string
	// Remembered is false for a data directory whose keyward.yaml has no store: section.
	Remembered bool
}

// ResolveStore decides which store a command opens on data directory dir: explicit is --db or KEYWARD_DB
// ("" when neither is set), explicitSource says which ("flag --db" or "env KEYWARD_DB"), and f is the
// directory's configuration (nil when it has none yet). A remembered store is used when nothing explicit is
// given; an explicit one must be the same database (its password may differ: it may have been rotated).
func ResolveStore(dir, explicit, explicitSource string, f *File) (StoreChoice, error) {
	if f == nil || f.Store == nil {
		if explicit == "" {
			return StoreChoice{Source: "default"}, nil
		}
		return StoreChoice{DB: explicit, Source: explicitSource}, nil
	}
	remembered := StoreURL(dir, f.Store.DB)
	src := fmt.Sprintf("file %s:%d", f.Path, f.Store.Line)
	if explicit == "" {
		if SameStore(dir, remembered, "") {
			remembered = "" // the SQLite default, opened as such
		}
		return StoreChoice{DB: remembered, Source: src, Remembered: true}, nil
	}
	if SameStore(dir, explicit, remembered) {
		return StoreChoice{DB: explicit, Source: explicitSource, Remembered: true}, nil
	}
	what := "--db"
	if strings.HasPrefix(explicitSource, "env ") {
		what = strings.TrimPrefix(explicitSource, "env ")
	}
	return StoreChoice{}, &StoreMismatchError{Explicit: Redact(explicit), ExplicitFrom: what, Remembered: Redact(f.Store.DB), File: f.Path, Line: f.Store.Line}
}

// StoreMismatchError refuses a database other than the one a data directory remembers.
type StoreMismatchError struct {
	Explicit, ExplicitFrom string // redacted
	Remembered             string // redacted
	File                   string
	Line                   int
}

func (e *StoreMismatchError) Error() string {
	return fmt.Sprintf("%s %s is not the store this data directory keeps its state in: %s:%d says store.db: %s. "+
		"Drop %s to use the remembered store; to move the directory to another database, copy its data there and change store.db in %s",
		e.ExplicitFrom, e.Explicit, e.File, e.Line, e.Remembered, e.ExplicitFrom, e.File)
}

// StoreURL turns a remembered store.db into the URL to open: a relative sqlite: path is in the data directory.
func StoreURL(dir, db string) string {
	if p, ok := strings.CutPrefix(db, "sqlite:"); ok {
		p = strings.TrimPrefix(p, "//")
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return "sqlite:" + p
	}
	return db
}

// RememberAs is how 'keyward init' writes the database it was given (db, "" for the default) into the data
// directory dir's keyward.yaml: a SQLite file in the directory by its relative name, so that the directory can
// move; one elsewhere by its absolute path; a PostgreSQL URL as given.
func RememberAs(dir, db string) (string, error) {
	if db == "" {
		return DefaultDB, nil
	}
	p, ok := strings.CutPrefix(db, "sqlite:")
	if !ok {
		return db, nil
	}
	p = strings.TrimPrefix(p, "//")
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(absDir, abs); err == nil && !strings.HasPrefix(rel, "..") {
		return "sqlite:" + filepath.ToSlash(rel), nil
	}
	return "sqlite:" + abs, nil
}

// SameStore reports whether a and b name the same database: the same SQLite file, or the same PostgreSQL
// server, port, database, user and parameters, whatever the password.
func SameStore(dir, a, b string) bool {
	return storeKey(dir, a) == storeKey(dir, b)
}

func storeKey(dir, db string) string {
	if db == "" {
		db = "sqlite:" + filepath.Join(dir, "keyward.db")
	}
	if p, ok := strings.CutPrefix(db, "sqlite:"); ok {
		p = strings.TrimPrefix(p, "//")
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		return "sqlite:" + filepath.Clean(p)
	}
	u, err := url.Parse(db)
	if err != nil {
		return "unparsable:" + db
	}
	scheme := u.Scheme
	if scheme == "postgresql" {
		scheme = "postgres"
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = "5432"
	}
	user := ""
	if u.User != nil {
		user = u.User.Username()
	}
	q := u.Query()
	var params []string
	for k, vs := range q {
		if isSecretParam(k) {
			continue
		}
		for _, v := range vs {
			params = append(params, k+"="+v)
		}
	}
	slices.Sort(params)
	return scheme + "://" + user + "@" + host + ":" + port + "/" + strings.TrimPrefix(u.Path, "/") + "?" + strings.Join(params, "&")
}
