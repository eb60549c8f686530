package ra

import (
	"context"
	"errors"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/store"
)

// Check is the outcome of one readiness check.
type Check struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Note says why a check that passed did nothing (an offline root's key is not held here).
	Note string `json:"note,omitempty"`
}

// NewCheck is the outcome of check name: ok when err is nil.
func NewCheck(name string, err error) Check {
	if err != nil {
		return Check{Name: name, Error: audit.Bound(err.Error(), 2*audit.MaxDetail)}
	}
	return Check{Name: name, OK: true}
}

// Readiness checks what a node needs to serve: the database answers, and every active CA whose key this node
// holds signs a probe through its backend (ca.Custodian.ProbeKey: the token or keystore is reachable and the
// key is usable). An offline root passes with a note: its key is not held here by design.
func (r *RA) Readiness(ctx context.Context) []Check {
	cas, err := r.cfg.Store.ListCAs(ctx)
	out := []Check{NewCheck("database", err)}
	if err != nil {
		return out
	}
	for _, c := range cas {
		if c.Status != store.CAStatusActive || (r.cfg.Site != nil && c.ID != r.cfg.Site.CAID) {
			continue
		}
		name := "ca-key:" + c.ID
		err := r.cfg.CA.ProbeKey(ctx, c.ID)
		if errors.Is(err, ca.ErrOffline) {
			out = append(out, Check{Name: name, OK: true, Note: "offline root: its key is not held here"})
			continue
		}
		out = append(out, NewCheck(name, err))
	}
	return out
}
