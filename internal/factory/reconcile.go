package factory

// Reconciliation at headquarters (issue 4 part 3): a site's export is verified in full before anything is
// stored, and then recorded in one transaction, so a refused export leaves no trace but its error.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// UnusedReason is the revocation reason of a pre-issued credential no device received: cessationOfOperation,
// RFC 5280 5.3.1, "the certificate is no longer needed for the purpose for which it was issued" with no
// suspicion on the key. Not superseded: that says the certificate was replaced by another, and nothing
// replaces a credential that was never used; not keyCompromise: the key never left the site HSM (or left it
// only wrapped), and its destruction is recorded with it.
const UnusedReason = store.ReasonCessationOfOperation

// ReconcileRequest asks to import site exports.
type ReconcileRequest struct {
	Files []string
	// Env and Site, if set, admit only exports of that environment and site; any other is foreign.
	Env, Site string
	// Final closes each batch: its export must be final, and every unused credential is revoked (reason
	// UnusedReason) and its key recorded destroyed.
	Final bool
	// Keys is the site HSM. With it, the unused PKCS#11 keys of a final export are destroyed in it; without
	// it (or for software-wrapped keys, which only the site can erase), AttestedBy must name who attests the
	// destruction.
	Keys       keystore.Keystore
	AttestedBy string
}

// ReconcileResult reports one reconciled export.
type ReconcileResult struct {
	File          string `json:"file"`
	SiteCA        string `json:"site_ca"`
	BatchID       string `json:"batch_id"`
	Seq           int64  `json:"seq"`
	Devices       int64  `json:"devices_recorded"`      // injected credentials new to headquarters
	Certificates  int64  `json:"certificates_recorded"` // all certificates recorded by this import
	Revoked       int64  `json:"revoked"`
	KeysDestroyed int64  `json:"keys_destroyed"`
	Destruction   string `json:"destruction,omitempty"` // "site-hsm" or "attested"
	Final         bool   `json:"final"`
}

