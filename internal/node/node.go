package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/feed"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/multi"
	"github.com/keyward/keyward/internal/keystore/pkcs11"
	"github.com/keyward/keyward/internal/keystore/soft"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storeopen"
)

// Files of a data directory.
const (
	ConfigFile     = "keyward.yaml"
	ProfilesDir    = "profiles"
	KeysDir        = "keys"
	PassphraseFile = "passphrase"
	KeystoresFile  = "keystores.yaml"
	TokenFile      = "admin.token"
	TLSDir         = "tls"
	CeremonyDB     = "ceremony.db"
)

// PassphraseEnv names the environment variable that holds the software keystore's passphrase.
const PassphraseEnv = "KEYWARD_PASSPHRASE"

// Options say how to open a data directory.
type Options struct {
	Dir string
	DB  string // "" (SQLite in Dir, or the store Dir remembers), "sqlite:PATH" or "postgres://..."
	// DBSource says where DB came from, for messages: "flag --db" (the default) or "env KEYWARD_DB".
	DBSource       string
	PassphraseFile string // overrides Dir/passphrase
	Logger         *slog.Logger
	Now            func() time.Time
	// Warn receives operator-facing warnings (e.g. a generated dev passphrase). Defaults to stderr.
	Warn io.Writer
	// initialising is set by Init, whose first Open creates the store before it is remembered.
	initialising bool
}

// Node is an opened data directory.
type Node struct {
	Dir      string
	Config   *hierarchy.Config
	Profiles map[string]*profile.Profile
	Store    store.Store
	Soft     *soft.Store
	Keys     *multi.Router
	// CA is the custodian of the node's signing keys; RA decides every change.
	CA     *ca.Custodian
	RA     *ra.RA
	Logger *slog.Logger
	Now    func() time.Time
	// Feed is the change feed, once Follow has started it.
	Feed *feed.Feed
	// Site is set when Dir is a factory site's data directory (site.go).
	Site *SiteInfo
	// Store is the store the node opened and where that choice came from (config.ResolveStore).
	StoreChoice config.StoreChoice
	pkcs11      []*pkcs11.Store
}

// ErrStoreUnknown is returned by Open for a data directory that remembers no store, was given none, and has no
// SQLite store of its own: its state is in a database nobody named, and opening it would start an empty one.
var ErrStoreUnknown = errors.New("the data directory remembers no store")

// ErrNotInitialised is returned by Open when the data directory has no keyward.yaml.
var ErrNotInitialised = errors.New("data directory is not initialised")

