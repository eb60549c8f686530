package node

import (
	"context"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore/multi"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// OpenCeremony opens, creating it if needed, an offline ceremony workspace: a software keystore sealed under the
// ceremony passphrase (which must be given, never generated), PKCS#11 backends named by --keystore, and a SQLite
// audit log. Its hierarchy is the embedded default's organisation with no product lines.
func OpenCeremony(ctx context.Context, opts Options) (*Node, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	def, err := hierarchy.ParseConfig(hierarchy.DefaultConfig())
	if err != nil {
		return nil, err
	}
	cfg := &hierarchy.Config{Organization: def.Organization, Environments: map[string]*hierarchy.Environment{}}
	n := &Node{Dir: opts.Dir, Config: cfg, Logger: opts.Logger, Now: opts.Now}
	if n.Now == nil {
		n.Now = nowUTC
	}
	pass, err := readPassphrase(opts)
	if err != nil {
		return nil, err
	}
	if n.Soft, err = openSoft(filepath.Join(opts.Dir, KeysDir), pass); err != nil {
		return nil, err
	}
	n.Keys = multi.New(n.Soft)
	uris, err := ReadKeystores(opts.Dir)
	if err != nil {
		_ = n.Close()
		return nil, err
	}
	for _, u := range uris {
		if _, err := n.Keystore(u); err != nil {
			_ = n.Close()
			return nil, err
		}
	}
	if n.Store, err = sqlite.Open(ctx, filepath.Join(opts.Dir, CeremonyDB)); err != nil {
		_ = n.Close()
		return nil, err
	}
	if err := n.wire(ra.Config{Hierarchy: cfg, Profiles: map[string]*profile.Profile{}}); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}
