package config

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// EnvPrefix starts the name of every environment variable Keyward reads.
const EnvPrefix = "KEYWARD_"

// EnvName is the environment variable of a flag: KEYWARD_ and the flag's long name in upper case, with
// underscores for hyphens (--rate-limit: KEYWARD_RATE_LIMIT).
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Sources of a value.
const (
	SourceFlag    = "flag"
	SourceEnv     = "env"
	SourceFile    = "file"
	SourceDefault = "default"
)

// Setting is one effective value and where it came from.
type Setting struct {
	// Key is the setting's name: "serve.<flag>", "store.db", "data".
	Key string `json:"key"`
	// Value is the effective value, with secrets redacted.
	Value string `json:"value"`
	// Source is "flag", "env", "file" or "default".
	Source string `json:"source"`
	// From details the source: the flag ("--listen"), the variable ("KEYWARD_LISTEN") or the file and line
	// ("kw/keyward.yaml:12"); empty for a default.
	From string `json:"from,omitempty"`
	// Line is the line in the file, for a file source.
	Line int `json:"line,omitempty"`
}

// Where is the source as one word or phrase for text output: "flag --listen", "env KEYWARD_LISTEN",
// "file kw/keyward.yaml:12", "default".
func (s Setting) Where() string {
	if s.From == "" {
		return s.Source
	}
	return s.Source + " " + s.From
}

// Secret reports whether a flag's value may hold a secret and is printed redacted.
type Secret func(flag string) bool

// Apply sets each flag of fs named in names that the command line did not set, from its environment variable
// (getenv(EnvName(flag))) or, failing that, from the serve: section of f (which may be nil), and returns where
// each one's value came from, in the order of names. A serve: key that names no flag, and a value its flag
// refuses, is a FieldError naming the file and line; a refused environment value names the variable.
func Apply(fs *pflag.FlagSet, names []string, f *File, getenv func(string) string, secret Secret) ([]Setting, error) {
	var errs []error
	if f != nil {
		var unknown []string
		for k := range f.Serve {
			if !slices.Contains(names, k) {
				unknown = append(unknown, k)
			}
		}
		sort.Strings(unknown)
		for _, k := range unknown {
			fix := "use a serve flag's long name: " + strings.Join(names, ", ")
			if near := closest(k, names); near != "" {
				fix = fmt.Sprintf("did you mean %s? (serve flags: %s)", near, strings.Join(names, ", "))
			}
			errs = append(errs, &FieldError{File: f.Path, Line: f.Serve[k].Line, Field: "serve." + k, Problem: "not a setting of keyward serve", Fix: fix})
		}
	}
	out := make([]Setting, 0, len(names))
	for _, name := range names {
		fl := fs.Lookup(name)
		if fl == nil {
			continue
		}
		s := Setting{Key: "serve." + name}
		switch {
		case fl.Changed:
			s.Source, s.From = SourceFlag, "--"+name
		case getenv(EnvName(name)) != "":
			v := getenv(EnvName(name))
			if err := setFresh(fl, []string{v}, false); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v; fix: give it %s, as --%s takes, or unset it", EnvName(name), redactIf(secret, name, v), err, typeHint(fl), name))
				continue
			}
			s.Source, s.From = SourceEnv, EnvName(name)
		case f != nil && hasEntry(f, name):
			e := f.Serve[name]
			if err := setFresh(fl, e.Values, e.Seq); err != nil {
				errs = append(errs, &FieldError{File: f.Path, Line: e.Line, Field: "serve." + name,
					Problem: fmt.Sprintf("%q: %v", redactIf(secret, name, strings.Join(e.Values, ",")), err), Fix: "write " + typeHint(fl) + ", as --" + name + " takes"})
				continue
			}
			s.Source, s.From, s.Line = SourceFile, fmt.Sprintf("%s:%d", f.Path, e.Line), e.Line
		default:
			s.Source = SourceDefault
		}
		s.Value = display(fl)
		if secret != nil && secret(name) {
			s.Value = Redact(s.Value)
		}
		out = append(out, s)
	}
	if len(errs) > 0 {
		return out, joinErrors(errs)
	}
	return out, nil
}

// typeHint says what kind of value a flag takes.
func typeHint(fl *pflag.Flag) string {
	switch fl.Value.Type() {
	case "duration":
		return "a duration such as 500ms, 30s, 5m or 24h"
	case "stringSlice", "stringArray":
		return "a list (a YAML sequence, or values separated by commas)"
	case "bool":
		return "true or false"
	case "int", "int64", "uint", "uint64":
		return "a whole number"
	}
	return "a value"
}

func hasEntry(f *File, name string) bool { _, ok := f.Serve[name]; return ok }

func redactIf(secret Secret, name, v string) string {
	if secret != nil && secret(name) {
		return Redact(v)
	}
	return v
}

// setFresh sets a flag's value from values, replacing its default. Sequence values set a list flag item by
// item; pflag's list flags replace their default on the first Set and append after.
func setFresh(fl *pflag.Flag, values []string, seq bool) error {
	// Some pflag values (durations) are overwritten even when Set fails: a refused value must leave the
	// default, so that nothing later mistakes it for a value that was given.
	var restore func()
	if sv, ok := fl.Value.(pflag.SliceValue); ok {
		old := sv.GetSlice()
		restore = func() { _ = sv.Replace(old) }
	} else {
		old := fl.Value.String()
		restore = func() { _ = fl.Value.Set(old) }
	}
	if err := set(fl, values, seq); err != nil {
		restore()
		return err
	}
	return nil
}

func set(fl *pflag.Flag, values []string, seq bool) error {
	if seq {
		if _, ok := fl.Value.(pflag.SliceValue); !ok {
			return fmt.Errorf("takes one value, not a list")
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			return sv.Replace(values)
		}
	}
	if len(values) != 1 {
		return fmt.Errorf("takes one value")
	}
	return fl.Value.Set(values[0])
}

// display is a flag's value as a person would write it: a list without pflag's brackets.
func display(fl *pflag.Flag) string {
	if sv, ok := fl.Value.(pflag.SliceValue); ok {
		return strings.Join(sv.GetSlice(), ",")
	}
	return fl.Value.String()
}

// closest returns the name in names nearest to s by edit distance, if it is near enough to be a typo.
func closest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Errors is several configuration mistakes, reported together so that one pass fixes them all.
type Errors []error

func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap returns the mistakes.
func (e Errors) Unwrap() []error { return e }

func joinErrors(errs []error) error {
	var out Errors
	for _, err := range errs {
		if more, ok := err.(interface{ Unwrap() []error }); ok {
			out = append(out, more.Unwrap()...)
		} else {
			out = append(out, err)
		}
	}
	return out
}

// Sorted returns the mistakes in the order a reader fixes them: those in a file by file and line first, then the
// others (flags, environment) as they came.
func (e Errors) Sorted() Errors {
	out := slices.Clone(e)
	slices.SortStableFunc(out, func(a, b error) int {
		var fa, fb *FieldError
		oka, okb := errors.As(a, &fa), errors.As(b, &fb)
		switch {
		case oka && okb:
			if c := strings.Compare(fa.File, fb.File); c != 0 {
				return c
			}
			return fa.Line - fb.Line
		case oka:
			return -1
		case okb:
			return 1
		}
		return 0
	})
	return out
}