// Open opens an initialised data directory.
func Open(ctx context.Context, opts Options) (*Node, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfgPath := filepath.Join(opts.Dir, ConfigFile)
	cfgData, err := os.ReadFile(cfgPath)
	if errors.Is(err, os.ErrNotExist) && isCeremony(opts.Dir) {
		return OpenCeremony(ctx, opts)
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (run 'keyward init --data %s')", opts.Dir, ErrNotInitialised, opts.Dir)
	} else if err != nil {
		return nil, err
	}
	cfg, err := hierarchy.ParseConfigFile(cfgPath, cfgData)
	if err != nil {
		return nil, err
	}
	conf, err := config.Parse(cfgPath, cfgData)
	if err != nil {
		return nil, err
	}
	dbSource := opts.DBSource
	if dbSource == "" {
		dbSource = "flag --db"
	}
	choice, err := config.ResolveStore(opts.Dir, opts.DB, dbSource, conf)
	if err != nil {
		return nil, err
	}
	if !choice.Remembered && choice.DB == "" && !opts.initialising && !fileExists(filepath.Join(opts.Dir, storeopen.DefaultFile)) {
		return nil, fmt.Errorf("%s: %w, was given none (--db, KEYWARD_DB) and has no %s: its state is in a database this command was not told of. "+
			"Pass --db URL, and run 'keyward init --data %s --db URL' once so that the directory remembers it", opts.Dir, ErrStoreUnknown, storeopen.DefaultFile, opts.Dir)
	}
	profiles, err := profile.LoadDir(filepath.Join(opts.Dir, ProfilesDir))
	if err != nil {
		return nil, err
	}
	profile.SetPolicyArc(profiles, cfg.Arc())
	for _, env := range cfg.EnvironmentNames() {
		for _, pl := range cfg.ProductLineNames(env) {
			for _, name := range cfg.Environments[env].ProductLines[pl].Profiles {
				if profiles[name] == nil {
					return nil, fmt.Errorf("keyward.yaml: product line %s/%s names profile %q, which is not in %s", env, pl, name, filepath.Join(opts.Dir, ProfilesDir))
				}
			}
		}
	}
	site, err := ReadSite(opts.Dir)
	if err != nil {
		return nil, err
	}
	n := &Node{Dir: opts.Dir, Config: cfg, Profiles: profiles, Logger: opts.Logger, Now: opts.Now, Site: site, StoreChoice: choice}
	ok := false
	defer func() {
		if !ok {
			_ = n.Close()
		}
	}()
	pass, err := readPassphrase(opts)
	if err != nil {
		return nil, err
	}
	n.Soft, err = openSoft(filepath.Join(opts.Dir, KeysDir), pass)
	if err != nil {
		return nil, err
	}
	backends := []keystore.Keystore{n.Soft}
	uris, err := ReadKeystores(opts.Dir)
	if err != nil {
		return nil, err
	}
	for _, u := range uris {
		p, err := pkcs11.Open(u)
		if err != nil {
			return nil, err
		}
		n.pkcs11 = append(n.pkcs11, p)
		backends = append(backends, p)
	}
	n.Keys = multi.New(backends...)
	st, err := storeopen.Open(ctx, choice.DB, opts.Dir)
	if err != nil {
		return nil, err // st may be a typed nil: n.Store stays unset, so Close does not call it
	}
	n.Store = st
	attest, attestErr := LoadAttestation(opts.Dir)
	if attestErr != nil {
		opts.Logger.Error("attestation configuration unreadable; enrollments are refused until it is fixed", "dir", opts.Dir, "err", attestErr)
	}
	if err := n.wire(ra.Config{Hierarchy: cfg, Profiles: profiles, Site: siteScope(site), Attestation: attest, AttestationErr: attestErr}); err != nil {
		return nil, err
	}
	ok = true
	return n, nil
}

// wire creates the node's CA custodian and RA over its store and keystores; rc holds the rest of the RA's
// configuration.
func (n *Node) wire(rc ra.Config) error {
	var err error
	n.CA, err = ca.New(ca.Config{Keys: n.Keys, Soft: n.Soft, Store: n.Store, Now: n.Now, Logger: n.Logger})
	if err != nil {
		return err
	}
	rc.Store, rc.CA, rc.Now, rc.Logger = n.Store, n.CA, n.Now, n.Logger
	rc.Notify = n.notify
	rc.StampLifetime = ra.DefaultStampLifetime
	n.RA, err = ra.New(rc)
	return err
}

// notify pokes the change feed, if it runs, after a change this process committed that someone follows.
func (n *Node) notify(actions []string) {
	if f := n.Feed; f != nil && f.Wants(actions) {
		f.Poke()
	}
}

// Follow starts the change feed: from now on the node's CA custodian and RA caches, and whatever else
// subscribes to n.Feed before ctx ends, learn of every change committed to the store by this process or any
// other, and a key destroyed or a CA retired anywhere stops signing here. It returns once the feed is ready; the
// feed runs until ctx ends.
func (n *Node) Follow(ctx context.Context) error {
	f, err := feed.New(ctx, n.Store, n.Logger)
	if err != nil {
		return err
	}
	f.Subscribe(func(chs []store.Change) { n.CA.Changed(ctx, chs) }, audit.PrefixKey, audit.PrefixCA)
	f.Subscribe(n.RA.Changed, ra.FollowPrefixes...)
	n.RA.Changed(nil) // caches may be kept from now on
	n.Feed = f
	go func() {
		if err := f.Run(ctx); err != nil && ctx.Err() == nil {
			n.Logger.Error("change feed stopped", "err", err)
		}
	}()
	return nil
}

