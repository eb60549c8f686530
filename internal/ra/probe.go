package ra

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// ProbeRequest asks for a deliberately flawed certificate for a negative test of a relying party's TLS
// endpoint ('keyward probe tls'): a certificate of the profile, from the environment's issuing CA, whose
// validity window or extended key usages are replaced. It exists so that the flaws a relying party must
// refuse are made by the real issuing CA (they chain to the real anchor, so only the flaw can explain a
// refusal) without a second hierarchy with keys outside the custodian.
type ProbeRequest struct {
	IssueRequest
	// Case names the negative test the certificate serves; it is recorded in the audit event.
	Case string
	// NotBefore and NotAfter, when set (both), replace the profile's validity: a window in the past (an
	// expired certificate) or in the future (one not yet valid). The window must end before the issuing CA's
	// validity does and last at most MaxProbeValidity.
	NotBefore, NotAfter time.Time
	// ExtKeyUsage, when not empty, replaces the profile's extended key usages (a certificate for the wrong TLS
	// side); only serverAuth and clientAuth are allowed.
	ExtKeyUsage []x509.ExtKeyUsage
}

// MaxProbeValidity bounds a probe certificate's life: they are made for one run of the probe, and a short
// life limits what a probe certificate could do if its key (held only in the probe's memory) leaked.
const MaxProbeValidity = 2 * time.Hour

// ProductionEnvironment is the environment no probe certificate is ever issued in: its CAs sign only what
// devices and services use, never test material.
const ProductionEnvironment = "production"

// IssueProbe issues a probe certificate for req, as Issue does (the same authorisation, profile, key and
// registry checks, lint, one transaction with its audit event, whose details name the probe case), with the
// validity and extended key usage overrides of req. It is refused, audited, in the production environment.
func (r *RA) IssueProbe(ctx context.Context, p Principal, req ProbeRequest) (*store.Certificate, error) {
	if err := r.checkProbe(req); err != nil {
		r.refuseIssue(ctx, p, req.IssueRequest, nil, err)
		return nil, err
	}
	if r.cfg.Site != nil {
		err := r.errSiteIssue()
		r.refuseIssue(ctx, p, req.IssueRequest, nil, err)
		return nil, err
	}
	tk := r.group.expect()
	defer tk.done()
	prep, err := r.prepareProbe(ctx, p, req)
	if err != nil {
		tk.done()
		r.refuseIssue(ctx, p, req.IssueRequest, prep, err)
		return nil, err
	}
	cert, err := r.sign(ctx, prep)
	if err != nil {
		return nil, err
	}
	details := map[string]string{"probe": req.Case}
	if len(req.ExtKeyUsage) > 0 {
		details["probe_eku_override"] = "true"
	}
	if !req.NotBefore.IsZero() {
		details["probe_validity_override"] = "true"
	}
	err = r.txFor(ctx, tk, func(tx store.Tx) error {
		tx.Pipeline()
		return r.record(ctx, tx, p, cert, ActionIssue, details)
	})
	if err != nil {
		err = recordError(err, cert)
		if KindOf(err) == KindConflict {
			r.refuseIssue(ctx, p, req.IssueRequest, prep, err)
		}
		return nil, err
	}
	return cert.row, nil
}

// checkProbe checks what IssueProbe adds to an issuance request.
func (r *RA) checkProbe(req ProbeRequest) error {
	env := req.Environment
	if env == "" {
		env = "dev"
	}
	if env == ProductionEnvironment {
		return FieldErrorf(KindForbidden, "environment", "probe certificates are never issued in the %s environment: its CAs sign only what devices and services use; probe a device of the dev or staging environment", ProductionEnvironment)
	}
	if req.Case == "" {
		return errorf(KindBadRequest, "a probe certificate names the probe case it serves")
	}
	if req.NotBefore.IsZero() != req.NotAfter.IsZero() {
		return errorf(KindBadRequest, "probe validity: give both the start and the end of the window, or neither")
	}
	if !req.NotBefore.IsZero() {
		if !req.NotAfter.After(req.NotBefore) {
			return errorf(KindBadRequest, "probe validity: the window ends (%s) before it starts (%s)", req.NotAfter.UTC().Format(time.RFC3339), req.NotBefore.UTC().Format(time.RFC3339))
		}
		if req.NotAfter.Sub(req.NotBefore) > MaxProbeValidity {
			return errorf(KindBadRequest, "probe validity: the window lasts %s; a probe certificate lives at most %s", req.NotAfter.Sub(req.NotBefore), MaxProbeValidity)
		}
	}
	for _, u := range req.ExtKeyUsage {
		if u != x509.ExtKeyUsageServerAuth && u != x509.ExtKeyUsageClientAuth {
			return errorf(KindBadRequest, "probe extended key usage %d: only serverAuth and clientAuth may replace a profile's", u)
		}
	}
	return nil
}

