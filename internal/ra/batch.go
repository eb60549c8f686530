package ra

// Batches of pre-issued device credentials (internal/factory writes them) and the exports of a site's logs. A
// batch is decided when it starts: its whole count is reserved from the site CA's quota, inside the issuing
// window, for serials inside the site's subject rule that the registry does not hold as decommissioned or
// suspended; a resumed batch is decided again for the credentials it has still to issue. Only then does the
// factory get the site CA's signing handle.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/store"
)

// Key custody of a batch's device keys, as its file's header names it.
const (
	// CustodyWrapped: the key is generated in process and only its wrapped form (AES-256-GCM under a
	// per-device transport key) is written; development only, as the key exists in the clear in the process
	// that generates it.
	CustodyWrapped = "software-wrapped"
	// CustodyPKCS11: the key is generated in the site HSM, sensitive and not extractable; the batch holds its URI.
	CustodyPKCS11 = "pkcs11"
)

// Batch is one credential batch of a site CA, as its file's header binds it.
type Batch struct {
	SiteCA      string // the site CA's id
	BatchID     string
	Count       int64
	FirstSerial string // device serial of credential 0 (SerialRange)
	Custody     string // CustodyWrapped or CustodyPKCS11
}

// batchRoles may run batches: a site's operator acts as administrator of the site's data directory.
var batchRoles = []string{RoleAdmin, RoleCAOfficer}

// StartBatch decides a new batch b and, if it may run, reserves its whole count from the site CA's quota with
// the factory.batch.start event in one transaction, and returns the site CA's signing handle. It refuses,
// audited, a batch whose custody the environment does not allow, whose first or last serial is outside the
// site's subject rule, that would pre-issue a serial the registry holds as decommissioned or suspended, after
// the issuing window, or beyond the quota.
func (r *RA) StartBatch(ctx context.Context, p Principal, b Batch) (*ca.Issuer, error) {
	if err := r.authorize(ctx, p, audit.ActionBatchStart, b.SiteCA, "run credential batches", batchRoles...); err != nil {
		return nil, err
	}
	fail := func(err error) (*ca.Issuer, error) {
		return nil, r.refuseBatch(ctx, p, audit.ActionBatchStart, b, err)
	}
	site, err := r.siteCA(ctx, b.SiteCA, "")
	if err != nil {
		return fail(err)
	}
	fs := site.Site
	switch b.Custody {
	case CustodyPKCS11:
	case CustodyWrapped:
		// Outside dev every device key lives in the site HSM (docs/manufacturing.md).
		if fs.Environment != "dev" {
			return fail(factoryErr(ErrFactoryBadRequest, "environment %q: software-wrapped device keys are for dev only; name the site HSM with --keystore pkcs11:...", fs.Environment))
		}
	default:
		return fail(factoryErr(ErrFactoryBadRequest, "key custody %q: use %s or %s", b.Custody, CustodyPKCS11, CustodyWrapped))
	}
	prof := r.Profiles()[fs.Profile]
	if prof == nil {
		return fail(factoryErr(ErrFactoryBadRequest, "site CA %s issues profile %q, which is not loaded", fs.CAID, fs.Profile))
	}
	if b.Count <= 0 {
		return fail(factoryErr(ErrFactoryBadRequest, "--count %d: a batch needs at least one credential", b.Count))
	}
	serials, err := ParseSerialRange(b.FirstSerial, b.Count)
	if err != nil {
		return fail(err)
	}
	rule, err := r.siteRule(fs.CNPattern)
	if err != nil {
		return fail(wrap(KindInternal, fmt.Errorf("site CA %s: recorded subject rule %q: %w", fs.CAID, fs.CNPattern, err)))
	}
	// The names in between are the same prefix and width with the digits counted up: inside the rule when
	// both ends are, for the product lines' serial patterns (a prefix and a fixed number of digits).
	for _, sn := range []string{serials.At(0), serials.At(b.Count - 1)} {
		if !rule.MatchString(sn) || !prof.Subject.CommonName.MatchString(sn) {
			return fail(factoryErr(ErrSiteRefused, "device serial %q is outside site CA %s's subject rule %s", sn, fs.CAID, fs.CNPattern))
		}
	}
	if err := r.checkBatchRegistry(ctx, site, serials, 0, b.Count); err != nil {
		return fail(err)
	}
	// The handle before the reservation: a site CA that cannot sign reserves nothing.
	iss, err := r.siteIssuer(ctx, b.SiteCA)
	if err != nil {
		return fail(err)
	}
	now := r.now()
	err = r.tx(ctx, func(tx store.Tx) error {
		s, err := tx.LockFactorySite(ctx, b.SiteCA)
		if err != nil {
			return err
		}
		if err := checkWindow(s, now); err != nil {
			return err
		}
		if s.Reserved+b.Count > s.Quota {
			return factoryErr(ErrSiteRefused, "site CA %s has %d of its quota of %d certificates left; the batch needs %d", s.CAID, s.Quota-s.Reserved, s.Quota, b.Count)
		}
		if err := tx.SetFactorySiteReserved(ctx, s.CAID, s.Reserved+b.Count); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionBatchStart, s.CAID, now, map[string]string{"batch": b.BatchID, "count": fmt.Sprint(b.Count),
			"first_serial": b.FirstSerial, "last_serial": serials.At(b.Count - 1), "custody": b.Custody, "quota_left": fmt.Sprint(s.Quota - s.Reserved - b.Count)})
	})
	if err != nil {
		return fail(err)
	}
	return iss, nil
}

