package factory

// What reconciliation does with one record of either kind of export (a batch's injection log, a site CA's
// issuance log): check its certificate against what headquarters recorded for the site CA, record the
// certificate, and register the device it now identifies.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// siteRules are the site CA's rules as headquarters recorded them (siteca.go).
type siteRules struct {
	site     *SiteCA
	cnRule   *regexp.Regexp
	backdate time.Duration
}

func (f *Factory) siteRules(site *SiteCA) (*siteRules, error) {
	cnRule, err := regexp.Compile(site.Site.CNPattern)
	if err != nil {
		return nil, fmt.Errorf("site CA %s: recorded subject rule %q: %w", site.CA.ID, site.Site.CNPattern, err)
	}
	s := &siteRules{site: site, cnRule: cnRule}
	if p := f.Profiles[site.Site.Profile]; p != nil {
		s.backdate = p.Backdate
	}
	return s, nil
}

// check parses a record's certificate and checks that the site CA issued it, that its subject is wantCN and
// inside the site's subject rule, and that it was issued inside the site CA's issuing window; it returns the
// certificate and its SPKI hash. Errors describe the rule broken, for the caller to place.
func (s *siteRules) check(r *ExportRecord, wantCN string) (*x509.Certificate, []byte, error) {
	site := s.site
	c, err := x509.ParseCertificate(r.CertDER)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %v", err)
	}
	if err := c.CheckSignatureFrom(site.Cert); err != nil {
		return nil, nil, fmt.Errorf("certificate %x was not issued by site CA %s: %v", c.SerialNumber, site.CA.ID, err)
	}
	if cn := c.Subject.CommonName; cn != wantCN || !s.cnRule.MatchString(cn) {
		return nil, nil, fmt.Errorf("certificate subject %q is not %q under site CA %s's subject rule %s", cn, wantCN, site.CA.ID, site.Site.CNPattern)
	}
	if issued := c.NotBefore.Add(s.backdate); issued.After(site.Site.IssueUntil) || issued.Before(site.CA.NotBefore) {
		return nil, nil, fmt.Errorf("certificate %x was issued at %s, outside site CA %s's issuing window (%s to %s)", c.SerialNumber, issued.Format(time.RFC3339),
			site.CA.ID, site.CA.NotBefore.Format(time.RFC3339), site.Site.IssueUntil.Format(time.RFC3339))
	}
	spki, err := goodkey.SPKIHash(c.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return c, spki, nil
}

// recordCertificate stores a checked record's certificate, issued by the site CA, with its cert.issue audit
// event (details added to the issuer and subject), and returns its serial.
func (f *Factory) recordCertificate(ctx context.Context, tx store.Tx, name string, site *SiteCA, r *ExportRecord, c *x509.Certificate, spki []byte,
	now time.Time, details map[string]string) (string, error) {
	serial := ra.SerialString(c)
	if err := tx.InsertCertificate(ctx, &store.Certificate{Serial: serial, IssuerID: site.CA.ID, Profile: site.Site.Profile, ProfileVersion: profileVersion(f, site.Site.Profile),
		Subject: c.Subject.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter, SPKISHA256: spki, DER: r.CertDER,
		Status: store.CertStatusValid, CreatedAt: now}); err != nil {
		if errors.Is(err, store.ErrDuplicateSerial) || errors.Is(err, store.ErrDuplicateKey) {
			return "", fmt.Errorf("%s: %w: record %d: certificate %s: %v", name, ErrConflict, r.Index, serial, err)
		}
		return "", err
	}
	d := map[string]string{"issuer": site.CA.ID, "subject": c.Subject.CommonName, "index": fmt.Sprint(r.Index), "source": "factory reconcile"}
	for k, v := range details {
		d[k] = v
	}
	return serial, tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "cert.issue", Subject: serial, Outcome: audit.OutcomeSuccess, Details: d})
}

// registerDevice records the device a record's certificate (serial certSerial) now identifies: its key, held by
// the device, and the registry entry dev (refused if the identity or, for a batch device, its hardware is
// registered already), with the device.register audit event (details added to the registry fields).
func (f *Factory) registerDevice(ctx context.Context, tx store.Tx, name string, r *ExportRecord, spki []byte, alg keystore.Algorithm, certSerial string,
	dev *store.Device, now time.Time, details map[string]string) error {
	uri := ra.DeviceKeyURI(spki)
	// The key's owner is its certificate, as enrollment records it (internal/ra).
	if err := tx.InsertKey(ctx, &store.Key{URI: uri, Purpose: string(keystore.PurposeDeviceIdentity), Algorithm: string(alg), Location: string(keystore.LocationDevice),
		State: store.KeyActive, Owner: certSerial, SPKISHA256: spki, CreatedAt: r.At, StateChangedAt: r.At}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("record %d: key %s: %w", r.Index, uri, err)
	}
	if d, err := tx.LockDevice(ctx, dev.Environment, dev.ProductLine, dev.Serial); err == nil {
		return fmt.Errorf("%s: %w: record %d: device %s of %s/%s is registered already (by %s at site %s, %s)", name, ErrConflict, r.Index, dev.Serial,
			dev.Environment, dev.ProductLine, d.StationID, d.Site, d.EnrolledAt.Format(time.RFC3339))
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	dev.State, dev.EnrolledAt, dev.CertSerial, dev.SPKISHA256, dev.UpdatedAt = store.DeviceActive, r.At, certSerial, spki, now
	if err := tx.PutDevice(ctx, dev); err != nil {
		if errors.Is(err, store.ErrExists) && dev.HardwareSerial != "" {
			who := "another device"
			if prev, _ := f.Store.ListDevices(ctx, store.DeviceFilter{Environment: dev.Environment, ProductLine: dev.ProductLine, HardwareSerial: dev.HardwareSerial, Limit: 1}); len(prev) == 1 {
				who = fmt.Sprintf("device %s (from %s)", prev[0].Serial, prev[0].StationID)
			}
			return fmt.Errorf("%s: %w: record %d: hardware %q received a credential already: it is registered as %s; a device gets one identity",
				name, ErrConflict, r.Index, dev.HardwareSerial, who)
		}
		return err
	}
	d := map[string]string{"environment": dev.Environment, "product_line": dev.ProductLine, "site": dev.Site, "index": fmt.Sprint(r.Index), "certificate": certSerial}
	for k, v := range details {
		d[k] = v
	}
	return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "device.register", Subject: dev.Serial, Outcome: audit.OutcomeSuccess, Details: d})
}