// Close releases the store and keystores.
func (n *Node) Close() error {
	var errs []error
	if n.Store != nil {
		errs = append(errs, n.Store.Close())
	}
	if n.Keys != nil {
		errs = append(errs, n.Keys.Close())
	} else if n.Soft != nil {
		errs = append(errs, n.Soft.Close())
	}
	return errors.Join(errs...)
}

// Keystore returns the backend for a --keystore value: "" or "soft" for the software keystore, or a PKCS#11
// configuration URI (which is opened, remembered in keystores.yaml without any PIN value, and added to the
// router).
func (n *Node) Keystore(spec string) (keystore.Keystore, error) {
	if spec == "" || spec == "soft" {
		return n.Soft, nil
	}
	if !strings.HasPrefix(spec, "pkcs11:") {
		return nil, fmt.Errorf("--keystore %q: use \"soft\" or a pkcs11: URI (RFC 7512)", spec)
	}
	p, err := pkcs11.Open(spec)
	if err != nil {
		return nil, err
	}
	if err := rememberKeystore(n.Dir, spec); err != nil {
		_ = p.Close()
		return nil, err
	}
	n.pkcs11 = append(n.pkcs11, p)
	n.Keys.Add(p)
	return p, nil
}

type keystoresFile struct {
	PKCS11 []string `yaml:"pkcs11"`
}

// ReadKeystores returns the PKCS#11 configuration URIs remembered in dir.
func ReadKeystores(dir string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, KeystoresFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var f keystoresFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", KeystoresFile, err)
	}
	return f.PKCS11, nil
}

func rememberKeystore(dir, uri string) error {
	uri, err := stripPIN(uri)
	if err != nil {
		return err
	}
	list, err := ReadKeystores(dir)
	if err != nil {
		return err
	}
	for _, u := range list {
		if u == uri {
			return nil
		}
	}
	data, err := yaml.Marshal(keystoresFile{PKCS11: append(list, uri)})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, KeystoresFile), data, 0o600)
}

// openSoft opens the software keystore in dir, creating it on first use.
func openSoft(dir string, pass []byte) (*soft.Store, error) {
	s, err := soft.Open(dir, pass)
	if errors.Is(err, fs.ErrNotExist) {
		return soft.Create(dir, pass, nil)
	}
	return s, err
}

// stripPIN removes pin-value from a PKCS#11 configuration URI, so it can be remembered on disk; the PIN then
// comes from pin-source or KEYWARD_PKCS11_PIN.
func stripPIN(uri string) (string, error) {
	u, err := pkcs11.ParseURI(uri)
	if err != nil {
		return "", err
	}
	u.PINValue = ""
	return u.String(), nil
}

func readPassphrase(opts Options) ([]byte, error) {
	if v := os.Getenv(PassphraseEnv); v != "" {
		return []byte(v), nil
	}
	file := opts.PassphraseFile
	if file == "" {
		file = filepath.Join(opts.Dir, PassphraseFile)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("keystore passphrase: set %s or provide %s: %w", PassphraseEnv, file, err)
	}
	p := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if p == "" {
		return nil, fmt.Errorf("keystore passphrase file %s is empty", file)
	}
	return []byte(p), nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
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

func nowUTC() time.Time { return time.Now().UTC() }

// isCeremony reports whether dir is a ceremony workspace, so read-only commands (audit verify, key list) work on
// it with --data.
func isCeremony(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, CeremonyDB))
	return err == nil
}