// ResumeBatch decides to continue batch b, started already, from credential from on: the issuing window must
// still be open and the registry must not hold any serial still to be issued as decommissioned or suspended.
// It records the factory.batch.resume event and returns the site CA's signing handle.
func (r *RA) ResumeBatch(ctx context.Context, p Principal, b Batch, from int64) (*ca.Issuer, error) {
	if err := r.authorize(ctx, p, audit.ActionBatchResume, b.SiteCA, "run credential batches", batchRoles...); err != nil {
		return nil, err
	}
	fail := func(err error) (*ca.Issuer, error) {
		return nil, r.refuseBatch(ctx, p, audit.ActionBatchResume, b, err)
	}
	site, err := r.siteCA(ctx, b.SiteCA, "")
	if err != nil {
		return fail(err)
	}
	now := r.now()
	if err := checkWindow(site.Site, now); err != nil {
		return fail(err)
	}
	serials, err := ParseSerialRange(b.FirstSerial, b.Count)
	if err != nil {
		return fail(err)
	}
	if err := r.checkBatchRegistry(ctx, site, serials, from, b.Count); err != nil {
		return fail(err)
	}
	iss, err := r.siteIssuer(ctx, b.SiteCA)
	if err != nil {
		return fail(err)
	}
	err = r.tx(ctx, func(tx store.Tx) error {
		return r.success(ctx, tx, p, audit.ActionBatchResume, b.SiteCA, now, map[string]string{"batch": b.BatchID, "from_index": fmt.Sprint(from)})
	})
	if err != nil {
		return nil, err
	}
	return iss, nil
}

// CompleteBatch records that every credential of batch b is issued (factory.batch.complete).
func (r *RA) CompleteBatch(ctx context.Context, p Principal, b Batch) error {
	if err := r.authorize(ctx, p, audit.ActionBatchComplete, b.SiteCA, "run credential batches", batchRoles...); err != nil {
		return err
	}
	serials, err := ParseSerialRange(b.FirstSerial, b.Count)
	if err != nil {
		return err
	}
	now := r.now()
	return r.tx(ctx, func(tx store.Tx) error {
		return r.success(ctx, tx, p, audit.ActionBatchComplete, b.SiteCA, now, map[string]string{"batch": b.BatchID, "count": fmt.Sprint(b.Count),
			"first_serial": b.FirstSerial, "last_serial": serials.At(b.Count - 1), "custody": b.Custody})
	})
}

