package ra

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/auditproof"
)

// The audit log as a Merkle tree (RFC 9162): event n is leaf n-1, its leaf the event's canonical encoding
// (auditproof.EncodeEvent), which also chains the events by hash. Checkpoints (c2sp.org/tlog-checkpoint) sign
// the tree's size and root with the installation's Ed25519 audit-signing key; the custodian signs, the RA
// decides when. A checkpoint appends no audit event (it would change the tree it describes): it is stored with
// the counter transactions.

// AuditOriginPrefix starts every audit log origin: "keyward.audit/" and the first 8 bytes of the SHA-256 of the
// log's Ed25519 public key, in hex. It names the log in every checkpoint and is the name of its verifier key.
const AuditOriginPrefix = "keyward.audit/"

// AuditOrigin returns the origin of the log whose checkpoints pub verifies.
func AuditOrigin(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return AuditOriginPrefix + hex.EncodeToString(sum[:8])
}

// errNoAuditLog: nothing was checkpointed yet.
func errNoAuditLog() error {
	return errorf(KindNotFound, "the audit log has no checkpoint and no audit key yet: make the first with 'keyward audit checkpoint'")
}

// auditLog returns the log's identity, generating its Ed25519 audit-signing key in ks (nil: the software
// keystore) when there is none: on first need, one per installation. Two processes racing to create it keep
// the first, and the loser destroys its key.
func (r *RA) auditLog(ctx context.Context, p Principal, ks keystore.Keystore) (*store.AuditLog, error) {
	l, err := r.cfg.Store.GetAuditLog(ctx)
	switch {
	case err == nil:
		return l, nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, wrap(KindUnavailable, err)
	}
	key, loc, err := r.cfg.CA.GenerateKey(ctx, ks, keystore.PurposeAuditSigning, keystore.Ed25519, "audit log checkpoints")
	if errors.Is(err, errors.ErrUnsupported) {
		// Signed notes are Ed25519 (c2sp.org/signed-note); a keystore that cannot hold one cannot hold this key.
		return nil, FieldErrorf(KindBadRequest, "keystore", "the audit key signs C2SP signed notes, which need Ed25519, and this keystore cannot generate Ed25519 keys (%v): create it in the software keystore", err)
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	pub, ok := key.Public.(ed25519.PublicKey)
	if !ok {
		return nil, r.abandon(ctx, errorf(KindInternal, "audit key %s is %T, want Ed25519", key.URI, key.Public), key.URI)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, r.abandon(ctx, wrap(KindInternal, err), key.URI)
	}
	sum := sha256.Sum256(spki)
	now := r.now()
	l = &store.AuditLog{Origin: AuditOrigin(pub), KeyURI: key.URI, CreatedAt: now}
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertAuditLog(ctx, l); err != nil {
			return err
		}
		return r.recordKey(ctx, tx, p, key, loc, l.Origin, store.KeyActive, sum[:], now)
	})
	if err != nil {
		err = r.abandon(ctx, err, key.URI)
		if errors.Is(err, store.ErrExists) {
			if l, err := r.cfg.Store.GetAuditLog(ctx); err == nil {
				return l, nil
			}
		}
		return nil, wrap(KindUnavailable, fmt.Errorf("create the audit log key: %w", err))
	}
	return l, nil
}

// auditVerifierKey returns the note verifier key of log l.
func (r *RA) auditVerifierKey(ctx context.Context, l *store.AuditLog) (string, ed25519.PublicKey, error) {
	pk, err := r.cfg.CA.PublicKey(ctx, l.KeyURI, keystore.PurposeAuditSigning)
	if err != nil {
		return "", nil, wrap(KindUnavailable, fmt.Errorf("audit key %s: %w", l.KeyURI, err))
	}
	pub, ok := pk.(ed25519.PublicKey)
	if !ok {
		return "", nil, errorf(KindIntegrity, "audit key %s is %T, not the Ed25519 key checkpoints are signed with", l.KeyURI, pk)
	}
	if AuditOrigin(pub) != l.Origin {
		return "", nil, errorf(KindIntegrity, "audit key %s does not match the log's origin %s (the audit_log row was changed)", l.KeyURI, l.Origin)
	}
	vkey, err := auditproof.VerifierKey(l.Origin, pub)
	if err != nil {
		return "", nil, wrap(KindInternal, err)
	}
	return vkey, pub, nil
}

