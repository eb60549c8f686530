package evidence

import (
	"sort"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// Glossary is the key glossary of a pack: every key Keyward holds for the scope, one row each, and the keys
// held on devices and stations, one row per purpose, algorithm and state (an installation may hold millions;
// 'keyward key list' has each).
type Glossary struct {
	Keys       []GlossaryKey    `json:"keys"`
	DeviceKeys []DeviceKeyGroup `json:"device_keys"`
}

// GlossaryKey is one key by URI: never its material.
type GlossaryKey struct {
	URI       string `json:"uri"`
	Purpose   string `json:"purpose"`
	Algorithm string `json:"algorithm"`
	// Custody is where the key lives: software (the sealed software keystore), pkcs11 (an HSM token, the URI
	// being its RFC 7512 name), device.
	Custody    string     `json:"custody"`
	State      string     `json:"state"`
	StateSince time.Time  `json:"state_since"`
	Owner      string     `json:"owner"`
	CreatedAt  time.Time  `json:"created_at"`
	Destroyed  *time.Time `json:"destroyed_at,omitempty"`
	// RotatedAt is when a later generation took over the role of the CA this key signs for (a rollover).
	RotatedAt *time.Time `json:"rotated_at,omitempty"`
	// RotateBy is when the key must have been rotated at the latest: the end of its CA certificate's validity,
	// after which it certifies nothing. Empty for a key that rotates on an operator's decision only.
	RotateBy *time.Time `json:"rotate_by,omitempty"`
	// Environment and ProductLine are the key's scope; both empty for the installation's own keys.
	Environment string `json:"environment,omitempty"`
	ProductLine string `json:"product_line,omitempty"`
}

// DeviceKeyGroup counts the keys held outside Keyward (on devices and stations) of one purpose, algorithm and
// state.
type DeviceKeyGroup struct {
	Purpose   string     `json:"purpose"`
	Algorithm string     `json:"algorithm"`
	Custody   string     `json:"custody"`
	State     string     `json:"state"`
	Count     int        `json:"count"`
	First     time.Time  `json:"first_created_at"`
	Last      time.Time  `json:"last_created_at"`
	Destroyed *time.Time `json:"last_destroyed_at,omitempty"`
}

// glossary builds the key glossary for in's scope.
func (in *Input) glossary() *Glossary {
	cas := map[string]*store.CA{}
	for _, c := range in.CAs {
		cas[c.ID] = c
	}
	// next[c.ID] is the CA that superseded c: the next generation of the same role.
	next := map[string]*store.CA{}
	for _, c := range in.CAs {
		for _, d := range in.CAs {
			if d.Environment == c.Environment && d.ProductLine == c.ProductLine && d.Kind == c.Kind && d.Generation == c.Generation+1 && c.Kind != store.CAKindRoot {
				next[c.ID] = d
			}
		}
	}
	g := &Glossary{Keys: []GlossaryKey{}, DeviceKeys: []DeviceKeyGroup{}}
	groups := map[[4]string]*DeviceKeyGroup{}
	for _, k := range in.Keys {
		s := in.keyScope(k, cas)
		if !in.in(s) {
			continue
		}
		if k.Location == "device" {
			id := [4]string{k.Purpose, k.Algorithm, k.Location, k.State}
			grp := groups[id]
			if grp == nil {
				grp = &DeviceKeyGroup{Purpose: k.Purpose, Algorithm: k.Algorithm, Custody: k.Location, State: k.State, First: k.CreatedAt.UTC(), Last: k.CreatedAt.UTC()}
				groups[id] = grp
			}
			grp.Count++
			if k.CreatedAt.Before(grp.First) {
				grp.First = k.CreatedAt.UTC()
			}
			if k.CreatedAt.After(grp.Last) {
				grp.Last = k.CreatedAt.UTC()
			}
			if k.DestroyedAt != nil && (grp.Destroyed == nil || k.DestroyedAt.After(*grp.Destroyed)) {
				d := k.DestroyedAt.UTC()
				grp.Destroyed = &d
			}
			continue
		}
		gk := GlossaryKey{URI: k.URI, Purpose: k.Purpose, Algorithm: k.Algorithm, Custody: k.Location, State: k.State,
			StateSince: k.StateChangedAt.UTC(), Owner: k.Owner, CreatedAt: k.CreatedAt.UTC(), Environment: s.env, ProductLine: s.product}
		if k.DestroyedAt != nil {
			d := k.DestroyedAt.UTC()
			gk.Destroyed = &d
		}
		if c := cas[k.Owner]; c != nil && c.KeyURI == k.URI {
			end := c.NotAfter.UTC()
			gk.RotateBy = &end
			if n := next[c.ID]; n != nil {
				at := n.CreatedAt.UTC()
				gk.RotatedAt = &at
			}
		}
		g.Keys = append(g.Keys, gk)
	}
	sort.Slice(g.Keys, func(i, j int) bool {
		a, b := g.Keys[i], g.Keys[j]
		if a.Purpose != b.Purpose {
			return a.Purpose < b.Purpose
		}
		return a.URI < b.URI
	})
	for _, grp := range groups {
		g.DeviceKeys = append(g.DeviceKeys, *grp)
	}
	sort.Slice(g.DeviceKeys, func(i, j int) bool {
		a, b := g.DeviceKeys[i], g.DeviceKeys[j]
		if a.Purpose != b.Purpose {
			return a.Purpose < b.Purpose
		}
		if a.Algorithm != b.Algorithm {
			return a.Algorithm < b.Algorithm
		}
		return a.State < b.State
	})
	return g
}
