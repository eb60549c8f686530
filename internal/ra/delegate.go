package ra

// Delegated signers of revocation data (internal/revocation publishes with them): the OCSP responder of a CA
// (purpose ocsp-signing) and the revocation-filter signer (crl-signing). The publisher asks for one when it needs
// it; the RA decides whether the current one will do or a new one is due, has the custodian certify it, and
// records the key and the signer with their audit event.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// Delegated signer lifetimes. The OCSP responder carries id-pkix-ocsp-nocheck, so relying parties never check
// its revocation; RFC 6960 4.2.2.2.1 asks for a short lifetime in that case.
const (
	ocspSignerValidity    = 30 * 24 * time.Hour
	ocspSignerRenewBefore = 10 * 24 * time.Hour
	filterSignerValidity  = 365 * 24 * time.Hour
	filterSignerRenew     = 60 * 24 * time.Hour
)

// newDelegate has CA caID (a superseded or revoked CA too: it still certifies the responders of what it issued)
// certify a new delegate key, generated beside the CA's own key, so that every node that can reach the CA key
// (a shared HSM) can reach its delegates too.
func (r *RA) newDelegate(ctx context.Context, caID string, purpose keystore.Purpose, notAfter time.Time) (*ca.NewDelegate, error) {
	iss, err := r.cfg.CA.StatusIssuer(ctx, caID)
	if err != nil {
		return nil, signError(caID, err)
	}
	ks, err := r.cfg.CA.KeystoreOf(iss.CA().KeyURI)
	if err != nil {
		ks = nil // the software keystore
	}
	d, err := iss.NewDelegate(ctx, ks, purpose, notAfter)
	if err != nil {
		return nil, fmt.Errorf("%s signer of %s: %w", purpose, caID, err)
	}
	return d, nil
}

// Delegate returns the delegated signer of CA caID for purpose (ocsp-signing or crl-signing), certifying a new one
// (key beside the CA's own key, certificate linted and signed by the CA, glossary row, signer row and audit
// event in one transaction) when there is none or the newest is due for renewal.
func (r *RA) Delegate(ctx context.Context, caID string, purpose keystore.Purpose) (*ca.Delegate, error) {
	validity, renew := ocspSignerValidity, ocspSignerRenewBefore
	if purpose == keystore.PurposeCRLSigning {
		validity, renew = filterSignerValidity, filterSignerRenew
	}
	now := r.now()
	current, err := r.cfg.Store.LatestRevocationSigner(ctx, caID, string(purpose))
	if err == nil && current.NotAfter.Sub(now) > renew {
		return r.cfg.CA.Delegate(ctx, current)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, wrap(KindUnavailable, err)
	}
	d, err := r.newDelegate(ctx, caID, purpose, now.Add(validity))
	if err != nil {
		// Due for renewal but still valid: keep answering with it, and retry at the next refresh.
		if current != nil && current.NotAfter.After(now) {
			if cur, cerr := r.cfg.CA.Delegate(ctx, current); cerr == nil {
				r.cfg.Logger.WarnContext(ctx, "renewing a delegated signer failed; the current one signs until it expires",
					"issuer", caID, "purpose", purpose, "not_after", current.NotAfter, "err", err)
				return cur, nil
			}
		}
		return nil, err
	}
	spki, err := goodkey.SPKIHash(d.Key.Public)
	if err != nil {
		return nil, r.abandon(ctx, err, d.Key.URI)
	}
	row := &store.RevocationSigner{IssuerID: caID, Purpose: string(purpose), KeyURI: d.Key.URI, CertDER: d.CertDER, NotAfter: d.NotAfter, CreatedAt: now}
	p := System("revocation")
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(ctx, &store.Key{URI: d.Key.URI, Purpose: string(purpose), Algorithm: string(d.Key.Algorithm), Location: string(d.Location),
			State: store.KeyActive, Owner: caID + " " + string(purpose), SPKISHA256: spki, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		if err := tx.InsertRevocationSigner(ctx, row); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionDelegate, d.Key.URI, now,
			map[string]string{"issuer": caID, "purpose": string(purpose), "serial": SerialOf(d.CertDER), "not_after": d.NotAfter.Format(time.RFC3339)})
	})
	if err != nil {
		return nil, r.abandon(ctx, fmt.Errorf("record %s signer of %s: %w", purpose, caID, err), d.Key.URI)
	}
	return r.cfg.CA.Delegate(ctx, row)
}