// AuditVerifierKey returns the log's note verifier key ("<origin>+<hash>+<base64 key>", golang.org/x/mod/sumdb/
// note): what an inspector needs to check checkpoints and proofs ('keyward audit check-proof --key').
func (r *RA) AuditVerifierKey(ctx context.Context, p Principal) (string, error) {
	if err := r.authorize(ctx, p, audit.ActionAuditCheckpoint, "-", "read the audit key", RoleAdmin, RoleAuditor, RoleCAOfficer, "system"); err != nil {
		return "", err
	}
	l, err := r.cfg.Store.GetAuditLog(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return "", errNoAuditLog()
	} else if err != nil {
		return "", wrap(KindUnavailable, err)
	}
	vkey, _, err := r.auditVerifierKey(ctx, l)
	return vkey, err
}

// LatestCheckpoint returns the newest stored checkpoint, for serving; ErrNotFound-kind if there is none.
func (r *RA) LatestCheckpoint(ctx context.Context) (*store.Checkpoint, error) {
	c, err := r.cfg.Store.LatestCheckpoint(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoAuditLog()
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	return c, nil
}

// errStop ends a walk early.
var errStop = errors.New("stop")

// Checkpoint signs and stores a checkpoint of the whole log, creating the audit key in ks (nil: the software
// keystore) if there is none, and returns it; if no event was appended since the newest checkpoint, it returns
// that one. It never signs a tree smaller than one signed before (RFC 9162 2.1.4: a log only grows): that is
// refused as an integrity failure, since events were removed.
func (r *RA) Checkpoint(ctx context.Context, p Principal, ks keystore.Keystore) (*store.Checkpoint, error) {
	if err := r.authorize(ctx, p, audit.ActionAuditCheckpoint, "-", "make audit checkpoints", RoleAdmin, RoleAuditor, "system"); err != nil {
		return nil, err
	}
	l, err := r.auditLog(ctx, p, ks)
	if err != nil {
		return nil, err
	}
	// The newest checkpoint is read before the head: another node may append events and sign a checkpoint of
	// them between the two reads, and a head read first would then look smaller than that checkpoint.
	latest, err := r.cfg.Store.LatestCheckpoint(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, wrap(KindUnavailable, err)
	}
	head, _, herr := r.cfg.Store.AuditHead(ctx)
	if herr != nil {
		return nil, wrap(KindUnavailable, herr)
	}
	tree := audit.NewTree()
	switch {
	case errors.Is(err, store.ErrNotFound):
		latest = nil
	case latest.Size > head:
		return nil, errorf(KindIntegrity, "the audit log has %d events, but a checkpoint of %d events was signed at %s: events were removed from the log; nothing was signed",
			head, latest.Size, latest.CreatedAt.Format(time.RFC3339))
	case latest.Size == head:
		return latest, nil
	default:
		if tree, err = audit.ResumeTree(uint64(latest.Size), latest.Frontier); err != nil {
			return nil, errorf(KindIntegrity, "checkpoint of %d events: %v", latest.Size, err)
		}
	}
	from := int64(tree.Size())
	err = r.cfg.Store.WalkAudit(ctx, from, func(e *audit.Event) error {
		if e.Seq > head {
			return errStop
		}
		enc := auditproof.EncodeEvent(e)
		if sum := sha256.Sum256(enc); e.Seq != int64(tree.Size())+1 || !bytes.Equal(sum[:], e.Hash) {
			return errorf(KindIntegrity, "audit event %d is not the next event of the log or does not match its hash: run 'keyward audit verify'; nothing was signed", e.Seq)
		}
		tree.AppendEncoded(enc)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, wrap(KindUnavailable, err)
	}
	if int64(tree.Size()) != head {
		return nil, errorf(KindIntegrity, "the audit log's head is event %d, but only %d events could be read: run 'keyward audit verify'; nothing was signed", head, tree.Size())
	}
	body := auditproof.Checkpoint{Origin: l.Origin, Size: tree.Size(), Root: tree.Root()}
	note, err := r.signCheckpoint(ctx, l, body)
	if err != nil {
		return nil, err
	}
	c := &store.Checkpoint{Size: head, Root: body.Root, Frontier: tree.Frontier(), Note: note, CreatedAt: r.now()}
	err = r.counter(ctx, func(tx store.Tx) error { return tx.InsertCheckpoint(ctx, c) })
	if errors.Is(err, store.ErrExists) {
		// Another process signed this size at the same moment: the same tree, so keep its checkpoint.
		return r.LatestCheckpoint(ctx)
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	return c, nil
}

func (r *RA) signCheckpoint(ctx context.Context, l *store.AuditLog, body auditproof.Checkpoint) ([]byte, error) {
	_, pub, err := r.auditVerifierKey(ctx, l)
	if err != nil {
		return nil, err
	}
	s, err := auditproof.NewSigner(l.Origin, pub, func(msg []byte) ([]byte, error) {
		return r.cfg.CA.SignCheckpoint(ctx, l.KeyURI, msg)
	})
	if err != nil {
		return nil, wrap(KindInternal, err)
	}
	note, err := auditproof.Sign(body, s)
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("sign the audit checkpoint of %d events: %w", body.Size, err))
	}
	return note, nil
}

// openCheckpoint checks a checkpoint brought from outside (field names it in errors) against this log's key:
// a file that is not a checkpoint is a bad request; one that is, but is not signed by this log's key or names
// another log, fails verification (KindIntegrity): either the file is not this installation's, or the key or
// origin recorded here was replaced.
func (r *RA) openCheckpoint(ctx context.Context, field string, signed []byte) (*store.AuditLog, auditproof.Checkpoint, error) {
	l, err := r.cfg.Store.GetAuditLog(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, auditproof.Checkpoint{}, FieldErrorf(KindIntegrity, field, "a checkpoint was given, but this store holds no audit log identity or key: the log was deleted or replaced since the checkpoint was made")
	} else if err != nil {
		return nil, auditproof.Checkpoint{}, wrap(KindUnavailable, err)
	}
	vkey, _, err := r.auditVerifierKey(ctx, l)
	if err != nil {
		return nil, auditproof.Checkpoint{}, err
	}
	c, err := auditproof.Open(signed, vkey)
	switch {
	case errors.Is(err, auditproof.ErrMalformed):
		return nil, c, FieldErrorf(KindBadRequest, field, "%v: give a checkpoint written by 'keyward audit checkpoint --out' or served at /audit/checkpoint", err)
	case err != nil:
		return nil, c, FieldErrorf(KindIntegrity, field, "%v: it does not verify with this log's key %s", err, l.Origin)
	}
	return l, c, nil
}

// AuditVerifyOptions adds an outside checkpoint to a verification.
type AuditVerifyOptions struct {
	// Checkpoint is a signed checkpoint saved elsewhere; the log must extend it (RFC 9162 2.1.4).
	Checkpoint []byte
}

// AuditReport is what a verification found intact.
type AuditReport struct {
	Events      int64  `json:"events"`
	Root        string `json:"root"` // base64, as in checkpoints
	Origin      string `json:"origin,omitempty"`
	Checkpoints int    `json:"checkpoints"` // stored checkpoints verified
	// Extends is the size of the outside checkpoint the log was proved to extend, 0 if none was given.
	Extends int64 `json:"extends,omitempty"`
	Records int   `json:"records"` // rows of the state tables compared with the log
}

// VerifyAudit recomputes the audit log and checks it: every event's chained hash, the Merkle tree, every
// stored checkpoint's signature and root (so a rewrite that recomputed every hash still fails), the outside
// checkpoint of opts with a consistency proof, and the certificates, CAs, keys, devices and stations tables
// against the state the log recorded. The first failure is a KindIntegrity error naming it.
func (r *RA) VerifyAudit(ctx context.Context, p Principal, opts AuditVerifyOptions) (*AuditReport, error) {
	if err := r.authorize(ctx, p, audit.ActionAuditVerify, "-", "verify the audit log", RoleAdmin, RoleAuditor, RoleCAOfficer, "system"); err != nil {
		return nil, err
	}
	rep := &AuditReport{}
	var outside *auditproof.Checkpoint
	if len(opts.Checkpoint) > 0 {
		_, c, err := r.openCheckpoint(ctx, "checkpoint", opts.Checkpoint)
		if err != nil {
			return nil, err
		}
		outside = &c
	}
	head, _, err := r.cfg.Store.AuditHead(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	// Stored checkpoints: each must verify with the log's key and name a tree no larger than the log.
	stored := map[int64]*store.Checkpoint{}
	l, err := r.cfg.Store.GetAuditLog(ctx)
	var vkey string
	switch {
	case err == nil:
		rep.Origin = l.Origin
		if vkey, _, err = r.auditVerifierKey(ctx, l); err != nil {
			return nil, err
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, wrap(KindUnavailable, err)
	}
	err = r.cfg.Store.WalkCheckpoints(ctx, func(c *store.Checkpoint) error {
		if vkey == "" {
			return errorf(KindIntegrity, "a checkpoint of %d events is stored, but the log's identity and key are not: the audit_log row was deleted", c.Size)
		}
		body, err := auditproof.Open(c.Note, vkey)
		if err != nil {
			return errorf(KindIntegrity, "stored checkpoint of %d events (signed at %s): %v", c.Size, c.CreatedAt.Format(time.RFC3339), err)
		}
		if int64(body.Size) != c.Size || !bytes.Equal(body.Root, c.Root) {
			return errorf(KindIntegrity, "stored checkpoint of %d events: its row does not match its signed note (size %d, root %s)", c.Size, body.Size, b64(body.Root))
		}
		if c.Size > head {
			return errorf(KindIntegrity, "the audit log has %d events, but a checkpoint of %d events was signed at %s: events after %d were removed (the log was truncated or deleted)",
				head, c.Size, c.CreatedAt.Format(time.RFC3339), head)
		}
		stored[c.Size] = &store.Checkpoint{Size: c.Size, Root: c.Root, CreatedAt: c.CreatedAt}
		return nil
	})
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if outside != nil && int64(outside.Size) > head {
		return nil, errorf(KindIntegrity, "the audit log has %d events, fewer than the %d of the checkpoint given: events after %d were removed (the log was truncated or deleted)", head, outside.Size, head)
	}

	// One pass over the events: hash chain, tree, recorded state, and the roots at every checkpoint's size.
	b := audit.NewProofBuilder()
	consistency := -1
	if outside != nil {
		if consistency, err = b.AddConsistency(outside.Size, uint64(head)); err != nil {
			return nil, wrap(KindInternal, err)
		}
	}
	v := audit.NewVerifierWith(b)
	replay := audit.NewReplay()
	check := func(e *audit.Event) error {
		if err := v.Next(e); err != nil {
			return err
		}
		if err := replay.Next(e); err != nil {
			return errorf(KindIntegrity, "%v", err)
		}
		if c := stored[e.Seq]; c != nil {
			if root := v.Tree().Root(); !bytes.Equal(root, c.Root) {
				return errorf(KindIntegrity, "the first %d events of the audit log do not hash to the root signed in the checkpoint of %s: an event up to %d was rewritten (even if every hash after it was recomputed)",
					c.Size, c.CreatedAt.Format(time.RFC3339), c.Size)
			}
			rep.Checkpoints++
		}
		return nil
	}
	// The tables are read while the log is walked and hashed: a log of a million events has about as many rows
	// to compare, and reading them alone takes about a third of a verification.
	type tables struct {
		rows map[string]map[string]map[string]string
		err  error
	}
	loaded := make(chan tables, 1)
	go func() {
		rows, err := r.stateTables(ctx)
		loaded <- tables{rows, err}
	}()
	// Nothing reads the store on behalf of this call once it has returned, whatever it returns.
	waited := false
	defer func() {
		if !waited {
			<-loaded
		}
	}()
	err = pipeline(ctx, func(fn func(*audit.Event) error) error {
		return r.cfg.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
			if e.Seq > head {
				return errStop
			}
			return fn(e)
		})
	}, check)
	switch {
	case err == nil, errors.Is(err, errStop):
	case errors.Is(err, audit.ErrChainBroken):
		return nil, &Error{Kind: KindIntegrity, Err: err}
	default:
		return nil, wrap(KindUnavailable, err)
	}
	rep.Events = v.Count()
	if rep.Events != head {
		return nil, errorf(KindIntegrity, "the audit log's head is event %d, but the chain verified only %d events", head, rep.Events)
	}
	root := v.Tree().Root()
	rep.Root = b64(root)
	if outside != nil {
		hashes, err := b.Proof(consistency)
		if err != nil {
			return nil, wrap(KindInternal, err)
		}
		now := auditproof.Checkpoint{Origin: outside.Origin, Size: uint64(head), Root: root}
		if err := auditproof.VerifyConsistency(*outside, now, hashes); err != nil {
			return nil, FieldErrorf(KindIntegrity, "checkpoint", "%v", err)
		}
		rep.Extends = int64(outside.Size)
	}
	t := <-loaded
	waited = true
	if t.err != nil {
		return nil, t.err
	}
	n, err := compareTables(t.rows, replay)
	rep.Records = n
	if err != nil {
		return nil, err
	}
	return rep, nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// disagreement is one record whose table row and log state differ.
type disagreement struct {
	seq int64 // the event that last changed the record in the log; 0 if none did
	msg string
}

// stateNames are the record kinds as messages name them.
var stateNames = map[string]string{
	audit.StateCert: "certificate", audit.StateCA: "CA", audit.StateKey: "key", audit.StateDevice: "device",
	audit.StateStation: "station", audit.StateToken: "token",
}

// stateTables reads the state of every row of the tables the log records, by kind and record id.
func (r *RA) stateTables(ctx context.Context) (map[string]map[string]map[string]string, error) {
	rows := map[string]map[string]map[string]string{}
	add := func(kind, id string, f map[string]string) {
		if rows[kind] == nil {
			rows[kind] = map[string]map[string]string{}
		}
		rows[kind][id] = f
	}
	s := r.cfg.Store
	certs, err := s.ListCertificates(ctx, store.CertFilter{})
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	for _, c := range certs {
		add(audit.StateCert, c.Serial, CertFields(c))
	}
	cas, err := s.ListCAs(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	for _, c := range cas {
		add(audit.StateCA, c.ID, CAFields(c))
	}
	keys, err := s.ListKeys(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	for _, k := range keys {
		add(audit.StateKey, k.URI, KeyFields(k))
	}
	devices, err := s.ListDevices(ctx, store.DeviceFilter{})
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	for _, d := range devices {
		add(audit.StateDevice, DeviceID(d.Environment, d.ProductLine, d.Serial), DeviceFields(d))
	}
	stations, err := s.ListStations(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	for _, st := range stations {
		add(audit.StateStation, st.ID, StationFields(st))
	}
	tokens, err := s.ListTokens(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	for _, tok := range tokens {
		add(audit.StateToken, tok.ID, TokenFields(tok))
	}
	return rows, nil
}

// compareTables compares the tables' rows with the state the log recorded and returns the number of rows
// compared, or a KindIntegrity error naming the disagreement of the earliest event (and how many there are).
func compareTables(rows map[string]map[string]map[string]string, replay *audit.Replay) (int, error) {
	var found []disagreement
	n := 0
	for _, kind := range audit.StateKinds {
		table := rows[kind]
		logged := replay.Records(kind)
		name := stateNames[kind]
		for id, f := range table {
			n++
			rec := logged[id]
			if rec == nil {
				found = append(found, disagreement{0, fmt.Sprintf("%s %s: the store holds it (%s), the log never recorded it (a row inserted behind Keyward's back)", name, id, describeState(f, nil))})
				continue
			}
			if diff := differs(f, rec.Fields); diff != nil {
				found = append(found, disagreement{rec.Seq, fmt.Sprintf("%s %s: store says %s, log says %s at event %d", name, id, describeState(f, diff), describeState(rec.Fields, diff), rec.Seq)})
			}
		}
		for id, rec := range logged {
			if _, ok := table[id]; !ok {
				found = append(found, disagreement{rec.Seq, fmt.Sprintf("%s %s: the log records it (%s) at event %d, the store has no such row (it was deleted)", name, id, describeState(rec.Fields, nil), rec.Seq)})
			}
		}
	}
	if len(found) == 0 {
		return n, nil
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].seq != found[j].seq {
			return found[i].seq < found[j].seq
		}
		return found[i].msg < found[j].msg
	})
	msg := found[0].msg
	if len(found) > 1 {
		msg += fmt.Sprintf(" (and %d more disagreements)", len(found)-1)
	}
	return n, &Error{Kind: KindIntegrity, Err: fmt.Errorf("%w: %s", audit.ErrStateMismatch, msg)}
}

// differs returns the field names whose values differ between a and b (a field absent counts as empty), or
// nil.
func differs(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, k)
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok && v != "" {
			d = append(d, k)
		}
	}
	sort.Strings(d)
	return d
}

// describe renders the fields named (all if names is nil): a certificate's status first, "revoked
// (keyCompromise)", then the rest as name=value.
func describeState(f map[string]string, names []string) string {
	if names == nil {
		for k := range f {
			names = append(names, k)
		}
		sort.Strings(names)
	}
	var parts []string
	for _, k := range names {
		v := f[k]
		if v == "" {
			v = "(none)"
		}
		switch k {
		case "status", "state":
			if reason := f["reason"]; reason != "" {
				v += " (" + reason + ")"
			}
			if at := f["revoked_at"]; at != "" {
				v += " since " + at
			}
			parts = append([]string{v}, parts...)
		case "reason", "revoked_at":
			if !slices.Contains(names, "status") {
				parts = append(parts, k+"="+v)
			}
		default:
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ", ")
}

// ProveEvent returns the inclusion proof of event seq in the tree of the checkpoint given (signed; nil: the
// newest checkpoint, made now if events were appended since the last), carrying that checkpoint.
func (r *RA) ProveEvent(ctx context.Context, p Principal, seq int64, checkpoint []byte) (*auditproof.InclusionProof, error) {
	if err := r.authorize(ctx, p, audit.ActionAuditProve, fmt.Sprint(seq), "prove audit events", RoleAdmin, RoleAuditor, RoleCAOfficer, "system"); err != nil {
		return nil, err
	}
	proofs, err := r.proveEvents(ctx, p, []int64{seq}, checkpoint)
	if err != nil {
		return nil, err
	}
	return proofs[0], nil
}

// proveEvents returns the inclusion proofs of events seqs, in their order, in the tree of the checkpoint given
// (as ProveEvent), in one pass over the log.
func (r *RA) proveEvents(ctx context.Context, p Principal, seqs []int64, checkpoint []byte) ([]*auditproof.InclusionProof, error) {
	var (
		l    *store.AuditLog
		body auditproof.Checkpoint
		err  error
	)
	if len(checkpoint) > 0 {
		if l, body, err = r.openCheckpoint(ctx, "checkpoint", checkpoint); err != nil {
			return nil, err
		}
	} else {
		c, err := r.Checkpoint(ctx, p, nil)
		if err != nil {
			return nil, err
		}
		if l, err = r.cfg.Store.GetAuditLog(ctx); err != nil {
			return nil, wrap(KindUnavailable, err)
		}
		checkpoint = c.Note
		body = auditproof.Checkpoint{Origin: l.Origin, Size: uint64(c.Size), Root: c.Root}
	}
	b := audit.NewProofBuilder()
	ids := make([]int, len(seqs))
	events := make(map[int64]*audit.Event, len(seqs))
	for k, seq := range seqs {
		if seq < 1 || uint64(seq) > body.Size {
			return nil, FieldErrorf(KindNotFound, "seq", "event %d is not in the checkpoint of %d events (events are numbered from 1)", seq, body.Size)
		}
		if ids[k], err = b.AddInclusion(uint64(seq-1), body.Size); err != nil {
			return nil, wrap(KindInternal, err)
		}
		events[seq] = nil
	}
	err = r.cfg.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
		if uint64(e.Seq) > body.Size {
			return errStop
		}
		if e.Seq != int64(b.Tree().Size())+1 {
			return errorf(KindIntegrity, "audit event %d follows event %d: run 'keyward audit verify'", e.Seq, b.Tree().Size())
		}
		b.Append(e)
		if _, ok := events[e.Seq]; ok {
			events[e.Seq] = e
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, wrap(KindUnavailable, err)
	}
	if b.Tree().Size() != body.Size || !bytes.Equal(b.Tree().Root(), body.Root) {
		return nil, errorf(KindIntegrity, "the audit log no longer matches the checkpoint of %d events (it has %d, or an event was rewritten): run 'keyward audit verify --checkpoint'", body.Size, b.Tree().Size())
	}
	out := make([]*auditproof.InclusionProof, len(seqs))
	for k, seq := range seqs {
		hashes, err := b.Proof(ids[k])
		if err != nil {
			return nil, wrap(KindInternal, err)
		}
		pr := &auditproof.InclusionProof{Format: auditproof.InclusionFormat, Origin: l.Origin, TreeSize: body.Size, Index: uint64(seq - 1),
			Event: *events[seq], Hashes: hashes, Checkpoint: string(checkpoint)}
		if err := pr.Verify(body); err != nil {
			return nil, wrap(KindInternal, fmt.Errorf("the proof made does not verify: %w", err))
		}
		out[k] = pr
	}
	return out, nil
}

// pipeline runs walk, which reads events and hands each to its function, in one goroutine and check in another,
// in batches: reading and decoding rows and hashing them each take about half of a verification, so on two
// cores they overlap. The first error of either ends both and is returned.
func pipeline(ctx context.Context, walk func(func(*audit.Event) error) error, check func(*audit.Event) error) error {
	const batch = 512
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []*audit.Event, 8)
	checked := make(chan error, 1)
	go func() {
		var err error
		for b := range batches {
			for _, e := range b {
				if err == nil {
					err = check(e)
				}
			}
			if err != nil {
				cancel()
			}
		}
		checked <- err
	}()
	cur := make([]*audit.Event, 0, batch)
	werr := walk(func(e *audit.Event) error {
		cur = append(cur, e)
		if len(cur) == batch {
			select {
			case batches <- cur:
			case <-ctx.Done():
				return errStop
			}
			cur = make([]*audit.Event, 0, batch)
		}
		return nil
	})
	if len(cur) > 0 && ctx.Err() == nil {
		batches <- cur
	}
	close(batches)
	if cerr := <-checked; cerr != nil {
		return cerr
	}
	return werr
}
