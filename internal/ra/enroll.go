package ra

// Device enrollment at manufacturing (EST, RFC 7030): a factory station forwards a device's CSR for a first
// identity (simpleenroll), and the device later renews with its current identity certificate
// (simplereenroll). The RA decides: it checks the caller's scope (environment, product line, state, validity
// window, quota), the device registry (serial unique per product line, re-provisioning only when an operator
// allows it), the renewal window, the profile and key rules and, where configured, the secure element's
// attestation; then one transaction stores the certificate, its key row, the device row, the station's usage,
// the superseded certificate's new status and the audit event. A refusal is audited in its own transaction and
// changes nothing else.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// Audit actions of enrollment.
const (
	ActionEnroll   = "est.enroll"
	ActionReenroll = "est.reenroll"
)

// EnrollConfig configures an Enroller.
type EnrollConfig struct {
	// Attestation maps a profile name to the secure-element vendor roots that an enrollment under that profile
	// must present an attestation certificate chaining to. A profile absent from the map needs no attestation.
	Attestation map[string]*x509.CertPool
}

// Enroller runs EST enrollments and renewals through the RA. It is safe for concurrent use.
type Enroller struct {
	r   *RA
	cfg EnrollConfig
}

// Enroller returns an Enroller that uses r's store, keys, hierarchy and profiles.
func (r *RA) Enroller(cfg EnrollConfig) *Enroller { return &Enroller{r: r, cfg: cfg} }

// Caller is an EST client authenticated by its TLS client certificate.
type Caller struct {
	Principal Principal
	// Station is the factory station's record when the caller is a station.
	Station *store.Station
	// Cert is the client certificate the caller presented.
	Cert *x509.Certificate
	// Environment is the environment of the CA that issued Cert.
	Environment string
	// ProductLine is, for a device, the product line of the issuing CA that issued Cert.
	ProductLine string
}

// StationPrincipal is the principal of a factory station.
func StationPrincipal(id string) Principal {
	return Principal{ID: "station:" + id, Role: RoleFactoryStation}
}

// DevicePrincipal is the principal of a device authenticated by its identity certificate.
func DevicePrincipal(env, product, serial string) Principal {
	return Principal{ID: "device:" + env + "/" + product + "/" + serial, Role: RoleDevice}
}

// EnrollRequest is one EST enrollment or renewal.
type EnrollRequest struct {
	Environment string
	ProductLine string
	// CSR is the PKCS#10 request, DER.
	CSR []byte
	// Attestation is the secure element's attestation chain, DER certificates, leaf first (may be empty).
	Attestation [][]byte
}

// EnrollResult is what an enrollment or renewal stored.
type EnrollResult struct {
	Cert   *store.Certificate
	Device *store.Device
	// Superseded is the serial of the certificate this one replaced, if any.
	Superseded string
	// Rekeyed reports a renewal with a new key.
	Rekeyed bool
}

// ESTProfile returns the profile EST enrollments of (env, product) are issued under: the first profile of the
// product line that factory stations may request (keyward.yaml lists them in order of preference).
func (e *Enroller) ESTProfile(env, product string) (*profile.Profile, error) {
	envSpec := e.r.cfg.Hierarchy.Environments[env]
	if envSpec == nil || envSpec.ProductLines[product] == nil {
		return nil, errorf(KindNotFound, "product line %q is not declared in environment %q of keyward.yaml", product, env)
	}
	for _, name := range envSpec.ProductLines[product].Profiles {
		if p := e.r.cfg.Profiles[name]; p != nil && slices.Contains(p.AllowedPrincipals, RoleFactoryStation) {
			return p, nil
		}
	}
	return nil, errorf(KindNotFound, "product line %s/%s has no profile that factory stations may request (add %q to allowed_principals of one of: %s)",
		env, product, RoleFactoryStation, strings.Join(envSpec.ProductLines[product].Profiles, ", "))
}

