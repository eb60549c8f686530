package node

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"

	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/profile"
)

// PolicyReload says what ReloadPolicy changed and what it refused to change.
type PolicyReload struct {
	// Added, Changed and Removed name the profiles, sorted.
	Added, Changed, Removed []string
	// Hierarchy is set when the product lines' profile lists or firmware policies changed.
	Hierarchy bool
	// Refused lists the changes to keyward.yaml's hierarchy that take a restart ("path: why").
	Refused []string
	// StoreRefused, if set, says how the store: section now differs from the store the node runs on; a
	// running node never changes its store.
	StoreRefused string
	// File is keyward.yaml's store: and serve: sections as read now, for the caller that applies serve
	// settings.
	File *config.File

	// What CommitReload installs.
	hierarchy *hierarchy.Config
	profiles  map[string]*profile.Profile
}

// ReloadPolicy reads keyward.yaml and the profiles directory again and makes what may change at run time (every
// profile; the profiles each product line issues under and its firmware policy) what the node's RA decides by,
// all at once: PrepareReload, then CommitReload.
func (n *Node) ReloadPolicy() (*PolicyReload, error) {
	rep, err := n.PrepareReload()
	if err != nil {
		return nil, err
	}
	return rep, n.CommitReload(rep)
}

// PrepareReload reads and checks keyward.yaml and the profiles directory and returns what CommitReload would
// change, changing nothing. Anything wrong — a file that does not parse, a profile that breaks a rule, a product
// line naming a profile that is gone, a profile whose rules changed while its version did not — is returned,
// naming the file. Hierarchy changes that take a restart are listed in Refused and will be kept as they are.
func (n *Node) PrepareReload() (*PolicyReload, error) {
	path := filepath.Join(n.Dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	next, err := hierarchy.ParseConfigFile(path, data)
	if err != nil {
		return nil, err
	}
	file, err := config.Parse(path, data)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(n.Dir, ProfilesDir)
	profiles, err := profile.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	// Profiles carry the running policy arc (Open does the same); a new policy_arc takes a restart.
	profile.SetPolicyArc(profiles, n.RA.Hierarchy().Arc())
	old := n.RA.Profiles()
	rep := &PolicyReload{File: file}
	profiles = maps.Clone(profiles)
	for name, p := range profiles {
		prev := old[name]
		switch {
		case prev == nil:
			rep.Added = append(rep.Added, name)
		case !sameRules(p, prev):
			// Certificates record the profile version they were issued under: new rules under an old number
			// would make two different policies indistinguishable in the registry and the audit log.
			if p.Version <= prev.Version {
				return nil, fmt.Errorf("load profile %s: its rules changed but its version is still %d; fix: raise version to %d or more",
					filepath.Join(dir, name+".yaml"), p.Version, prev.Version+1)
			}
			rep.Changed = append(rep.Changed, name)
		default:
			profiles[name] = prev // unchanged: keep the loaded value, so caches keyed by it (stamps) stay valid
		}
	}
	for name := range old {
		if profiles[name] == nil {
			rep.Removed = append(rep.Removed, name)
		}
	}
	cur := n.RA.Hierarchy()
	merged, refused := cur.RuntimeUpdate(next)
	rep.Refused = refused
	rep.Hierarchy = cur.Changed(next)
	for _, env := range merged.EnvironmentNames() {
		for _, pl := range merged.ProductLineNames(env) {
			for _, name := range merged.Environments[env].ProductLines[pl].Profiles {
				if profiles[name] == nil {
					return nil, fmt.Errorf("%s: environments.%s.product_lines.%s.profiles names %q, which is not in %s; fix: add %s.yaml there or remove the name",
						path, env, pl, name, dir, name)
				}
			}
		}
	}
	switch {
	case file.Store == nil && n.StoreChoice.Remembered:
		rep.StoreRefused = "the store: section was removed"
	case file.Store != nil && !config.SameStore(n.Dir, config.StoreURL(n.Dir, file.Store.DB), n.StoreChoice.DB):
		rep.StoreRefused = fmt.Sprintf("running on %s, %s:%d now says %s", config.Redact(storeName(n)), path, file.Store.Line, config.Redact(file.Store.DB))
	}
	rep.hierarchy, rep.profiles = merged, profiles
	slices.Sort(rep.Added)
	slices.Sort(rep.Changed)
	slices.Sort(rep.Removed)
	return rep, nil
}

// CommitReload installs what PrepareReload read.
func (n *Node) CommitReload(rep *PolicyReload) error {
	return n.RA.Reload(rep.hierarchy, rep.profiles)
}

func storeName(n *Node) string {
	if n.StoreChoice.DB == "" {
		return "sqlite:" + filepath.Join(n.Dir, "keyward.db")
	}
	return n.StoreChoice.DB
}

// sameRules reports whether two profiles state the same rules: everything but the free-text description (and
// the comments of the file, which parsing drops).
func sameRules(a, b *profile.Profile) bool {
	x, y := *a, *b
	x.Description, y.Description = "", ""
	return reflect.DeepEqual(&x, &y)
}
