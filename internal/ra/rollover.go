package ra

// Rollover: the next generation of an issuing or station CA. Under an online root it is made and switched to
// in one step (Rollover); under an offline root it is requested with RequestCA, signed in a ceremony and
// switched to by ImportCA. Either way the switch is one transaction: from its commit issuance and renewals use
// the new generation on every node, and the previous one, superseded, keeps signing CRLs and OCSP answers for
// what it issued until the last of those certificates expires; then it can be retired and its key destroyed.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// RolloverRequest names the role to roll over.
type RolloverRequest struct {
	Environment string
	Kind        string // issuing (default) or station
	ProductLine string // issuing CAs
	// Keys is where the new key is generated (nil: the software keystore).
	Keys keystore.Keystore
}

// Rollover makes the next generation of an issuing or station CA under env's online root and switches the role
// to it, superseding the current generation, in one transaction.
func (r *RA) Rollover(ctx context.Context, p Principal, req RolloverRequest) (*store.CA, error) {
	if req.Kind == "" {
		req.Kind = store.CAKindIssuing
	}
	role := RoleID(req.Kind, req.Environment, req.ProductLine, "")
	if err := r.authorize(ctx, p, audit.ActionCACreate, role, "roll CAs over", RoleAdmin); err != nil {
		return nil, err
	}
	row, err := r.rollover(ctx, p, req, role)
	if err != nil {
		r.refuse(ctx, p, audit.ActionCACreate, role, map[string]string{"rollover": "true", "kind": req.Kind}, err)
		return nil, err
	}
	return row, nil
}

func (r *RA) rollover(ctx context.Context, p Principal, req RolloverRequest, role string) (*store.CA, error) {
	env := r.Hierarchy().Environments[req.Environment]
	if env == nil {
		return nil, FieldErrorf(KindBadRequest, "environment", "environment %q is not declared in keyward.yaml (declared: %v)", req.Environment, r.Hierarchy().EnvironmentNames())
	}
	validity, alg := stationCAValidity, keystore.ECDSAP256
	switch req.Kind {
	case store.CAKindIssuing:
		pl, err := r.productSpec(req.Environment, req.ProductLine)
		if err != nil {
			return nil, err
		}
		if alg, err = keystore.ParseAlgorithm(pl.Algorithm); err != nil {
			return nil, wrap(KindBadRequest, err)
		}
		validity = time.Duration(pl.Validity)
	case store.CAKindStation:
		if req.ProductLine != "" {
			return nil, FieldErrorf(KindBadRequest, "product_line", "a station CA serves the whole environment: --product does not apply")
		}
	case store.CAKindSite:
		return nil, FieldErrorf(KindBadRequest, "kind", "a site CA is not rolled over: it issues in one window and quota; give the site a new CA under another site name ('keyward factory site-ca' or the ceremony)")
	default:
		return nil, FieldErrorf(KindBadRequest, "kind", "kind %q cannot be rolled over here (issuing or station; a root rolls over in a ceremony: 'keyward ca ceremony root-rollover')", req.Kind)
	}
	if env.Root.Offline {
		return nil, errorf(KindBadRequest, "environment %q has an offline root: roll %s over through a ceremony: 'keyward ca csr --env %s --kind %s%s --keystore URI --out next.csr', "+
			"'keyward ca ceremony sign' with the root, then 'keyward ca import' (the import switches issuance to the new generation)", req.Environment, role, req.Environment, req.Kind, productFlag(req.ProductLine))
	}
	reqs, err := r.cfg.Store.ListCARequests(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	for _, q := range reqs {
		if q.State == store.CARequestPending && inRole(q.CAID, role) {
			return nil, errorf(KindConflict, "a rollover of %s is pending already (request %s since %s): import its certificate or cancel it ('keyward ca cancel %s')",
				role, q.CAID, q.CreatedAt.Format(time.RFC3339), q.CAID)
		}
	}
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	gens, top := generations(cas, role)
	var current *store.CA
	for _, c := range gens {
		if c.Status == store.CAStatusActive {
			current = c
		}
	}
	if current == nil {
		return nil, errorf(KindNotFound, "%s has no active CA to roll over (create it with 'keyward ca create --env %s')", role, req.Environment)
	}
	root, err := r.currentRoot(ctx, req.Environment)
	if err != nil {
		return nil, err
	}
	rootIss, err := r.issuer(ctx, root.ID)
	if err != nil {
		return nil, err
	}
	gen := top + 1
	s := subordinate{id: GenerationID(role, gen), env: req.Environment, product: req.ProductLine, kind: req.Kind, parent: rootIss,
		subject: r.kindSubject(req.Kind, req.Environment, req.ProductLine, "", gen), validity: validity, keys: req.Keys, alg: alg,
		clampToParent: req.Kind == store.CAKindStation}
	if req.Kind == store.CAKindStation {
		s.edit = func(t *x509.Certificate) { t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }
	}
	pc, err := r.newSubordinate(ctx, s)
	if err != nil {
		return nil, err
	}
	pc.row.Generation = gen
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := r.recordCA(ctx, tx, p, pc); err != nil {
			return err
		}
		return r.supersede(ctx, tx, p, current.ID, pc.row.ID, pc.row.CreatedAt)
	})
	if errors.Is(err, store.ErrExists) {
		err = errorf(KindConflict, "%s was rolled over meanwhile by another process", role)
	}
	if err != nil {
		return nil, r.abandon(ctx, fmt.Errorf("record %s: %w", pc.row.ID, err), pc.key.URI)
	}
	r.caChanged(ctx, current.ID)
	return pc.row, nil
}

func productFlag(product string) string {
	if product == "" {
		return ""
	}
	return " --product " + product
}

// overlap returns the certificates that verifiers need beside the current chain of role during a rollover: the
// earlier generations that still answer for certificates they issued (superseded, not expired), newest first.
func (r *RA) overlap(ctx context.Context, role, current string) ([][]byte, error) {
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	gens, _ := generations(cas, role)
	now := r.now()
	var out [][]byte
	for i := len(gens) - 1; i >= 0; i-- {
		c := gens[i]
		if c.ID != current && c.Status == store.CAStatusSuperseded && c.NotAfter.After(now) && len(c.CertDER) > 0 {
			out = append(out, c.CertDER)
		}
	}
	return out, nil
}

// rootOverlap returns the roots of env other than its current one that still anchor certificates in use
// (superseded, not expired), for a root rollover's overlap.
func (r *RA) rootOverlap(ctx context.Context, env, current string) ([][]byte, error) {
	return r.overlap(ctx, hierarchy.RootID(env), current)
}
