package ra

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// Roles of principals.
const (
	RoleAdmin          = "admin"
	RoleCAOfficer      = "ca-officer"
	RoleAuditor        = "auditor"
	RoleReleaseSigner  = "release-signer"
	RoleFactoryStation = "factory-station"
	RoleDevice         = "device"
)

// OperatorRoles are the roles an operator token may carry.
var OperatorRoles = []string{RoleAdmin, RoleCAOfficer, RoleAuditor, RoleReleaseSigner}

// Principal is an authenticated caller.
type Principal struct {
	ID   string // e.g. "operator:admin", "station:site-a-01", "cli:root"
	Role string
	// Via, if set, names who presented the principal's credential when that is not the principal itself: the
	// operating-system user of a local CLI command run with a release signer's token ("cli:alice"). Audit
	// events record it beside the actor.
	Via string
}

// System is the principal of the service itself: changes no caller asked for (a delegated OCSP responder
// renewed, the server's TLS certificate re-issued).
func System(component string) Principal { return Principal{ID: component, Role: "system"} }

// Config wires an RA.
type Config struct {
	Store     store.Store
	CA        *ca.Custodian
	Hierarchy *hierarchy.Config
	Profiles  map[string]*profile.Profile
	Now       func() time.Time
	Logger    *slog.Logger
	// Site, if set, makes this a factory site's RA (site.go): every certificate is issued by the site CA,
	// through EST enrollment only.
	Site *SiteScope
	// Attestation maps a profile name to the secure-element vendor roots that an enrollment under that profile
	// must present an attestation certificate chaining to. A profile absent from the map needs no attestation.
	Attestation map[string]*x509.CertPool
	// AttestationErr, if set, says why the attestation configuration could not be read: enrollments then fail
	// closed, with this reason.
	AttestationErr error
	// Notify, if set, is called after every committed change with the actions of the audit events it appended:
	// the change feed's Poke for the actions someone follows, so that this process's caches and publisher
	// follow at once.
	Notify func(actions []string)
	// GroupCommit tunes group commit (group.go): how long a group may wait for requests on their way.
	GroupCommit GroupCommit
	// StampLifetime is how long a stamp of a profile shape issues certificates on the online path before it
	// is made again from a fresh full-path certificate (stamp.go; DefaultStampLifetime); 0 never stamps.
	StampLifetime time.Duration
}

// RA is the registration authority. It is safe for concurrent use.
type RA struct {
	cfg Config

	// siteRules caches compiled site subject rules (site.go).
	siteRules sync.Map
	// caches of what authentication reads on every request, kept only while the change feed is followed
	// (Changed), which clears them on every change to what they hold.
	caches caches
	// refusals counts the requests refused before authentication until their aggregated audit event (refused.go).
	refusals refusalCounts
	// omitState leaves the recorded state out of audit events: only for 'keyward bench audit', which measures
	// what recording it costs (OmitAuditStateForBenchmark).
	omitState atomic.Bool
	// group commits the transactions of decisions in groups (group.go).
	group *grouper
	// obs is told what was decided (observe.go).
	obs observer
	// stamps holds the stamps of the online path's profile shapes and its issuance counts (stamp.go).
	stamps stampCache
	// policy is the hierarchy and the profiles decisions follow; Reload replaces both at once.
	policy atomic.Pointer[policy]
}

// policy is what a reload of the configuration may change: the hierarchy declaration and the profiles.
type policy struct {
	hierarchy *hierarchy.Config
	profiles  map[string]*profile.Profile
}

// OmitAuditStateForBenchmark makes the RA append its audit events without the state they change (audit.
// StateDetail), so that a benchmark can measure what recording it costs. A log made so fails 'keyward audit
// verify': never call it outside a benchmark's own throwaway store.
func (r *RA) OmitAuditStateForBenchmark(omit bool) { r.omitState.Store(omit) }

