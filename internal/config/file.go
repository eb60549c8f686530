package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// FileName is the configuration file of a data directory, shared with the hierarchy declaration.
const FileName = "keyward.yaml"

// Section names of keyward.yaml that this package owns.
const (
	StoreSection = "store"
	ServeSection = "serve"
)

// File holds the store: and serve: sections of one keyward.yaml.
type File struct {
	// Path is the file's path as errors and sources name it.
	Path string
	// Store is the remembered store, nil when the file has no store: section (a directory initialised before
	// Keyward remembered its store).
	Store *StoreEntry
	// Serve maps a serve flag's long name to its value in the file.
	Serve map[string]Entry
}

// StoreEntry is the store: section: the database the data directory keeps its state in.
type StoreEntry struct {
	// DB is the database as the file says it: "sqlite:PATH" (a relative PATH is in the data directory) or
	// "postgres://...".
	DB   string
	Line int
}

// Entry is one setting of the serve: section.
type Entry struct {
	// Values holds the scalar, or each item of a sequence (a flag that takes a list, such as tls-name).
	Values []string
	Seq    bool
	Line   int
}

// FieldError is a mistake in keyward.yaml: where it is, what is wrong and how to fix it.
type FieldError struct {
	File    string
	Line    int
	Field   string // e.g. "serve.rate-limit"
	Problem string
	Fix     string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Problem)
	if e.Fix != "" {
		b.WriteString("; fix: " + e.Fix)
	}
	return b.String()
}

// Load reads the store: and serve: sections of dir's keyward.yaml. A missing file is os.ErrNotExist.
func Load(dir string) (*File, error) {
	path := filepath.Join(dir, FileName)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse reads the store: and serve: sections of data, the contents of the file at path, and ignores every other
// top-level key (the hierarchy's, which internal/hierarchy reads). The serve: keys are checked against the serve
// flags later, by Apply, which knows them. On a mistake in a section it returns Errors, one per mistake, with
// the File of what did parse (nil if the file is not YAML), so that a check can report the rest too.
func Parse(path string, data []byte) (*File, error) {
	f := &File{Path: path, Serve: map[string]Entry{}}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return f, nil // an empty file: the hierarchy refuses it, with its own message
		}
		return nil, &FieldError{File: path, Line: yamlErrLine(err), Problem: strings.TrimPrefix(err.Error(), "yaml: "), Fix: "write valid YAML (indent with spaces, 'key: value')"}
	}
	if len(doc.Content) == 0 {
		return f, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &FieldError{File: path, Line: root.Line, Problem: "the file is not a mapping of sections", Fix: "start with 'organization:', 'environments:', 'store:' and 'serve:' keys"}
	}
	var errs []error
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != StoreSection && k.Value != ServeSection {
			continue
		}
		if line, dup := seen[k.Value]; dup {
			errs = append(errs, &FieldError{File: path, Line: k.Line, Field: k.Value, Problem: fmt.Sprintf("section repeated (first at line %d)", line), Fix: "merge the two into one section"})
			continue
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case StoreSection:
			s, err := parseStore(path, k, v)
			if err != nil {
				errs = append(errs, err)
			}
			f.Store = s
		case ServeSection:
			errs = append(errs, parseServe(path, v, f.Serve)...)
		}
	}
	if len(errs) > 0 {
		return f, joinErrors(errs)
	}
	return f, nil
}

func parseStore(path string, k, v *yaml.Node) (*StoreEntry, error) {
	fix := "write 'store:' then, indented, 'db: sqlite:keyward.db' or 'db: postgres://USER@HOST/DB'"
	if v.Kind != yaml.MappingNode {
		return nil, &FieldError{File: path, Line: k.Line, Field: "store", Problem: "must be a mapping with the key db", Fix: fix}
	}
	var s *StoreEntry
	for i := 0; i+1 < len(v.Content); i += 2 {
		kk, vv := v.Content[i], v.Content[i+1]
		if kk.Value != "db" {
			return nil, &FieldError{File: path, Line: kk.Line, Field: "store." + kk.Value, Problem: "unknown key", Fix: "the store: section has one key, db"}
		}
		if vv.Kind != yaml.ScalarNode || strings.TrimSpace(vv.Value) == "" {
			return nil, &FieldError{File: path, Line: vv.Line, Field: "store.db", Problem: "must be a database URL", Fix: fix}
		}
		if err := checkDB(vv.Value); err != nil {
			return nil, &FieldError{File: path, Line: vv.Line, Field: "store.db", Problem: err.Error(), Fix: fix}
		}
		s = &StoreEntry{DB: vv.Value, Line: vv.Line}
	}
	if s == nil {
		return nil, &FieldError{File: path, Line: k.Line, Field: "store.db", Problem: "missing", Fix: fix}
	}
	return s, nil
}