// refuseBatch audits a refusal of batch b (action) and returns err; a failure of ours or of a backend is not a
// refusal and is only returned.
func (r *RA) refuseBatch(ctx context.Context, p Principal, action string, b Batch, err error) error {
	if k := KindOf(err); k != KindInternal && k != KindUnavailable {
		r.refuse(ctx, p, action, b.SiteCA, map[string]string{"batch": b.BatchID, "count": fmt.Sprint(b.Count), "first_serial": b.FirstSerial}, err)
	}
	return err
}

// checkWindow refuses issuance by site CA fs after its issuing window.
func checkWindow(fs *store.FactorySite, now time.Time) error {
	if now.After(fs.IssueUntil) {
		return factoryErr(ErrSiteRefused, "site CA %s's issuing window ended at %s", fs.CAID, fs.IssueUntil.Format(time.RFC3339))
	}
	return nil
}

// checkBatchRegistry refuses a batch that would pre-issue, at an index from from to count-1, a device serial
// that the registry of the site's product line holds as decommissioned (its serial is never certified again)
// or suspended (nothing is issued for it until an operator resumes it), as for every other certificate
// (checkRegistry). The registry is read by state rather than serial by serial: a batch may be millions of
// serials, the devices in those states are few.
func (r *RA) checkBatchRegistry(ctx context.Context, site *SiteCA, serials SerialRange, from, count int64) error {
	fs := site.Site
	for _, state := range []string{store.DeviceDecommissioned, store.DeviceSuspended} {
		devs, err := r.cfg.Store.ListDevices(ctx, store.DeviceFilter{Environment: fs.Environment, ProductLine: fs.ProductLine, State: state})
		if err != nil {
			return wrap(KindUnavailable, err)
		}
		for _, d := range devs {
			i, ok := serials.Index(d.Serial)
			if !ok || i < from || i >= count {
				continue
			}
			reason := r.checkRegistry(ctx, fs.Environment, fs.ProductLine, d.Serial)
			if reason == nil {
				continue // resumed or gone since it was listed
			}
			return errorf(KindOf(reason), "credential %d of the batch would be %s: %w; start the batch after it, or from another first serial", i, d.Serial, reason)
		}
	}
	return nil
}

// NextExportSeq returns the sequence number of the next export of log logID (a batch, or a site CA's issuance
// log): one after the last recorded. RecordExport refuses it if another export takes it meanwhile.
func (r *RA) NextExportSeq(ctx context.Context, logID string) (int64, error) {
	var last int64
	err := r.counter(ctx, func(tx store.Tx) error {
		var err error
		last, err = tx.LastFactoryExportSeq(ctx, logID)
		return err
	})
	if err != nil {
		return 0, wrap(KindUnavailable, err)
	}
	return last + 1, nil
}

// RecordExport records export e of a site's log (described as log in errors) with its factory.export event,
// details added to its sequence number, record count, finality and chain head. The export is recorded before
// its file appears, so a number is never used twice; a failure after it leaves a gap, which reconciliation
// accepts.
func (r *RA) RecordExport(ctx context.Context, p Principal, e *store.FactoryExport, log string, details map[string]string) error {
	if err := r.authorize(ctx, p, audit.ActionFactoryExport, e.CAID, "export site logs", batchRoles...); err != nil {
		return err
	}
	return r.tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertFactoryExport(ctx, e); err != nil {
			if errors.Is(err, store.ErrExists) {
				return factoryErr(ErrFactoryConflict, "another export of %s took sequence number %d at the same time; export again", log, e.Seq)
			}
			return err
		}
		d := map[string]string{"seq": fmt.Sprint(e.Seq), "records": fmt.Sprint(e.Records), "final": fmt.Sprint(e.Final), "chain_head": fmt.Sprintf("%x", e.ChainHead)}
		for k, v := range details {
			d[k] = v
		}
		return r.success(ctx, tx, p, audit.ActionFactoryExport, e.CAID, e.CreatedAt, d)
	})
}