// prepareProbe is prepare for a probe certificate: the same checks, never stamped (its template differs from
// the profile's shape), the overrides applied to the profile's template before the lint.
func (r *RA) prepareProbe(ctx context.Context, p Principal, req ProbeRequest) (*prepared, error) {
	prof, env, product, caID, err := r.resolve(req.IssueRequest)
	if err != nil {
		return nil, err
	}
	out := &prepared{profile: prof, env: env, product: product}
	csr, err := profile.ParseCSR(req.CSR)
	if err != nil {
		return out, wrap(KindBadRequest, err)
	}
	out.csr = csr
	if err := prof.CheckRequest(&profile.Request{CSR: csr, Role: p.Role}); err != nil {
		return out, profileError(err)
	}
	if out.key, err = issuer.NewSubjectKey(csr.PublicKey); err != nil {
		return out, wrap(KindBadRequest, fmt.Errorf("spki hash of %T: %w", csr.PublicKey, err))
	}
	h := sha256.Sum256(out.key.SPKI())
	out.spki = h[:]
	owners, device, err := r.cfg.Store.IssuanceFacts(ctx, out.spki, env, product, csr.Subject.CommonName)
	if err != nil {
		return out, wrap(KindUnavailable, err)
	}
	if err := registryRefusal(device, env, product); err != nil {
		return out, err
	}
	if err := duplicateKey(owners, out.spki, csr.Subject.String()); err != nil {
		return out, err
	}
	if caID, err = r.issuingCA(ctx, caID); err != nil {
		return out, err
	}
	iss, err := r.issuer(ctx, caID)
	if err != nil {
		return out, err
	}
	out.ca = iss
	out.at = r.now()
	serial, err := issuer.NewSerial(out.at)
	if err != nil {
		return out, wrap(KindInternal, err)
	}
	// Without overrides the certificate would be an ordinary one of the profile: a probe's control case
	// still takes the full lint path, so it is never stamped.
	tmpl, err := prof.Template(&profile.Request{CSR: csr, Role: p.Role}, serial, out.at, iss.Certificate())
	if err != nil {
		return out, profileError(err)
	}
	if !req.NotBefore.IsZero() {
		caCert := iss.Certificate()
		nb, na := req.NotBefore.UTC().Truncate(time.Second), req.NotAfter.UTC().Truncate(time.Second)
		// The window may start before the issuing CA did (a CA made minutes ago still makes an expired
		// certificate), but not end after it: path validation (RFC 5280 6.1.3 (a)(2)) checks each certificate
		// at the verifier's time, so the leaf's window is then its own flaw, and the CA's promise that nothing
		// it signed outlives it holds.
		if na.After(caCert.NotAfter) {
			return out, errorf(KindBadRequest, "probe validity ends %s, after issuing CA %s (expires %s)",
				na.Format(time.RFC3339), caID, caCert.NotAfter.UTC().Format(time.RFC3339))
		}
		tmpl.NotBefore, tmpl.NotAfter = nb, na
	} else if tmpl.NotAfter.Sub(tmpl.NotBefore) > MaxProbeValidity {
		// A probe certificate is short-lived whatever its profile's validity: it serves one run.
		tmpl.NotAfter = tmpl.NotBefore.Add(MaxProbeValidity - time.Second)
	}
	if len(req.ExtKeyUsage) > 0 {
		tmpl.ExtKeyUsage = slices.Clone(req.ExtKeyUsage)
	}
	out.token, err = iss.Prepare(tmpl, csr.PublicKey, issuer.MaxDERSize(prof.MaxDERSize))
	if err != nil {
		return out, errorf(KindBadRequest, "probe certificate (%s) for %q under profile %q refused before signing: %w", req.Case, csr.Subject.CommonName, prof.Name, err)
	}
	return out, nil
}
