package ra

// Roles and generations. A role is a place in the hierarchy that one CA fills at a time: the issuing CA of a
// product line, the station CA or the root's OCSP responder of an environment, a factory site's CA. A rollover
// fills the role with the next generation, whose id is the role's id followed by "@" and the generation
// ("production/implant@2"); the first generation keeps the role's id, so CAs made before rollovers existed
// keep theirs. Issuance always asks the role for its active generation.

import (
	"context"
	"fmt"
	"strings"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/store"
)

// OCSPSignerID is the role id of env's root OCSP responder: the delegate an offline root certifies in a
// ceremony so that the status of its subordinates is answered while it is offline.
func OCSPSignerID(env string) string { return env + "/root-ocsp" }

// RoleID returns the role id of a CA of kind in env (product line for issuing and site CAs, site for site CAs).
func RoleID(kind, env, product, site string) string {
	switch kind {
	case store.CAKindIssuing:
		return hierarchy.IssuingID(env, product)
	case store.CAKindStation:
		return StationCAID(env)
	case store.CAKindSite:
		return SiteCAID(env, product, site)
	case store.CAKindOCSPSigner:
		return OCSPSignerID(env)
	case store.CAKindRoot:
		return hierarchy.RootID(env)
	}
	return ""
}

// GenerationID is the CA id of generation gen of role.
func GenerationID(role string, gen int) string {
	if gen <= 1 {
		return role
	}
	return fmt.Sprintf("%s@%d", role, gen)
}

// inRole reports whether CA id is a generation of role.
func inRole(id, role string) bool { return id == role || strings.HasPrefix(id, role+"@") }

// generations returns the CAs of role, and the highest generation among them (0 if none).
func generations(cas []*store.CA, role string) ([]*store.CA, int) {
	var out []*store.CA
	top := 0
	for _, c := range cas {
		if inRole(c.ID, role) {
			out = append(out, c)
			top = max(top, c.Generation)
		}
	}
	return out, top
}

// currentID returns the CA that fills role now: its active generation, else its newest generation (so that a
// refusal names the CA that was revoked or retired), else the role id itself (a CA not created yet). It is
// cached until the next change to a CA.
func (r *RA) currentID(ctx context.Context, role string) (string, error) {
	r.caches.mu.Lock()
	id, ok := r.caches.current[role]
	r.caches.mu.Unlock()
	if ok {
		return id, nil
	}
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return "", wrap(KindUnavailable, err)
	}
	gens, _ := generations(cas, role)
	id = role
	newest := 0
	for _, c := range gens {
		if c.Status == store.CAStatusActive {
			id = c.ID
			break
		}
		if c.Generation > newest {
			id, newest = c.ID, c.Generation
		}
	}
	r.caches.mu.Lock()
	if r.caches.current == nil {
		r.caches.current = map[string]string{}
	}
	r.caches.current[role] = id
	r.caches.mu.Unlock()
	return id, nil
}

// caChanged drops what this RA caches about CAs after it changed one, and has the custodian re-check each
// changed CA at once (other processes learn it from the change feed).
func (r *RA) caChanged(ctx context.Context, ids ...string) {
	r.caches.clear(false, false, true)
	for _, id := range ids {
		if id != "" {
			r.cfg.CA.Invalidate(ctx, id)
		}
	}
}