// Reconcile imports req.Files in order, each verified in full and then recorded in one transaction; it stops
// at the first refused file, whose error wraps ErrTampered, ErrForeign, ErrReplay, ErrRefused, ErrConflict
// or ErrBadRequest. The files before it stay reconciled; the results say which.
func (f *Factory) Reconcile(ctx context.Context, req ReconcileRequest) ([]*ReconcileResult, error) {
	if len(req.Files) == 0 {
		return nil, badRequest("name at least one export file")
	}
	attester := strings.TrimSpace(req.AttestedBy)
	if len(attester) > 200 || strings.ContainsFunc(attester, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, badRequest("--attested-by %.40q: at most 200 characters and no control characters", attester)
	}
	req.AttestedBy = attester
	var out []*ReconcileResult
	for _, name := range req.Files {
		res, err := f.reconcileFile(ctx, req, name)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

func (f *Factory) reconcileFile(ctx context.Context, req ReconcileRequest, name string) (*ReconcileResult, error) {
	file, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	e, err := ParseExport(file, name)
	file.Close()
	if err != nil {
		return nil, err
	}
	h := &e.Header
	foreign := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrForeign, fmt.Sprintf(format, args...))
	}
	refused := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrRefused, fmt.Sprintf(format, args...))
	}
	switch {
	case req.Env != "" && h.Environment != req.Env:
		return nil, foreign("it is an export of environment %q, not %q", h.Environment, req.Env)
	case req.Site != "" && h.Site != req.Site:
		return nil, foreign("it is an export of site %q, not %q", h.Site, req.Site)
	case f.Config.Environments[h.Environment] == nil:
		return nil, foreign("environment %q is not declared in this data directory (declared: %v)", h.Environment, f.Config.EnvironmentNames())
	case h.SiteCA != SiteID(h.Environment, h.ProductLine, h.Site):
		return nil, foreign("site CA %q is not the CA of %s/%s/%s", h.SiteCA, h.Environment, h.ProductLine, h.Site)
	}
	site, err := f.loadSite(ctx, h.Environment, h.ProductLine, h.Site)
	if errors.Is(err, ErrNotFound) {
		return nil, foreign("this data directory has no site CA %s", h.SiteCA)
	} else if err != nil {
		return nil, err
	}
	if sum := sha256Hex(site.CA.CertDER); sum != h.SiteCASHA256 {
		return nil, foreign("its site CA certificate (SHA-256 %s) is not the %s recorded here (%s)", short(h.SiteCASHA256), site.CA.ID, short(sum))
	}
	if len(site.Site.AuditCertDER) == 0 {
		return nil, fmt.Errorf("%w: site CA %s has no export signer recorded", ErrBadRequest, site.CA.ID)
	}
	signerCert, err := x509.ParseCertificate(site.Site.AuditCertDER)
	if err != nil {
		return nil, fmt.Errorf("export signer of %s: %w", site.CA.ID, err)
	}
	if err := signerCert.CheckSignatureFrom(site.Cert); err != nil {
		return nil, fmt.Errorf("export signer of %s is not certified by it: %w", site.CA.ID, err)
	}
	if !bytes.Equal(h.SignerCert, site.Site.AuditCertDER) {
		return nil, fmt.Errorf("%s: %w: it names an export signer that is not %s's recorded one (serial %x)", name, ErrTampered, site.CA.ID, signerCert.SerialNumber)
	}
	if err := e.VerifySignature(signerCert); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}

	// The signature holds: from here on, a failure is the site's (or a policy's), not tampering.
	switch {
	case req.Final && !h.Final:
		return nil, badRequest("%s: export %d of batch %s is not final; make one with 'keyward factory export --final' to close the batch", name, h.Seq, h.BatchID)
	case !req.Final && h.Final:
		return nil, badRequest("%s: export %d of batch %s is final; reconcile it with --final, which revokes its %d unused credentials", name, h.Seq, h.BatchID, h.Count-h.Injected)
	}
	var hsmKeys, softKeys int64
	for i := h.Injected; i < int64(len(e.Records)); i++ {
		if e.Records[i].KeyURI != "" {
			hsmKeys++
		} else {
			softKeys++
		}
	}
	destruction := ""
	if h.Final && h.Records > h.Injected {
		useHSM := req.Keys != nil && req.Keys.Location() == keystore.LocationPKCS11 && softKeys == 0
		switch {
		case useHSM:
			destruction = "site-hsm"
		case req.AttestedBy != "":
			destruction = "attested"
		default:
			return nil, badRequest("%s: closing batch %s destroys %d unused keys; name the site HSM with --keystore pkcs11:..., or who attests their destruction with --attested-by", name, h.BatchID, h.Count-h.Injected)
		}
	}

	cnRule, err := regexp.Compile(site.Site.CNPattern)
	if err != nil {
		return nil, fmt.Errorf("site CA %s: recorded subject rule %q: %w", site.CA.ID, site.Site.CNPattern, err)
	}
	serials, err := parseSerialRange(h.FirstSerial, h.Count)
	if err != nil {
		return nil, refused("batch %s: %v", h.BatchID, err)
	}
	var backdate time.Duration
	if p := f.Profiles[site.Site.Profile]; p != nil {
		backdate = p.Backdate
	}
	type parsedCert struct {
		cert *x509.Certificate
		spki []byte
	}
	certs := make([]parsedCert, len(e.Records))
	devices := make(map[string]int64, h.Injected)
	for i := range e.Records {
		r := &e.Records[i]
		c, err := x509.ParseCertificate(r.CertDER)
		if err != nil {
			return nil, refused("record %d: certificate: %v", r.Index, err)
		}
		if err := c.CheckSignatureFrom(site.Cert); err != nil {
			return nil, refused("record %d: certificate %x was not issued by site CA %s: %v", r.Index, c.SerialNumber, site.CA.ID, err)
		}
		// The site's serial rule: credential i has the device serial FirstSerial + i, inside the subject rule
		// recorded with the site CA (siteca.go).
		if want := serials.at(r.Index); c.Subject.CommonName != want || !cnRule.MatchString(c.Subject.CommonName) {
			return nil, refused("record %d: certificate subject %q is not %q, the batch's serial for that index under the site's rule %s", r.Index, c.Subject.CommonName, want, site.Site.CNPattern)
		}
		if c.NotBefore.Add(backdate).After(site.Site.IssueUntil) {
			return nil, refused("record %d: certificate %x was issued at %s, after site CA %s's issuing window ended (%s)", r.Index, c.SerialNumber,
				c.NotBefore.Add(backdate).Format(time.RFC3339), site.CA.ID, site.Site.IssueUntil.Format(time.RFC3339))
		}
		spki, err := goodkey.SPKIHash(c.PublicKey)
		if err != nil {
			return nil, refused("record %d: %v", r.Index, err)
		}
		certs[i] = parsedCert{c, spki}
		if r.Kind == RecordInjected {
			if err := checkDeviceSerial(r.DeviceSerial); err != nil {
				return nil, refused("record %d: %v", r.Index, err)
			}
			if prev, dup := devices[r.DeviceSerial]; dup {
				return nil, refused("device %q received credentials %d and %d; a device gets one", r.DeviceSerial, prev, r.Index)
			}
			devices[r.DeviceSerial] = r.Index
		}
	}

	now := f.now()
	res := &ReconcileResult{File: name, SiteCA: site.CA.ID, BatchID: h.BatchID, Seq: h.Seq, Final: h.Final, Destruction: destruction}
	err = f.Store.Tx(ctx, func(tx store.Tx) error {
		b, err := tx.LockFactoryBatch(ctx, h.BatchID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			b = &store.FactoryBatch{BatchID: h.BatchID, CAID: site.CA.ID, Count: h.Count, FirstSerial: h.FirstSerial, ChainHead: []byte{}}
		case err != nil:
			return err
		case b.Final:
			return fmt.Errorf("%s: %w: batch %s was closed by export %d at %s; no later export is accepted", name, ErrReplay, h.BatchID, b.LastSeq, b.UpdatedAt.Format(time.RFC3339))
		case h.Seq <= b.LastSeq:
			return fmt.Errorf("%s: %w: export %d of batch %s is not newer than export %d, reconciled at %s", name, ErrReplay, h.Seq, h.BatchID, b.LastSeq, b.UpdatedAt.Format(time.RFC3339))
		case b.CAID != site.CA.ID || b.Count != h.Count || b.FirstSerial != h.FirstSerial:
			return fmt.Errorf("%s: %w: batch %s was reconciled as %d credentials from %s under %s, the export says %d from %s under %s",
				name, ErrTampered, h.BatchID, b.Count, b.FirstSerial, b.CAID, h.Count, h.FirstSerial, site.CA.ID)
		case h.Injected < b.Injected:
			return fmt.Errorf("%s: %w: export %d of batch %s lists %d injections; %d were reconciled from export %d", name, ErrTampered, h.Seq, h.BatchID, h.Injected, b.Injected, b.LastSeq)
		case b.Injected > 0 && !bytes.Equal(e.Records[b.Injected-1].Hash, b.ChainHead):
			return fmt.Errorf("%s: %w: export %d of batch %s does not extend the log reconciled from export %d (record %d differs)", name, ErrTampered, h.Seq, h.BatchID, b.LastSeq, b.Injected-1)
		}
		// Quota (recorded with the site CA): every batch headquarters has seen counts in full.
		seen, err := tx.FactoryBatchCounts(ctx, site.CA.ID, h.BatchID)
		if err != nil {
			return err
		}
		if seen+h.Count > site.Site.Quota {
			return refused("batch %s of %d credentials and the %d already reconciled exceed site CA %s's quota of %d", h.BatchID, h.Count, seen, site.CA.ID, site.Site.Quota)
		}
		start := b.Injected
		var unusedURIs []string
		for i := start; i < int64(len(e.Records)); i++ {
			r, c := &e.Records[i], certs[i]
			alg, err := keystore.AlgorithmOf(c.cert.PublicKey)
			if err != nil {
				return refused("record %d: %v", r.Index, err)
			}
			serial := ra.SerialString(c.cert)
			if err := tx.InsertCertificate(ctx, &store.Certificate{Serial: serial, IssuerID: site.CA.ID, Profile: site.Site.Profile, ProfileVersion: profileVersion(f, site.Site.Profile),
				Subject: c.cert.Subject.String(), NotBefore: c.cert.NotBefore, NotAfter: c.cert.NotAfter, SPKISHA256: c.spki, DER: r.CertDER,
				Status: store.CertStatusValid, CreatedAt: now}); err != nil {
				if errors.Is(err, store.ErrDuplicateSerial) || errors.Is(err, store.ErrDuplicateKey) {
					return fmt.Errorf("%s: %w: record %d: certificate %s: %v", name, ErrConflict, r.Index, serial, err)
				}
				return err
			}
			res.Certificates++
			details := map[string]string{"issuer": site.CA.ID, "subject": c.cert.Subject.CommonName, "batch": h.BatchID, "index": fmt.Sprint(r.Index),
				"export_seq": fmt.Sprint(h.Seq), "source": "factory reconcile"}
			if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "cert.issue", Subject: serial, Outcome: audit.OutcomeSuccess, Details: details}); err != nil {
				return err
			}
			if r.Kind == RecordInjected {
				uri := ra.DeviceKeyURI(c.spki)
				if err := tx.InsertKey(ctx, &store.Key{URI: uri, Purpose: string(keystore.PurposeDeviceIdentity), Algorithm: string(alg), Location: string(keystore.LocationDevice),
					State: store.KeyActive, Owner: c.cert.Subject.CommonName, SPKISHA256: c.spki, CreatedAt: r.At, StateChangedAt: r.At}); err != nil {
					return fmt.Errorf("record %d: key %s: %w", r.Index, uri, err)
				}
				cn := c.cert.Subject.CommonName
				if d, err := tx.LockDevice(ctx, h.Environment, h.ProductLine, cn); err == nil {
					return fmt.Errorf("%s: %w: record %d: device %s of %s/%s is registered already (by %s at site %s, %s)", name, ErrConflict, r.Index, cn,
						h.Environment, h.ProductLine, d.StationID, d.Site, d.EnrolledAt.Format(time.RFC3339))
				} else if !errors.Is(err, store.ErrNotFound) {
					return err
				}
				// The registry is keyed by the identity's common name, as enrollment keys it; the station is the
				// batch that provisioned the device, and the hardware serial it was bound to is in the audit trail.
				if err := tx.PutDevice(ctx, &store.Device{Environment: h.Environment, ProductLine: h.ProductLine, Serial: cn, State: store.DeviceActive,
					StationID: "batch:" + h.BatchID, Site: h.Site, EnrolledAt: r.At, CertSerial: serial, SPKISHA256: c.spki, UpdatedAt: now}); err != nil {
					return err
				}
				if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "device.register", Subject: cn, Outcome: audit.OutcomeSuccess,
					Details: map[string]string{"environment": h.Environment, "product_line": h.ProductLine, "site": h.Site, "batch": h.BatchID,
						"index": fmt.Sprint(r.Index), "device_serial": r.DeviceSerial, "injected_at": r.At.Format(time.RFC3339Nano), "certificate": serial}}); err != nil {
					return err
				}
				res.Devices++
				continue
			}
			// Unused: revoke, and record the key destroyed.
			rev, err := tx.Revoke(ctx, &store.Revocation{Serial: serial, Reason: UnusedReason, RevokedAt: now.Truncate(time.Second)})
			if err != nil {
				return fmt.Errorf("revoke unused credential %d (%s): %w", r.Index, serial, err)
			}
			if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "cert.revoke", Subject: serial, Outcome: audit.OutcomeSuccess,
				Details: map[string]string{"issuer": site.CA.ID, "reason": "cessationOfOperation", "seq": fmt.Sprint(rev.Seq), "batch": h.BatchID,
					"index": fmt.Sprint(r.Index), "unused": "true"}}); err != nil {
				return err
			}
			res.Revoked++
			uri, loc := ra.DeviceKeyURI(c.spki), keystore.LocationSoftware
			if r.KeyURI != "" {
				uri, loc = r.KeyURI, keystore.LocationPKCS11
			}
			if err := tx.InsertKey(ctx, &store.Key{URI: uri, Purpose: string(keystore.PurposeDeviceIdentity), Algorithm: string(alg), Location: string(loc),
				State: store.KeyActive, Owner: c.cert.Subject.CommonName, SPKISHA256: c.spki, CreatedAt: c.cert.NotBefore, StateChangedAt: now}); err != nil {
				return fmt.Errorf("record %d: key %s: %w", r.Index, uri, err)
			}
			if err := tx.SetKeyState(ctx, uri, store.KeyDestroyed, now); err != nil {
				return err
			}
			kd := map[string]string{"purpose": string(keystore.PurposeDeviceIdentity), "location": string(loc), "owner": c.cert.Subject.CommonName,
				"reason": "unused pre-issued credential", "batch": h.BatchID, "index": fmt.Sprint(r.Index), "method": destruction}
			if destruction == "attested" {
				kd["attested_by"] = req.AttestedBy
			}
			if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "key.destroy", Subject: uri, Outcome: audit.OutcomeSuccess, Details: kd}); err != nil {
				return err
			}
			res.KeysDestroyed++
			if destruction == "site-hsm" {
				unusedURIs = append(unusedURIs, r.KeyURI)
			}
		}
		b.LastSeq, b.Injected, b.Final, b.UpdatedAt = h.Seq, h.Injected, h.Final, now
		if h.Injected > 0 {
			b.ChainHead = e.Records[h.Injected-1].Hash
		}
		if err := tx.PutFactoryBatch(ctx, b); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "factory.reconcile", Subject: site.CA.ID, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"batch": h.BatchID, "export_seq": fmt.Sprint(h.Seq), "injected": fmt.Sprint(h.Injected), "devices_recorded": fmt.Sprint(res.Devices),
				"certificates_recorded": fmt.Sprint(res.Certificates), "revoked": fmt.Sprint(res.Revoked), "keys_destroyed": fmt.Sprint(res.KeysDestroyed),
				"final": fmt.Sprint(h.Final), "destruction": destruction, "chain_head": fmt.Sprintf("%x", e.Signature.Head)}}); err != nil {
			return err
		}
		// Last, with everything else written: destroy the unused keys in the site HSM. A key already gone (an
		// earlier attempt whose commit failed) is fine; any other failure rolls the whole import back.
		for _, uri := range unusedURIs {
			if err := req.Keys.Destroy(ctx, uri); err != nil && !errors.Is(err, keystore.ErrNotFound) {
				return fmt.Errorf("destroy unused key %s in the site HSM: %w", uri, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func profileVersion(f *Factory, name string) int {
	if p := f.Profiles[name]; p != nil {
		return p.Version
	}
	return 0
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
