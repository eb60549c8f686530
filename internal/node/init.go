package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore/soft"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// InitOptions say how to initialise a data directory.
type InitOptions struct {
	Options
	// Keystore is where the new CA keys are generated: "" or "soft", or a PKCS#11 configuration URI.
	Keystore string
	// Actor is recorded in the audit trail.
	Actor string
}

// InitResult reports what Init did.
type InitResult struct {
	Created        []*store.CA
	PassphraseFile string // set when a random dev passphrase was generated
	TokenFile      string // set when an admin token was written
	// Store is the database this Init remembered in keyward.yaml (redacted), when it wrote the store: section.
	Store string
}

// Init creates a data directory from the embedded defaults (keyward.yaml with the dev environment and the
// demo-implant product line, the default profiles) if it holds none, then creates every CA the configuration
// declares for environments with an online root, and an operator token. Repeating it is harmless: existing
// files and CAs are kept.
func Init(ctx context.Context, opts InitOptions) (*Node, *InitResult, error) {
	res := &InitResult{}
	if opts.Warn == nil {
		opts.Warn = os.Stderr
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create data directory: %w", err)
	}
	// A site data directory holds one site CA and never a hierarchy of its own (site.go).
	if fileExists(filepath.Join(opts.Dir, SiteFile)) {
		return nil, nil, fmt.Errorf("%s is a factory site's data directory: it is not initialised with a hierarchy", opts.Dir)
	}
	if err := writeIfMissing(filepath.Join(opts.Dir, ConfigFile), hierarchy.DefaultConfig()); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, ProfilesDir), 0o700); err != nil {
		return nil, nil, err
	}
	for name, data := range profile.Defaults() {
		if err := writeIfMissing(filepath.Join(opts.Dir, ProfilesDir, name+".yaml"), data); err != nil {
			return nil, nil, err
		}
	}
	if os.Getenv(PassphraseEnv) == "" && opts.PassphraseFile == "" {
		pf := filepath.Join(opts.Dir, PassphraseFile)
		if _, err := os.Stat(pf); errors.Is(err, os.ErrNotExist) {
			if _, err := soft.WriteRandomPassphraseFile(pf); err != nil {
				return nil, nil, err
			}
			res.PassphraseFile = pf
			warn(opts.Warn, "generated a random keystore passphrase in %s (mode 0600). This is the embedded DEV default:\n"+
				"anyone who can read that file can use every software-held key. For staging and production set %s or\n"+
				"--passphrase-file from a secret store, or keep CA keys in an HSM (--keystore pkcs11:...).", pf, PassphraseEnv)
		}
	}
	oo := opts.Options
	oo.initialising = true
	n, err := Open(ctx, oo)
	if err != nil {
		return nil, nil, err
	}
	// The store opened: the directory remembers it from now on, so that no later command opens another.
	if !n.StoreChoice.Remembered && n.Site == nil {
		db, err := config.RememberAs(opts.Dir, opts.DB)
		if err == nil {
			err = config.AddStore(filepath.Join(opts.Dir, ConfigFile), db)
		}
		if err != nil {
			_ = n.Close()
			return nil, nil, fmt.Errorf("remember the store in %s: %w", ConfigFile, err)
		}
		n.StoreChoice.Remembered = true
		res.Store = config.Redact(db)
	}
	ks, err := n.Keystore(opts.Keystore)
	if err != nil {
		_ = n.Close()
		return nil, nil, err
	}
	actor := opts.Actor
	if actor == "" {
		actor = "cli:init"
	}
	p := ra.Principal{ID: actor, Role: ra.RoleAdmin}
	for _, env := range n.Config.EnvironmentNames() {
		if n.Config.Environments[env].Root.Offline {
			continue
		}
		r, err := n.RA.BuildHierarchy(ctx, p, env, ks)
		if r != nil {
			res.Created = append(res.Created, r.Created...)
		}
		if err != nil {
			_ = n.Close()
			return nil, nil, err
		}
	}
	tf, err := n.EnsureAdminToken(ctx, actor)
	if err != nil {
		_ = n.Close()
		return nil, nil, err
	}
	res.TokenFile = tf
	return n, res, nil
}

func writeIfMissing(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	} else if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func warn(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "WARNING: "+format+"\n", args...)
}
