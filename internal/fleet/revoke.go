package fleet

import (
	"context"
	"fmt"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// Revoke revokes, for p and through the RA (authorised and audited, one event per certificate), every
// certificate issued here that a finding of rep names and that is in the scan's scope, for keyCompromise
// (RFC 5280 5.3.1): each certificate once, however many findings name it. Certificates revoked already are
// skipped; imported certificates and Keyward's own keys are reported, never revoked here. It records the
// outcome in each holder and in rep.Revocation, and returns the first failure that is not a refusal of one
// certificate (an unauthorised principal, an unavailable store).
func Revoke(ctx context.Context, r *ra.RA, p ra.Principal, rep *Report) error {
	sum := &RevocationSummary{}
	rep.Revocation = sum
	done := map[string]string{} // holder -> outcome: each holder is counted and revoked once
	for fi := range rep.Findings {
		for hi := range rep.Findings[fi].Holders {
			h := &rep.Findings[fi].Holders[hi]
			id := h.Kind + "\x00" + h.Serial + "\x00" + h.Issuer + "\x00" + h.Source + "\x00" + h.KeyURI
			if outcome, ok := done[id]; ok {
				h.Revocation = outcome
				continue
			}
			switch {
			case h.Kind == HolderImported:
				h.Revocation = "not revoked: issued by another system; revoke it there"
				sum.ImportedOnly++
			case h.Kind != HolderCertificate:
				h.Revocation = "not revoked: Keyward's own key; retire or roll it over (ca rollover, firmware rotate)"
				sum.OtherEnvOrOwned++
			case !h.InScope:
				h.Revocation = "not revoked: outside the scanned environment and product line"
				sum.OtherEnvOrOwned++
			}
			if h.Revocation != "" {
				done[id] = h.Revocation
				continue
			}
			outcome, err := revokeOne(ctx, r, p, h, sum)
			if err != nil {
				return err
			}
			h.Revocation, done[id] = outcome, outcome
		}
	}
	return nil
}

func revokeOne(ctx context.Context, r *ra.RA, p ra.Principal, h *Holder, sum *RevocationSummary) (string, error) {
	if h.Status == store.CertStatusRevoked {
		sum.AlreadyRevoked++
		return "already revoked", nil
	}
	_, err := r.Revoke(ctx, p, ra.RevokeRequest{Serial: h.Serial, Reason: store.ReasonKeyCompromise})
	if err == nil {
		sum.Revoked++
		h.Status = store.CertStatusRevoked
		return "revoked (keyCompromise)", nil
	}
	switch ra.KindOf(err) {
	case ra.KindConflict: // revoked since the scan read it
		sum.AlreadyRevoked++
		return "already revoked", nil
	case ra.KindUnauthorized, ra.KindForbidden, ra.KindUnavailable:
		return "", err
	}
	sum.Failed++
	return fmt.Sprintf("not revoked: %v", err), nil
}