// AttestationRequired reports whether enrollments under profile name must carry an attestation.
func (e *Enroller) AttestationRequired(name string) bool { return e.cfg.Attestation[name] != nil }

// refusal carries what the audit record of a refusal names.
type refusal struct {
	action  string
	device  string
	details map[string]string
}

func (e *Enroller) newRefusal(action string, c Caller, req EnrollRequest) *refusal {
	d := map[string]string{"role": c.Principal.Role, "environment": req.Environment, "product_line": req.ProductLine}
	if c.Station != nil {
		d["station"], d["site"] = c.Station.ID, c.Station.Site
	}
	if c.Cert != nil {
		d["client_cert"] = SerialString(c.Cert)
	}
	dev := "-"
	// Name the device in the audit record even when the CSR is refused later: parse it without any checks
	// only to read its subject.
	if csr, err := x509.ParseCertificateRequest(req.CSR); err == nil && csr.Subject.CommonName != "" {
		dev = csr.Subject.CommonName
	}
	return &refusal{action: action, device: dev, details: d}
}

// Refuse audits a refusal decided before the RA saw a request (no or unknown client certificate, a malformed
// body, a wrong content type): actor is who asked, details what the record should name. Nothing else changes.
func (e *Enroller) Refuse(ctx context.Context, actor Principal, action string, details map[string]string, cause error) {
	d := map[string]string{"role": actor.Role}
	for k, v := range details {
		d[k] = v
	}
	e.audit(ctx, actor, &refusal{action: action, device: "-", details: d}, cause)
}

func (e *Enroller) audit(ctx context.Context, p Principal, rf *refusal, cause error) {
	d := make(map[string]string, len(rf.details)+1)
	for k, v := range rf.details {
		if v != "" {
			d[k] = v
		}
	}
	d["reason"] = cause.Error()
	err := e.r.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, &audit.Event{Time: e.r.now(), Actor: p.ID, Action: rf.action, Subject: rf.device, Outcome: audit.OutcomeRefused, Details: d})
	})
	if err != nil {
		e.r.cfg.Logger.ErrorContext(ctx, "audit of enrollment refusal failed", "actor", p.ID, "err", err)
	}
}

func (e *Enroller) fail(ctx context.Context, c Caller, rf *refusal, err error) error {
	if k := KindOf(err); k != KindInternal && k != KindUnavailable {
		e.audit(ctx, c.Principal, rf, err)
	}
	return err
}