func parseServe(path string, v *yaml.Node, out map[string]Entry) []error {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil // "serve:" with nothing under it
	}
	if v.Kind != yaml.MappingNode {
		return []error{&FieldError{File: path, Line: v.Line, Field: "serve", Problem: "must be a mapping of serve flags to values", Fix: "write 'serve:' then, indented, lines such as 'listen: 0.0.0.0:8443'"}}
	}
	var errs []error
	for i := 0; i+1 < len(v.Content); i += 2 {
		kk, vv := v.Content[i], v.Content[i+1]
		name := kk.Value
		if prev, dup := out[name]; dup {
			errs = append(errs, &FieldError{File: path, Line: kk.Line, Field: "serve." + name, Problem: fmt.Sprintf("set twice (first at line %d)", prev.Line), Fix: "keep one of them"})
			continue
		}
		switch vv.Kind {
		case yaml.ScalarNode:
			if vv.Tag == "!!null" {
				errs = append(errs, &FieldError{File: path, Line: vv.Line, Field: "serve." + name, Problem: "has no value", Fix: "give a value, or remove the line to use the default"})
				continue
			}
			out[name] = Entry{Values: []string{vv.Value}, Line: vv.Line}
		case yaml.SequenceNode:
			e := Entry{Seq: true, Line: vv.Line}
			for _, item := range vv.Content {
				if item.Kind != yaml.ScalarNode {
					errs = append(errs, &FieldError{File: path, Line: item.Line, Field: "serve." + name, Problem: "a list item is not a plain value", Fix: "write one value per '- ' item"})
					continue
				}
				e.Values = append(e.Values, item.Value)
			}
			out[name] = e
		default:
			errs = append(errs, &FieldError{File: path, Line: vv.Line, Field: "serve." + name, Problem: "must be a value or a list of values", Fix: "write 'KEY: VALUE' as on the command line (--KEY VALUE)"})
		}
	}
	return errs
}

// yamlErrLine finds "line N" in a yaml error, or 0.
func yamlErrLine(err error) int {
	var n int
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		_, _ = fmt.Sscanf(s[i:], "line %d", &n)
	}
	return n
}

// checkDB refuses a database URL that no store backend opens. It names only the scheme: the rest may hold a
// password.
func checkDB(db string) error {
	switch {
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		return nil
	case strings.HasPrefix(db, "sqlite:"):
		p := strings.TrimPrefix(strings.TrimPrefix(db, "sqlite:"), "//")
		if p == "" {
			return errors.New("sqlite: names no file")
		}
		return nil
	}
	scheme, _, ok := strings.Cut(db, ":")
	if !ok {
		return errors.New("is not a database URL")
	}
	return fmt.Errorf("unsupported scheme %q (use sqlite:PATH or postgres://...)", scheme)
}

// AddStore adds a store: section naming db to the keyward.yaml at path, before its first key, keeping the rest
// of the file as it is (comments included; environments: stays where it was, so that whatever appends to it
// still may). It is an error if the file has one already.
func AddStore(path, db string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	f, err := Parse(path, data)
	if err != nil {
		return err
	}
	if f.Store != nil {
		return fmt.Errorf("%s:%d: has a store: section already", path, f.Store.Line)
	}
	if err := checkDB(db); err != nil {
		return fmt.Errorf("store %s: %w", Redact(db), err)
	}
	var sec bytes.Buffer
	sec.WriteString(storeComment)
	e := yaml.NewEncoder(&sec)
	e.SetIndent(2)
	if err := e.Encode(map[string]map[string]string{StoreSection: {"db": db}}); err != nil {
		return err
	}
	if err := e.Close(); err != nil {
		return err
	}
	sec.WriteString("\n")
	lines := strings.SplitAfter(string(data), "\n")
	at := len(lines)
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) == nil && len(doc.Content) > 0 && doc.Content[0].Kind == yaml.MappingNode && len(doc.Content[0].Content) > 0 {
		at = doc.Content[0].Content[0].Line - 1
	}
	var b bytes.Buffer
	b.WriteString(strings.Join(lines[:at], ""))
	if at > 0 && !strings.HasSuffix(b.String(), "\n") {
		b.WriteByte('\n')
	}
	if at > 0 && strings.TrimSpace(lines[at-1]) != "" {
		b.WriteByte('\n')
	}
	b.Write(sec.Bytes())
	b.WriteString(strings.Join(lines[at:], ""))
	return writeAtomic(path, b.Bytes())
}

func writeAtomic(path string, data []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// storeComment is the comment AddStore writes above the section.
const storeComment = "# The database this data directory keeps its state in, written by 'keyward init'. Every command that\n" +
	"# opens the directory uses it; one given another --db or KEYWARD_DB refuses to run.\n"

// SetStore makes db the store: section of the keyward.yaml at path, replacing the one there (and the comment
// AddStore wrote above it); the rest of the file is kept as it is. A factory site's data directory, which
// starts from headquarters' keyward.yaml, keeps its own SQLite store and must never carry headquarters'
// database URL.
func SetStore(path, db string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return &FieldError{File: path, Line: yamlErrLine(err), Problem: strings.TrimPrefix(err.Error(), "yaml: "), Fix: "write valid YAML"}
	}
	if len(doc.Content) > 0 && doc.Content[0].Kind == yaml.MappingNode {
		root := doc.Content[0]
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value != StoreSection {
				continue
			}
			lines := strings.SplitAfter(string(data), "\n")
			from, to := root.Content[i].Line-1, len(lines) // 0-based, [from, to)
			if i+2 < len(root.Content) {
				to = root.Content[i+2].Line - 1
				// Comments belong to the key below them.
				for to > from+1 && strings.HasPrefix(strings.TrimSpace(lines[to-1]), "#") {
					to--
				}
			}
			head := strings.TrimSuffix(strings.Join(lines[:from], ""), storeComment)
			data = []byte(head + strings.TrimLeft(strings.Join(lines[to:], ""), "\n"))
			if err := writeAtomic(path, data); err != nil {
				return err
			}
			break
		}
	}
	return AddStore(path, db)
}
