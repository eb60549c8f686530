package ra

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// DestroyKey destroys the key at uri for p: the glossary row becomes destroyed, a CA it signed for is retired,
// the audit event is appended, and the custodian erases the key in its keystore, all inside one transaction, so
// a failure of any step leaves the key and its records as they were. From that moment no signer of the key signs
// in this process; other processes learn it from the change feed. Keys held elsewhere (device keys) are recorded
// as destroyed on the principal's attestation.
func (r *RA) DestroyKey(ctx context.Context, p Principal, uri, reason string) error {
	if err := r.authorize(ctx, p, audit.ActionKeyDestroy, uri, "destroy keys", RoleAdmin); err != nil {
		return err
	}
	k, err := r.cfg.Store.GetKey(ctx, uri)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(KindNotFound, "no key %s in the glossary (see 'keyward key list')", uri)
	} else if err != nil {
		return wrap(KindUnavailable, err)
	}
	if k.State == store.KeyDestroyed {
		return errorf(KindConflict, "key %s was destroyed already at %s", uri, k.DestroyedAt.Format(time.RFC3339))
	}
	// A superseded generation answers for what it issued until the last of it expires: its key stays until then.
	if owner, err := r.cfg.Store.GetCA(ctx, k.Owner); err == nil && owner.KeyURI == uri && owner.Status == store.CAStatusSuperseded {
		if n, last, err := r.validIssued(ctx, owner.ID); err != nil {
			return err
		} else if n > 0 {
			err := errorf(KindConflict, "key %s signs the CRLs and OCSP answers of %s, which still answers for %d valid certificates until %s: "+
				"destroy it after that, or revoke the CA first if the key is compromised ('keyward ca revoke %s --reason keyCompromise')", uri, owner.ID, n, last.Format(time.RFC3339), owner.ID)
			r.refuse(ctx, p, audit.ActionKeyDestroy, uri, nil, err)
			return err
		}
	}
	now := r.now()
	held := k.Location != string(keystore.LocationDevice)
	var retired string
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.SetKeyState(ctx, uri, store.KeyDestroyed, now); err != nil {
			return err
		}
		details := map[string]string{"purpose": k.Purpose, "location": k.Location, "owner": k.Owner, "reason": reason}
		if !held {
			details["attested_by"] = p.ID
		}
		if ca, err := r.cfg.Store.GetCA(ctx, k.Owner); err == nil && ca.KeyURI == uri && (ca.Status == store.CAStatusActive || ca.Status == store.CAStatusSuperseded) {
			if err := tx.SetCAStatus(ctx, ca.ID, store.CAStatusRetired); err != nil {
				return err
			}
			details["retired_ca"] = ca.ID
			retired = ca.ID
		}
		if err := r.success(ctx, tx, p, audit.ActionKeyDestroy, uri, now, details); err != nil {
			return err
		}
		if held {
			// Last, so that a keystore failure rolls the records back with it.
			if err := r.cfg.CA.Destroy(ctx, uri); err != nil {
				return fmt.Errorf("destroy %s in its keystore: %w", uri, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if retired != "" {
		r.cfg.CA.Invalidate(ctx, retired)
	}
	return nil
}