// New returns an RA.
func New(cfg Config) (*RA, error) {
	if cfg.Store == nil || cfg.CA == nil || cfg.Hierarchy == nil || cfg.Profiles == nil {
		return nil, errors.New("ra: store, CA custodian, hierarchy and profiles are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &RA{cfg: cfg}
	r.policy.Store(&policy{hierarchy: cfg.Hierarchy, profiles: cfg.Profiles})
	r.group = newGrouper(cfg.Store, cfg.GroupCommit, cfg.Notify, cfg.Logger)
	r.group.obs = &r.obs
	return r, nil
}

// Reader returns the read-only view of the RA's store, for listings.
func (r *RA) Reader() store.Reader { return r.cfg.Store }

// Hierarchy returns the RA's hierarchy configuration (read-only).
func (r *RA) Hierarchy() *hierarchy.Config { return r.policy.Load().hierarchy }

// Profiles returns the RA's profiles (read-only).
func (r *RA) Profiles() map[string]*profile.Profile { return r.policy.Load().profiles }

// Reload makes h and profiles the hierarchy and profiles of every decision from now on, both at once: a
// decision under way finishes under what it read. It refuses, changing nothing, a hierarchy that names a profile
// absent from profiles. The CAs themselves are not touched: they are the store's.
func (r *RA) Reload(h *hierarchy.Config, profiles map[string]*profile.Profile) error {
	if h == nil || profiles == nil {
		return errors.New("ra: reload needs a hierarchy and profiles")
	}
	for _, env := range h.EnvironmentNames() {
		for _, pl := range h.ProductLineNames(env) {
			for _, name := range h.Environments[env].ProductLines[pl].Profiles {
				if profiles[name] == nil {
					return errorf(KindBadRequest, "product line %s/%s names profile %q, which is not among the profiles loaded", env, pl, name)
				}
			}
		}
	}
	r.policy.Store(&policy{hierarchy: h, profiles: profiles})
	return nil
}

// Now returns the RA's clock reading, UTC.
func (r *RA) Now() time.Time { return r.now() }

// Logger returns the RA's logger.
func (r *RA) Logger() *slog.Logger { return r.cfg.Logger }

func (r *RA) now() time.Time { return r.cfg.Now().UTC() }

// tx runs fn in a savepoint of a group's store transaction (group.go) and returns once the group has committed;
// the change feed is notified of the actions fn appended. Every decision's change and its audit event go
// through here: no other package opens a transaction. The transaction is recorded (recorder): the state each
// store write leaves is added to the details of the audit event appended after it, so that the log commits to
// the change itself. fn must not call tx (or refuse): it runs while a group is committing.
func (r *RA) tx(ctx context.Context, fn func(store.Tx) error) error {
	return r.txFor(ctx, nil, fn)
}

// txFor is tx for a request announced with r.group.expect, whose ticket it uses up.
func (r *RA) txFor(ctx context.Context, tk *ticket, fn func(store.Tx) error) error {
	var actions []string
	var issued []issuance
	err := r.group.run(ctx, tk, func(tx store.Tx) error {
		actions, issued = actions[:0], issued[:0]
		rec := &recorder{Tx: tx, actions: &actions, issued: &issued, omit: r.omitState.Load()}
		if err := fn(rec); err != nil {
			return err
		}
		return rec.flush(ctx)
	}, &actions)
	if err == nil {
		r.observeIssued(issued)
	}
	return err
}

// counter runs fn in a transaction that changes no decided state and appends no audit event: taking the next
// number of a sequence (CRL numbers, filter versions, export sequence numbers), or storing what the publisher
// derives from audited revocations (CRLs) and the audit log's own checkpoints. It notifies nobody.
func (r *RA) counter(ctx context.Context, fn func(store.Tx) error) error {
	return r.cfg.Store.Tx(ctx, fn)
}

// maxReason bounds the reason stored with a refusal: Keyward's own text, which may quote what the caller sent.
const maxReason = 2 * audit.MaxDetail

// refuse records a refusal in its own transaction; nothing else changes. details may be nil; the reason is
// added. A failure to record it is logged, not returned: the caller reports the refusal itself.
//
// A refused request is the caller's input, not a decided state: the actor, subject and every detail value are
// escaped and cut to audit.MaxDetail bytes (the reason to maxReason), so that a 60 KB common name or a NUL byte
// in a refused CSR stores a few hundred printable bytes.
func (r *RA) refuse(ctx context.Context, p Principal, action, subject string, details map[string]string, cause error) {
	if err := r.appendRefusal(ctx, p, action, subject, details, cause); err != nil {
		r.cfg.Logger.ErrorContext(ctx, "audit of refusal failed", "actor", audit.Bound(p.ID, audit.MaxDetail), "action", action, "err", err)
		return
	}
	if o := r.obs.get(); o != nil {
		o.Refused(action, KindOf(cause).String())
	}
}

func (r *RA) appendRefusal(ctx context.Context, p Principal, action, subject string, details map[string]string, cause error) error {
	d := make(map[string]string, len(details)+2)
	for k, v := range details {
		if v != "" {
			d[k] = audit.Bound(v, audit.MaxDetail)
		}
	}
	if p.Role != "" {
		d["role"] = audit.Bound(p.Role, audit.MaxDetail)
	}
	if p.Via != "" {
		d["via"] = audit.Bound(p.Via, audit.MaxDetail)
	}
	d["reason"] = audit.Bound(cause.Error(), maxReason)
	if subject == "" {
		subject = "-"
	}
	return r.group.run(ctx, nil, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, &audit.Event{Time: r.now(), Actor: audit.Bound(p.ID, audit.MaxDetail), Action: action,
			Subject: audit.Bound(subject, audit.MaxDetail), Outcome: audit.OutcomeRefused, Details: d})
	}, nil)
}

// success appends the audit event of a change made in tx.
func (r *RA) success(ctx context.Context, tx store.Tx, p Principal, action, subject string, at time.Time, details map[string]string) error {
	if p.Via != "" {
		d := make(map[string]string, len(details)+1)
		for k, v := range details {
			d[k] = v
		}
		d["via"] = p.Via
		details = d
	}
	return tx.AppendAudit(ctx, &audit.Event{Time: at, Actor: p.ID, Action: action, Subject: subject, Outcome: audit.OutcomeSuccess, Details: details})
}

// authorize refuses, audited, a principal whose role is not one of roles.
func (r *RA) authorize(ctx context.Context, p Principal, action, subject, what string, roles ...string) error {
	for _, role := range roles {
		if p.Role == role {
			return nil
		}
	}
	err := errorf(KindForbidden, "role %q may not %s (allowed: %s)", p.Role, what, joinSorted(roles))
	r.refuse(ctx, p, action, subject, nil, err)
	return err
}

func joinSorted(list []string) string {
	s := append([]string(nil), list...)
	sort.Strings(s)
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += v
	}
	return out
}
