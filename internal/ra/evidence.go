package ra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/auditproof"
)

// EvidenceNoteHeader is the first line of every evidence manifest the audit key signs. A checkpoint's first
// line is the log's origin ("keyward.audit/..."), never this, so a signed manifest cannot pass for a checkpoint
// nor a checkpoint for a manifest although one key signs both.
const EvidenceNoteHeader = "keyward.evidence/1\n"

// SignEvidence signs text, an evidence pack's manifest in its note form (it must start with
// EvidenceNoteHeader), with the installation's audit-signing key through the custodian, and returns the signed
// note. The key signs as the log's origin, so the verifier key of 'keyward audit pubkey' checks both the
// checkpoints and the manifests; it never leaves its keystore.
func (r *RA) SignEvidence(ctx context.Context, p Principal, text []byte) ([]byte, error) {
	if err := r.authorize(ctx, p, audit.ActionEvidenceGenerate, "-", "generate evidence packs", RoleAdmin, RoleAuditor); err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(text, []byte(EvidenceNoteHeader)) {
		return nil, errorf(KindInternal, "an evidence manifest must start with %q", EvidenceNoteHeader)
	}
	l, err := r.cfg.Store.GetAuditLog(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoAuditLog()
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
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
	signed, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("sign the evidence manifest: %w", err))
	}
	return signed, nil
}

// RecordEvidence appends the audit event of an evidence pack generated for subject (an environment, or
// environment/product line), with details such as the manifest's SHA-256 and the checkpoint it carries.
func (r *RA) RecordEvidence(ctx context.Context, p Principal, subject string, at time.Time, details map[string]string) error {
	if err := r.authorize(ctx, p, audit.ActionEvidenceGenerate, subject, "generate evidence packs", RoleAdmin, RoleAuditor); err != nil {
		return err
	}
	if err := r.tx(ctx, func(tx store.Tx) error {
		return r.success(ctx, tx, p, audit.ActionEvidenceGenerate, subject, at.UTC(), details)
	}); err != nil {
		return wrap(KindUnavailable, err)
	}
	return nil
}

// ProveConsistency returns the RFC 9162 consistency proof from older, a signed checkpoint saved elsewhere (an
// earlier evidence pack's), to newer, a checkpoint of this log, in one pass over the events up to newer. A
// checkpoint not signed by this log's key, or a log that no longer extends older (an event up to its size was
// rewritten or removed), is a KindIntegrity error naming field.
func (r *RA) ProveConsistency(ctx context.Context, p Principal, field string, older []byte, newer *store.Checkpoint) (*auditproof.ConsistencyProof, error) {
	if err := r.authorize(ctx, p, audit.ActionAuditProve, "-", "prove audit log consistency", RoleAdmin, RoleAuditor, RoleCAOfficer, "system"); err != nil {
		return nil, err
	}
	l, old, err := r.openCheckpoint(ctx, field, older)
	if err != nil {
		return nil, err
	}
	size := uint64(newer.Size)
	if old.Size > size {
		return nil, FieldErrorf(KindIntegrity, field, "the checkpoint of %d events is larger than the log's checkpoint of %d: events were removed from the log", old.Size, size)
	}
	cur := auditproof.Checkpoint{Origin: l.Origin, Size: size, Root: newer.Root}
	b := audit.NewProofBuilder()
	id, err := b.AddConsistency(old.Size, size)
	if err != nil {
		return nil, wrap(KindInternal, err)
	}
	err = r.cfg.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
		if uint64(e.Seq) > size {
			return errStop
		}
		if e.Seq != int64(b.Tree().Size())+1 {
			return errorf(KindIntegrity, "audit event %d follows event %d: run 'keyward audit verify'", e.Seq, b.Tree().Size())
		}
		b.Append(e)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, wrap(KindUnavailable, err)
	}
	if b.Tree().Size() != size || !bytes.Equal(b.Tree().Root(), newer.Root) {
		return nil, errorf(KindIntegrity, "the audit log no longer matches its checkpoint of %d events: run 'keyward audit verify'", size)
	}
	hashes, err := b.Proof(id)
	if err != nil {
		return nil, wrap(KindInternal, err)
	}
	if old.Size == size {
		hashes = [][]byte{}
		if !bytes.Equal(old.Root, newer.Root) {
			return nil, FieldErrorf(KindIntegrity, field, "the checkpoint of %d events names another root than this log's tree of that size: an event was rewritten", size)
		}
	} else if err := auditproof.VerifyConsistency(old, cur, hashes); err != nil {
		return nil, FieldErrorf(KindIntegrity, field, "%v", err)
	}
	return &auditproof.ConsistencyProof{Format: auditproof.ConsistencyFormat, Origin: l.Origin, OldSize: old.Size, NewSize: size,
		Hashes: hashes, OldCheckpoint: string(older), NewCheckpoint: string(newer.Note)}, nil
}