// checkStation applies a station's scope: state, validity window, environment, product lines and quota. It is
// run before signing and again, on the locked row, in the recording transaction.
func checkStation(st *store.Station, env, product string, now time.Time) error {
	switch st.State {
	case store.StationActive:
	case store.StationSuspended:
		return errorf(KindForbidden, "station %s is suspended: it may not enroll until an operator runs 'keyward station resume %s'", st.ID, st.ID)
	default:
		return errorf(KindForbidden, "station %s is %s: it may never enroll again; add a new station with 'keyward station add'", st.ID, st.State)
	}
	if now.Before(st.ValidFrom) || !now.Before(st.ValidUntil) {
		return errorf(KindForbidden, "station %s may enroll from %s until %s; it is %s", st.ID, st.ValidFrom.Format(time.RFC3339), st.ValidUntil.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	// ARCHITECTURE.md "Environment": a credential of one environment is refused by another.
	if st.Environment != env {
		return errorf(KindForbidden, "station %s belongs to environment %q and may not enroll devices of environment %q", st.ID, st.Environment, env)
	}
	if !slices.Contains(st.ProductLines, product) {
		return errorf(KindForbidden, "station %s may enroll only product lines %s, not %q", st.ID, strings.Join(st.ProductLines, ", "), product)
	}
	if st.Quota > 0 && st.Used >= st.Quota {
		return errorf(KindForbidden, "station %s has used its quota of %d enrollments; an operator can add a station with a new quota", st.ID, st.Quota)
	}
	return nil
}

// checkExisting decides whether an initial enrollment may (re)provision a serial the registry already holds.
func checkExisting(d *store.Device) error {
	switch {
	case d.State == store.DeviceDecommissioned:
		return errorf(KindConflict, "device %s of %s/%s is decommissioned; its serial is never provisioned again", d.Serial, d.Environment, d.ProductLine)
	case d.State == store.DeviceSuspended:
		return errorf(KindForbidden, "device %s of %s/%s is suspended; an operator must resume it ('keyward device resume %s') before it is re-provisioned", d.Serial, d.Environment, d.ProductLine, d.Serial)
	case !d.ReprovisionAllowed:
		return errorf(KindConflict, "device %s of %s/%s is already enrolled (certificate %s, by station %s at site %s on %s); to provision it again an operator must run 'keyward device allow-reprovision %s'",
			d.Serial, d.Environment, d.ProductLine, d.CertSerial, d.StationID, d.Site, d.EnrolledAt.Format(time.RFC3339), d.Serial)
	}
	return nil
}

// Enroll issues a device's first identity for a factory station (EST simpleenroll, RFC 7030 4.2.1).
func (e *Enroller) Enroll(ctx context.Context, c Caller, req EnrollRequest) (*EnrollResult, error) {
	rf := e.newRefusal(ActionEnroll, c, req)
	if c.Station == nil {
		if c.Principal.Role == RoleDevice && c.Cert != nil && rf.device != c.Cert.Subject.CommonName {
			return nil, e.fail(ctx, c, rf, errorf(KindForbidden, "device certificate of %s may not enroll another device (%s): only factory stations enroll devices", c.Cert.Subject.CommonName, rf.device))
		}
		return nil, e.fail(ctx, c, rf, errorf(KindForbidden, "%s may not use simpleenroll: only factory stations enroll devices; a device renews its own identity with simplereenroll (RFC 7030 4.2.2)", c.Principal.ID))
	}
	now := e.r.now()
	if err := checkStation(c.Station, req.Environment, req.ProductLine, now); err != nil {
		return nil, e.fail(ctx, c, rf, err)
	}
	prof, err := e.ESTProfile(req.Environment, req.ProductLine)
	if err != nil {
		return nil, e.fail(ctx, c, rf, err)
	}
	rf.details["profile"] = prof.Name
	// At a site, the site CA's state first (window, quota, the station's site): a closed window or a spent
	// quota is the reason, whatever the request holds.
	site := e.r.cfg.Site
	var fs *store.FactorySite
	if site != nil {
		if err := e.r.checkSiteScope(req.Environment, req.ProductLine); err != nil {
			return nil, e.fail(ctx, c, rf, err)
		}
		if fs, err = e.r.cfg.Store.GetFactorySite(ctx, site.CAID); err != nil {
			return nil, wrap(KindUnavailable, fmt.Errorf("site CA %s record: %w", site.CAID, err))
		}
		if err := e.r.checkSite(fs, c.Station, "", now); err != nil {
			return nil, e.fail(ctx, c, rf, err)
		}
	}
	prep, err := e.r.prepare(ctx, c.Principal, IssueRequest{Profile: prof.Name, Environment: req.Environment, ProductLine: req.ProductLine, CSR: req.CSR})
	if err != nil {
		return nil, e.fail(ctx, c, rf, err)
	}
	serial := prep.csr.Subject.CommonName
	if site != nil {
		if err := e.r.checkSite(fs, c.Station, serial, now); err != nil {
			return nil, e.fail(ctx, c, rf, err)
		}
	}
	// The registry is checked before anything is signed, and again on the locked row when recording.
	if d, err := e.r.cfg.Store.GetDevice(ctx, req.Environment, req.ProductLine, serial); err == nil {
		if err := checkExisting(d); err != nil {
			return nil, e.fail(ctx, c, rf, err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, wrap(KindUnavailable, err)
	}
	if err := e.checkAttestation(prof, prep.csr, req.Attestation, now); err != nil {
		return nil, e.fail(ctx, c, rf, err)
	}
	s, err := e.r.sign(ctx, prep)
	if err != nil {
		return nil, err
	}
	res := &EnrollResult{Cert: s.row}
	err = e.r.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		st, err := tx.LockStation(ctx, c.Station.ID)
		if err != nil {
			return err
		}
		// Suspension and quota are re-checked on the locked row: a suspension committed since the pre-check
		// takes effect at once, and concurrent enrollments of one station cannot overrun its quota.
		if err := checkStation(st, req.Environment, req.ProductLine, now); err != nil {
			return err
		}
		prev, err := tx.LockDevice(ctx, req.Environment, req.ProductLine, serial)
		switch {
		case err == nil:
			if err := checkExisting(prev); err != nil {
				return err
			}
		case errors.Is(err, store.ErrNotFound):
			prev = nil
		default:
			return err
		}
		if site != nil {
			// The site row is locked before the device row, so concurrent enrollments at a site queue here and
			// cannot overrun the quota or leave a gap in the site log.
			if fs, err = tx.LockFactorySite(ctx, site.CAID); err != nil {
				return err
			}
			if err := e.r.checkSite(fs, st, serial, now); err != nil {
				return err
			}
		}
		details := map[string]string{"station": st.ID, "site": st.Site, "device": serial, "environment": req.Environment, "product_line": req.ProductLine}
		if site != nil {
			details["site_ca"] = site.CAID
		}
		if prev != nil {
			details["reprovisioned"] = "true"
			details["superseded"] = prev.CertSerial
			if err := tx.SetCertificateStatus(ctx, prev.CertSerial, store.CertStatusValid, store.CertStatusSuperseded); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			res.Superseded = prev.CertSerial
		}
		if err := e.record(ctx, tx, c.Principal, s, ActionEnroll, details); err != nil {
			return err
		}
		res.Device = &store.Device{Environment: req.Environment, ProductLine: req.ProductLine, Serial: serial, State: store.DeviceActive,
			StationID: st.ID, Site: st.Site, EnrolledAt: s.row.CreatedAt, CertSerial: s.row.Serial, SPKISHA256: s.row.SPKISHA256, UpdatedAt: s.row.CreatedAt}
		if err := tx.PutDevice(ctx, res.Device); err != nil {
			return err
		}
		if site != nil {
			if err := siteRecord(ctx, tx, site, fs, st, s.row.Serial, serial, s.row.CreatedAt); err != nil {
				return err
			}
		}
		st.Used++
		return tx.UpdateStation(ctx, st)
	})
	if err != nil {
		return nil, e.fail(ctx, c, rf, recordError(err, s))
	}
	return res, nil
}

// Reenroll renews a device's identity for the device itself (EST simplereenroll, RFC 7030 4.2.2).
func (e *Enroller) Reenroll(ctx context.Context, c Caller, req EnrollRequest) (*EnrollResult, error) {
	rf := e.newRefusal(ActionReenroll, c, req)
	if site := e.r.cfg.Site; site != nil {
		return nil, e.fail(ctx, c, rf, errorf(KindForbidden, "factory site %s enrolls new devices only: a device renews its identity with headquarters (simplereenroll there)", site.Site))
	}
	if c.Principal.Role != RoleDevice || c.Cert == nil {
		return nil, e.fail(ctx, c, rf, errorf(KindForbidden, "%s may not use simplereenroll: renewal is authenticated by the device's current identity certificate (RFC 7030 4.2.2); stations enroll new devices with simpleenroll", c.Principal.ID))
	}
	serial := c.Cert.Subject.CommonName
	rf.device = serial
	if c.Environment != req.Environment || c.ProductLine != req.ProductLine {
		return nil, e.fail(ctx, c, rf, errorf(KindForbidden, "device %s belongs to %s/%s and may not renew under %s/%s", serial, c.Environment, c.ProductLine, req.Environment, req.ProductLine))
	}
	cur, err := e.r.cfg.Store.GetCertificate(ctx, SerialString(c.Cert))
	if errors.Is(err, store.ErrNotFound) {
		return nil, e.fail(ctx, c, rf, errorf(KindForbidden, "certificate %s of %s is not in this Keyward's records", SerialString(c.Cert), serial))
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if cur.Status != store.CertStatusValid {
		return nil, e.fail(ctx, c, rf, errorf(KindForbidden, "certificate %s of %s is %s: renew with the device's current certificate", cur.Serial, serial, cur.Status))
	}
	dev, err := e.r.cfg.Store.GetDevice(ctx, req.Environment, req.ProductLine, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, e.fail(ctx, c, rf, errorf(KindForbidden, "device %s is not in the registry of %s/%s: it must first be enrolled by a factory station", serial, req.Environment, req.ProductLine))
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if err := checkRenewable(dev, cur.Serial); err != nil {
		return nil, e.fail(ctx, c, rf, err)
	}
	prof := e.r.cfg.Profiles[cur.Profile]
	if prof == nil {
		return nil, e.fail(ctx, c, rf, errorf(KindBadRequest, "certificate %s was issued under profile %q, which this Keyward no longer has", cur.Serial, cur.Profile))
	}
	rf.details["profile"] = prof.Name
	now := e.r.now()
	// profile renewal_window: renewal is due in the last fraction of the validity, unless an operator forced it.
	opens := cur.NotAfter.Add(-time.Duration(prof.RenewalWindow * float64(cur.NotAfter.Sub(cur.NotBefore))))
	if now.Before(opens) && !dev.ForceRenew {
		return nil, e.fail(ctx, c, rf, errorf(KindForbidden, "certificate %s of %s may be renewed from %s (the last %s of its validity, profile %q renewal_window %v); an operator can allow it now with 'keyward device force-renew %s'",
			cur.Serial, serial, opens.Format(time.RFC3339), strconv.FormatFloat(prof.RenewalWindow*100, 'f', -1, 64)+"%", prof.Name, prof.RenewalWindow, serial))
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err == nil {
		// RFC 7030 4.2.2: the Subject and SubjectAltName of a renewal request are identical to the certificate's.
		if err := sameSubject(csr, c.Cert); err != nil {
			return nil, e.fail(ctx, c, rf, err)
		}
	}
	// The profile's allowed_principals says who may request a new identity: the factory station that enrolled
	// this device did. A renewal re-certifies that same subject under that same profile, authorised by RFC 7030
	// 4.2.2 and the checks above (current certificate, registry state, window, same subject), so the profile
	// check runs with the enrolling role.
	prep, err := e.r.prepare(ctx, Principal{ID: c.Principal.ID, Role: RoleFactoryStation}, IssueRequest{Profile: prof.Name, Environment: req.Environment, ProductLine: req.ProductLine, CSR: req.CSR})
	if err != nil {
		return nil, e.fail(ctx, c, rf, err)
	}
	s, err := e.r.sign(ctx, prep)
	if err != nil {
		return nil, err
	}
	res := &EnrollResult{Cert: s.row, Superseded: cur.Serial, Rekeyed: !bytes.Equal(s.row.SPKISHA256, cur.SPKISHA256)}
	err = e.r.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		d, err := tx.LockDevice(ctx, req.Environment, req.ProductLine, serial)
		if err != nil {
			return err
		}
		// Two renewals racing with one certificate: the second finds it superseded.
		if err := checkRenewable(d, cur.Serial); err != nil {
			return err
		}
		if err := tx.SetCertificateStatus(ctx, cur.Serial, store.CertStatusValid, store.CertStatusSuperseded); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return errorf(KindForbidden, "certificate %s of %s is no longer valid: renew with the device's current certificate", cur.Serial, serial)
			}
			return err
		}
		details := map[string]string{"station": d.StationID, "site": d.Site, "device": serial, "environment": req.Environment, "product_line": req.ProductLine,
			"superseded": cur.Serial, "rekey": strconv.FormatBool(res.Rekeyed), "forced": strconv.FormatBool(now.Before(opens))}
		if res.Rekeyed {
			details["previous_spki_sha256"] = hex.EncodeToString(cur.SPKISHA256)
		}
		if err := e.record(ctx, tx, c.Principal, s, ActionReenroll, details); err != nil {
			return err
		}
		d.CertSerial, d.SPKISHA256, d.ForceRenew, d.UpdatedAt = s.row.Serial, s.row.SPKISHA256, false, s.row.CreatedAt
		res.Device = d
		return tx.PutDevice(ctx, d)
	})
	if err != nil {
		return nil, e.fail(ctx, c, rf, recordError(err, s))
	}
	return res, nil
}

func checkRenewable(d *store.Device, certSerial string) error {
	if d.State != store.DeviceActive {
		return errorf(KindForbidden, "device %s of %s/%s is %s and may not renew", d.Serial, d.Environment, d.ProductLine, d.State)
	}
	if d.CertSerial != certSerial {
		return errorf(KindForbidden, "certificate %s is not the current identity of device %s (that is %s): renew with the current certificate", certSerial, d.Serial, d.CertSerial)
	}
	return nil
}

func sameSubject(csr *x509.CertificateRequest, cert *x509.Certificate) error {
	if csr.Subject.CommonName != cert.Subject.CommonName {
		return errorf(KindForbidden, "renewal CSR names %q but the certificate renewed is %q: the subject must stay the same (RFC 7030 4.2.2)", csr.Subject.CommonName, cert.Subject.CommonName)
	}
	if !slices.Equal(csr.DNSNames, cert.DNSNames) || !slices.Equal(csr.EmailAddresses, cert.EmailAddresses) ||
		len(csr.IPAddresses) != len(cert.IPAddresses) || len(csr.URIs) != len(cert.URIs) {
		return errorf(KindForbidden, "renewal CSR for %q changes the subject alternative names: they must stay the same (RFC 7030 4.2.2)", cert.Subject.CommonName)
	}
	for i := range csr.IPAddresses {
		if !csr.IPAddresses[i].Equal(cert.IPAddresses[i]) {
			return errorf(KindForbidden, "renewal CSR for %q changes the IP address SANs: they must stay the same (RFC 7030 4.2.2)", cert.Subject.CommonName)
		}
	}
	for i := range csr.URIs {
		if csr.URIs[i].String() != cert.URIs[i].String() {
			return errorf(KindForbidden, "renewal CSR for %q changes the URI SANs: they must stay the same (RFC 7030 4.2.2)", cert.Subject.CommonName)
		}
	}
	return nil
}

// checkAttestation verifies the secure element's attestation when prof requires one: the leaf certificate
// chains to a configured vendor root (the rest of the chain are intermediates) and certifies exactly the
// public key of the CSR, so the key was generated in, and never left, a genuine secure element.
func (e *Enroller) checkAttestation(prof *profile.Profile, csr *x509.CertificateRequest, chain [][]byte, now time.Time) error {
	roots := e.cfg.Attestation[prof.Name]
	if roots == nil {
		return nil
	}
	if len(chain) == 0 {
		return errorf(KindBadRequest, "profile %q requires the secure element's attestation certificate: send it (base64 DER, leaf first, comma-separated) in the %s header", prof.Name, AttestationHeader)
	}
	certs := make([]*x509.Certificate, 0, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return errorf(KindBadRequest, "attestation certificate %d does not parse: %v", i+1, err)
		}
		certs = append(certs, c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return errorf(KindBadRequest, "attestation certificate %q does not chain to an attestation root configured for profile %q: %v", certs[0].Subject.CommonName, prof.Name, err)
	}
	if !bytes.Equal(certs[0].RawSubjectPublicKeyInfo, csr.RawSubjectPublicKeyInfo) {
		return errorf(KindBadRequest, "attestation certificate %q certifies another public key than the CSR's: the CSR key must be the secure element's attested key", certs[0].Subject.CommonName)
	}
	return nil
}

// AttestationHeader is the HTTP header that carries a secure element's attestation chain with an EST
// enrollment: base64 (RFC 4648) DER certificates, leaf first, separated by commas.
const AttestationHeader = "Keyward-Attestation"

// record writes an enrollment's certificate, its key's glossary row and its audit event (naming station, site
// and device) in tx.
func (e *Enroller) record(ctx context.Context, tx store.Tx, p Principal, s *signed, action string, extra map[string]string) error {
	c := s.row
	if err := tx.InsertCertificate(ctx, c); err != nil {
		return err
	}
	alg, _ := keystore.AlgorithmOf(s.prepared.csr.PublicKey)
	if err := tx.InsertKey(ctx, &store.Key{
		URI: DeviceKeyURI(c.SPKISHA256), Purpose: string(keystore.PurposeDeviceIdentity), Algorithm: string(alg),
		Location: string(keystore.LocationDevice), State: store.KeyActive, Owner: c.Serial, SPKISHA256: c.SPKISHA256,
		CreatedAt: c.CreatedAt, StateChangedAt: c.CreatedAt,
	}); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	d := map[string]string{"profile": c.Profile, "issuer": c.IssuerID, "subject": c.Subject, "role": p.Role, "serial": c.Serial,
		"spki_sha256": hex.EncodeToString(c.SPKISHA256), "not_after": c.NotAfter.Format(time.RFC3339)}
	for k, v := range extra {
		d[k] = v
	}
	return tx.AppendAudit(ctx, &audit.Event{Time: c.CreatedAt, Actor: p.ID, Action: action, Subject: extra["device"], Outcome: audit.OutcomeSuccess, Details: d})
}

// recordError maps an error of the recording transaction: RA errors (a re-check refused) pass through, store
// conflicts become RA conflicts.
func recordError(err error, s *signed) error {
	var re *Error
	if errors.As(err, &re) {
		return err
	}
	return storeError(err, s)
}

// ResolveLabel maps an EST label (RFC 7030 3.2.2) to (environment, product line). The label is the product
// line's name, or "<product>.<environment>" where the product line is declared in several environments.
func (r *RA) ResolveLabel(label string) (env, product string, err error) {
	product, env, _ = strings.Cut(label, ".")
	cfg := r.cfg.Hierarchy
	if env != "" {
		if cfg.Environments[env] == nil || cfg.Environments[env].ProductLines[product] == nil {
			return "", "", errorf(KindNotFound, "EST label %q: product line %q is not declared in environment %q", label, product, env)
		}
		return env, product, nil
	}
	var envs []string
	for _, name := range cfg.EnvironmentNames() {
		if cfg.Environments[name].ProductLines[product] != nil {
			envs = append(envs, name)
		}
	}
	switch len(envs) {
	case 0:
		return "", "", errorf(KindNotFound, "EST label %q: no environment declares product line %q", label, product)
	case 1:
		return envs[0], product, nil
	}
	return "", "", errorf(KindBadRequest, "EST label %q: product line %q is declared in %s; name the environment as %q", label, product, strings.Join(envs, ", "), product+"."+envs[0])
}

// IssuingCAID returns the id of the issuing CA of (env, product).
func IssuingCAID(env, product string) string { return hierarchy.IssuingID(env, product) }

// Hierarchy returns the RA's hierarchy configuration (read-only).
func (r *RA) Hierarchy() *hierarchy.Config { return r.cfg.Hierarchy }

// Profiles returns the RA's profiles (read-only).
func (r *RA) Profiles() map[string]*profile.Profile { return r.cfg.Profiles }

// Now returns the RA's clock reading, UTC.
func (r *RA) Now() time.Time { return r.now() }
