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
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// Audit actions of issuance and enrollment.
const (
	ActionIssue    = audit.ActionCertIssue
	ActionEnroll   = audit.ActionESTEnroll
	ActionReenroll = audit.ActionESTReenroll
)

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
func (r *RA) ESTProfile(env, product string) (*profile.Profile, error) {
	envSpec := r.Hierarchy().Environments[env]
	if envSpec == nil || envSpec.ProductLines[product] == nil {
		return nil, errorf(KindNotFound, "product line %q is not declared in environment %q of keyward.yaml", product, env)
	}
	for _, name := range envSpec.ProductLines[product].Profiles {
		if p := r.Profiles()[name]; p != nil && slices.Contains(p.AllowedPrincipals, RoleFactoryStation) {
			return p, nil
		}
	}
	return nil, errorf(KindNotFound, "product line %s/%s has no profile that factory stations may request (add %q to allowed_principals of one of: %s)",
		env, product, RoleFactoryStation, strings.Join(envSpec.ProductLines[product].Profiles, ", "))
}

// attestationReadable fails enrollments closed while the attestation configuration cannot be read: a profile
// that requires attestation must never enroll without it.
func (r *RA) attestationReadable() error {
	if r.cfg.AttestationErr != nil {
		return errorf(KindUnavailable, "attestation configuration unreadable: %w", r.cfg.AttestationErr)
	}
	return nil
}

// AttestationRequired reports whether enrollments under profile name must carry an attestation.
func (r *RA) AttestationRequired(name string) bool { return r.cfg.Attestation[name] != nil }

// refusal carries what the audit record of a refusal names.
type refusal struct {
	action  string
	device  string
	details map[string]string
	// tk announces the request to group commit until it queues its transaction or is refused.
	tk *ticket
}

func (r *RA) newRefusal(action string, c Caller, req EnrollRequest, pc *parsedCSR) *refusal {
	d := map[string]string{"environment": req.Environment, "product_line": req.ProductLine}
	if c.Station != nil {
		d["station"], d["site"] = c.Station.ID, c.Station.Site
	}
	if c.Cert != nil {
		d["client_cert"] = SerialString(c.Cert)
	}
	dev := "-"
	// Name the device in the audit record even when the CSR is refused later: a CSR refused by the strict
	// parse is parsed without any checks only to read its subject.
	if csr := pc.readable(); csr != nil && csr.Subject.CommonName != "" {
		dev = csr.Subject.CommonName
	}
	return &refusal{action: action, device: dev, details: d}
}

// Refuse audits a refusal decided before the RA saw a request (no or unknown client certificate, a malformed
// body, a wrong content type): actor is who asked, details what the record should name. Nothing else changes.
func (r *RA) Refuse(ctx context.Context, actor Principal, action string, details map[string]string, cause error) {
	r.refuse(ctx, actor, action, "-", details, cause)
}

func (r *RA) auditRefusal(ctx context.Context, p Principal, rf *refusal, cause error) {
	r.refuse(ctx, p, rf.action, rf.device, rf.details, cause)
}

