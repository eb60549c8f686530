package hierarchy

import (
	"fmt"
	"reflect"
	"slices"
)

// RuntimeUpdate returns the configuration a running server changes to when keyward.yaml is reloaded: c with
// what may change at run time taken from next (the profiles each product line issues under and their firmware
// policies), and the fields that differ but may not, each as "path: why", which the server keeps as they were.
// The CAs a running server signs with follow what 'keyward ca create' makes, through the store, and their
// keys, algorithms and validity are theirs for life: changing them in keyward.yaml takes a restart (and a
// 'ca create' or rollover), never a reload.
func (c *Config) RuntimeUpdate(next *Config) (*Config, []string) {
	var refused []string
	out := *c
	out.Environments = make(map[string]*Environment, len(c.Environments))
	if c.Organization != next.Organization {
		refused = append(refused, "organization: names the CAs' subjects; restart to apply")
	}
	if c.PolicyArc != next.PolicyArc {
		refused = append(refused, "policy_arc: the policies CA certificates already carry; restart to apply")
	}
	for _, env := range Environments {
		cur, nxt := c.Environments[env], next.Environments[env]
		switch {
		case cur == nil && nxt == nil:
			continue
		case cur == nil:
			refused = append(refused, fmt.Sprintf("environments.%s: added; run 'keyward ca create --env %s' and restart", env, env))
			continue
		case nxt == nil:
			refused = append(refused, fmt.Sprintf("environments.%s: removed; a running server keeps serving it until restarted", env))
			out.Environments[env] = cur
			continue
		}
		e := *cur
		e.ProductLines = make(map[string]*ProductLineSpec, len(cur.ProductLines))
		if cur.Root != nxt.Root {
			refused = append(refused, fmt.Sprintf("environments.%s.root: the root CA's algorithm, validity and custody are fixed when it is made; restart after a rollover", env))
		}
		for _, pl := range sortedKeys(cur.ProductLines, nxt.ProductLines) {
			cp, np := cur.ProductLines[pl], nxt.ProductLines[pl]
			where := fmt.Sprintf("environments.%s.product_lines.%s", env, pl)
			switch {
			case cp == nil:
				refused = append(refused, where+": added; run 'keyward ca create --env "+env+"' and restart")
				continue
			case np == nil:
				refused = append(refused, where+": removed; a running server keeps serving it until restarted")
				e.ProductLines[pl] = cp
				continue
			}
			p := *cp
			if cp.Algorithm != np.Algorithm || cp.Validity != np.Validity {
				refused = append(refused, where+": the issuing CA's algorithm and validity are fixed when it is made; restart after a rollover")
			}
			p.Profiles = slices.Clone(np.Profiles)
			p.Firmware = np.Firmware
			e.ProductLines[pl] = &p
		}
		out.Environments[env] = &e
	}
	return &out, refused
}

// Changed reports whether the parts RuntimeUpdate takes from next differ from c's.
func (c *Config) Changed(next *Config) bool {
	for env, e := range c.Environments {
		ne := next.Environments[env]
		if ne == nil {
			continue
		}
		for pl, p := range e.ProductLines {
			np := ne.ProductLines[pl]
			if np != nil && (!slices.Equal(p.Profiles, np.Profiles) || !reflect.DeepEqual(p.Firmware, np.Firmware)) {
				return true
			}
		}
	}
	return false
}

func sortedKeys(a, b map[string]*ProductLineSpec) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
