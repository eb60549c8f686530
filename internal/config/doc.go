// Package config reads the parts of a data directory's keyward.yaml that say how Keyward runs rather than what
// it certifies: the store the directory keeps its state in (the store: section, written by 'keyward init') and
// the settings of 'keyward serve' (the serve: section, one key per serve flag by its long name). It resolves each
// setting from the command line, the environment (KEYWARD_<FLAG>, hyphens as underscores) and the file, in that
// order of precedence, and says where every effective value came from, with secrets (a database URL's password,
// a sink URL's credentials) redacted.
//
// A field error names the file, the line and how to fix it.
//
// It may import only the standard library, yaml and pflag. It must never open a store, a keystore or a listener:
// internal/node and internal/cli do, with what it resolved.
package config