func (r *RA) fail(ctx context.Context, c Caller, rf *refusal, err error) error {
	rf.tk.done()
	if k := KindOf(err); k != KindInternal && k != KindUnavailable {
		r.auditRefusal(ctx, c.Principal, rf, err)
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
func (r *RA) Enroll(ctx context.Context, c Caller, req EnrollRequest) (*EnrollResult, error) {
	if err := r.attestationReadable(); err != nil {
		return nil, err
	}
	// The CSR is parsed and its signature verified once, here, for every step that reads it.
	pc := parseCSR(req.CSR)
	rf := r.newRefusal(ActionEnroll, c, req, pc)
	rf.tk = r.group.expect()
	defer rf.tk.done()
	if c.Station == nil {
		if c.Principal.Role == RoleDevice && c.Cert != nil && rf.device != c.Cert.Subject.CommonName {
			return nil, r.fail(ctx, c, rf, errorf(KindForbidden, "device certificate of %s may not enroll another device (%s): only factory stations enroll devices", c.Cert.Subject.CommonName, rf.device))
		}
		return nil, r.fail(ctx, c, rf, errorf(KindForbidden, "%s may not use simpleenroll: only factory stations enroll devices; a device renews its own identity with simplereenroll (RFC 7030 4.2.2)", c.Principal.ID))
	}
	now := r.now()
	if err := checkStation(c.Station, req.Environment, req.ProductLine, now); err != nil {
		return nil, r.fail(ctx, c, rf, err)
	}
	prof, err := r.ESTProfile(req.Environment, req.ProductLine)
	if err != nil {
		return nil, r.fail(ctx, c, rf, err)
	}
	rf.details["profile"] = prof.Name
	// At a site, the site CA's state first (window, quota, the station's site): a closed window or a spent
	// quota is the reason, whatever the request holds.
	site := r.cfg.Site
	var fs *store.FactorySite
	if site != nil {
		if err := r.checkSiteScope(req.Environment, req.ProductLine); err != nil {
			return nil, r.fail(ctx, c, rf, err)
		}
		if fs, err = r.cfg.Store.GetFactorySite(ctx, site.CAID); err != nil {
			return nil, wrap(KindUnavailable, fmt.Errorf("site CA %s record: %w", site.CAID, err))
		}
		if err := r.checkSite(fs, c.Station, "", now); err != nil {
			return nil, r.fail(ctx, c, rf, err)
		}
	}
	prep, err := r.prepare(ctx, c.Principal, IssueRequest{Profile: prof.Name, Environment: req.Environment, ProductLine: req.ProductLine, CSR: req.CSR}, pc, false)
	if err != nil {
		return nil, r.fail(ctx, c, rf, err)
	}
	serial := prep.csr.Subject.CommonName
	if site != nil {
		if err := r.checkSite(fs, c.Station, serial, now); err != nil {
			return nil, r.fail(ctx, c, rf, err)
		}
	}
	// The registry is checked before anything is signed, and again on the locked row when recording.
	if d, err := r.cfg.Store.GetDevice(ctx, req.Environment, req.ProductLine, serial); err == nil {
		if err := checkExisting(d); err != nil {
			return nil, r.fail(ctx, c, rf, err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, wrap(KindUnavailable, err)
	}
	if err := r.checkAttestation(prof, prep.csr, req.Attestation, now); err != nil {
		return nil, r.fail(ctx, c, rf, err)
	}
	s, err := r.sign(ctx, prep)
	if err != nil {
		return nil, err
	}
	res := &EnrollResult{Cert: s.row}
	err = r.txFor(ctx, rf.tk, func(tx store.Tx) error {
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
			if err := r.checkSite(fs, st, serial, now); err != nil {
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
		if err := r.record(ctx, tx, c.Principal, s, ActionEnroll, details); err != nil {
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
		return nil, r.fail(ctx, c, rf, recordError(err, s))
	}
	return res, nil
}

// Reenroll renews a device's identity for the device itself (EST simplereenroll, RFC 7030 4.2.2).
func (r *RA) Reenroll(ctx context.Context, c Caller, req EnrollRequest) (*EnrollResult, error) {
	if err := r.attestationReadable(); err != nil {
		return nil, err
	}
	pc := parseCSR(req.CSR)
	rf := r.newRefusal(ActionReenroll, c, req, pc)
	rf.tk = r.group.expect()
	defer rf.tk.done()
	if site := r.cfg.Site; site != nil {
		return nil, r.fail(ctx, c, rf, errorf(KindForbidden, "factory site %s enrolls new devices only: a device renews its identity with headquarters (simplereenroll there)", site.Site))
	}
	if c.Principal.Role != RoleDevice || c.Cert == nil {
		return nil, r.fail(ctx, c, rf, errorf(KindForbidden, "%s may not use simplereenroll: renewal is authenticated by the device's current identity certificate (RFC 7030 4.2.2); stations enroll new devices with simpleenroll", c.Principal.ID))
	}
	serial := c.Cert.Subject.CommonName
	rf.device = serial
	if c.Environment != req.Environment || c.ProductLine != req.ProductLine {
		return nil, r.fail(ctx, c, rf, errorf(KindForbidden, "device %s belongs to %s/%s and may not renew under %s/%s", serial, c.Environment, c.ProductLine, req.Environment, req.ProductLine))
	}
	cur, err := r.cfg.Store.GetCertificate(ctx, SerialString(c.Cert))
	if errors.Is(err, store.ErrNotFound) {
		return nil, r.fail(ctx, c, rf, errorf(KindForbidden, "certificate %s of %s is not in this Keyward's records", SerialString(c.Cert), serial))
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if cur.Status != store.CertStatusValid {
		return nil, r.fail(ctx, c, rf, errorf(KindForbidden, "certificate %s of %s is %s: renew with the device's current certificate", cur.Serial, serial, cur.Status))
	}
	dev, err := r.cfg.Store.GetDevice(ctx, req.Environment, req.ProductLine, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, r.fail(ctx, c, rf, errorf(KindForbidden, "device %s is not in the registry of %s/%s: it must first be enrolled by a factory station", serial, req.Environment, req.ProductLine))
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if err := checkRenewable(dev, cur.Serial); err != nil {
		return nil, r.fail(ctx, c, rf, err)
	}
	prof := r.Profiles()[cur.Profile]
	if prof == nil {
		return nil, r.fail(ctx, c, rf, errorf(KindBadRequest, "certificate %s was issued under profile %q, which this Keyward no longer has", cur.Serial, cur.Profile))
	}
	rf.details["profile"] = prof.Name
	now := r.now()
	// profile renewal_window: renewal is due in the last fraction of the validity, unless an operator forced it.
	opens := cur.NotAfter.Add(-time.Duration(prof.RenewalWindow * float64(cur.NotAfter.Sub(cur.NotBefore))))
	if now.Before(opens) && !dev.ForceRenew {
		return nil, r.fail(ctx, c, rf, errorf(KindForbidden, "certificate %s of %s may be renewed from %s (the last %s of its validity, profile %q renewal_window %v); an operator can allow it now with 'keyward device force-renew %s'",
			cur.Serial, serial, opens.Format(time.RFC3339), strconv.FormatFloat(prof.RenewalWindow*100, 'f', -1, 64)+"%", prof.Name, prof.RenewalWindow, serial))
	}
	if csr := pc.readable(); csr != nil {
		// RFC 7030 4.2.2: the Subject and SubjectAltName of a renewal request are identical to the certificate's.
		if err := sameSubject(csr, c.Cert); err != nil {
			return nil, r.fail(ctx, c, rf, err)
		}
	}
	// The profile's allowed_principals says who may request a new identity: the factory station that enrolled
	// this device did. A renewal re-certifies that same subject under that same profile, authorised by RFC 7030
	// 4.2.2 and the checks above (current certificate, registry state, window, same subject), so the profile
	// check runs with the enrolling role.
	prep, err := r.prepare(ctx, Principal{ID: c.Principal.ID, Role: RoleFactoryStation}, IssueRequest{Profile: prof.Name, Environment: req.Environment, ProductLine: req.ProductLine, CSR: req.CSR}, pc, false)
	if err != nil {
		return nil, r.fail(ctx, c, rf, err)
	}
	s, err := r.sign(ctx, prep)
	if err != nil {
		return nil, err
	}
	res := &EnrollResult{Cert: s.row, Superseded: cur.Serial, Rekeyed: !bytes.Equal(s.row.SPKISHA256, cur.SPKISHA256)}
	err = r.txFor(ctx, rf.tk, func(tx store.Tx) error {
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
		if err := r.record(ctx, tx, c.Principal, s, ActionReenroll, details); err != nil {
			return err
		}
		d.CertSerial, d.SPKISHA256, d.ForceRenew, d.UpdatedAt = s.row.Serial, s.row.SPKISHA256, false, s.row.CreatedAt
		res.Device = d
		return tx.PutDevice(ctx, d)
	})
	if err != nil {
		return nil, r.fail(ctx, c, rf, recordError(err, s))
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
func (r *RA) checkAttestation(prof *profile.Profile, csr *x509.CertificateRequest, chain [][]byte, now time.Time) error {
	roots := r.cfg.Attestation[prof.Name]
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

// ResolveLabel maps an EST label (RFC 7030 3.2.2) to (environment, product line). The label is the product
// line's name, or "<product>.<environment>" where the product line is declared in several environments.
func (r *RA) ResolveLabel(label string) (env, product string, err error) {
	product, env, _ = strings.Cut(label, ".")
	cfg := r.Hierarchy()
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
