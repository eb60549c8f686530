package sqlschema

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one schema change, read from the file NNNN_description.sql.
type Migration struct {
	Version int    // NNNN
	Name    string // the file name, as schema_migrations records it
	SQL     string
}

// VersionQuery reads the schema version a database records: the highest applied migration, 0 for a new one.
// Its text is the same in both dialects.
const VersionQuery = `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`

// Load reads the migrations in directory dir of fsys (a backend's embedded files) and returns them in version
// order. It fails on a .sql file not named NNNN_description.sql with NNNN positive, on two files sharing a
// version, and on a directory without migrations.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	ms := make([]Migration, 0, len(names))
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", base)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: base, SQL: string(b)})
	}
	if len(ms) == 0 {
		return nil, errors.New("no migrations in " + dir)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// Pending returns the migrations of ms (in version order, as Load returns them) that a database at schema
// version current has not applied, in the order to apply them. It refuses a database newer than the newest
// migration: an older Keyward must not write to a schema it does not know.
func Pending(ms []Migration, current int) ([]Migration, error) {
	latest := 0
	if len(ms) > 0 {
		latest = ms[len(ms)-1].Version
	}
	if current > latest {
		return nil, fmt.Errorf("database schema version %d is newer than this Keyward's %d: upgrade Keyward", current, latest)
	}
	i := sort.Search(len(ms), func(i int) bool { return ms[i].Version > current })
	return ms[i:], nil
}

// AppliedQuery reads the versions of the migrations a database has applied. Its text is the same in both
// dialects.
const AppliedQuery = `SELECT version FROM schema_migrations ORDER BY version`

// Unapplied returns the migrations of ms (in version order, as Load returns them) whose version is not among
// applied, in the order to apply them. Unlike Pending it also returns a migration numbered below the newest
// applied one: versions are reserved by changes made in parallel and merged in any order, so a database created
// between two merges may have 10 and 12 applied when 11 arrives, and must still get 11. It refuses a database
// newer than the newest migration, as Pending does.
func Unapplied(ms []Migration, applied []int) ([]Migration, error) {
	current := 0
	done := make(map[int]bool, len(applied))
	for _, v := range applied {
		done[v] = true
		current = max(current, v)
	}
	if _, err := Pending(ms, current); err != nil {
		return nil, err
	}
	var out []Migration
	for _, m := range ms {
		if !done[m.Version] {
			out = append(out, m)
		}
	}
	return out, nil
}
