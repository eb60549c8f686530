package ra

// Decommissioning a device and selecting certificates through the device registry. A device's certificates
// are found by its identity's subject: every certificate one of its environment and product line's CAs issued
// to that subject DN, which is the device's serial (enrollment certifies it as the subject common name, and the
// registry keeps a serial unique within an environment and product line).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// maxAttesterLength bounds the name of who attests a key destruction; it is a person or a procedure record,
// not free text.
const maxAttesterLength = 200

// DecommissionRequest asks to retire a device for good.
type DecommissionRequest struct {
	Device DeviceRef
	// AttestedBy names who attests that the device's keys were destroyed (a person, or a destruction
	// record); required, and recorded in the audit trail with each key.
	AttestedBy string
}

// DecommissionResult reports a decommissioning.
type DecommissionResult struct {
	Environment string    `json:"environment"`
	ProductLine string    `json:"product_line"`
	Serial      string    `json:"serial"`
	State       string    `json:"state"`
	At          time.Time `json:"decommissioned_at"`
	AttestedBy  string    `json:"attested_by"`
	// Revoked lists the certificates revoked now with reason cessationOfOperation.
	Revoked []string `json:"revoked"`
	// Untouched lists the device's other certificates: revoked before, or expired.
	Untouched []string `json:"untouched,omitempty"`
	// KeysDestroyed lists the glossary URIs (spki:sha256:<hex>) of the device keys recorded as destroyed.
	KeysDestroyed []string `json:"keys_destroyed"`
}

// Decommission retires a device for good, in one transaction: every certificate of the device that is valid,
// superseded but unexpired, or on hold is revoked with reason cessationOfOperation (RFC 5280 5.3.1: "the
// certificate is no longer needed for the purpose for which it was issued"), the device becomes
// decommissioned (final: its serial is never provisioned again), each of its keys in the key glossary is
// recorded as destroyed on the attestation of req.AttestedBy, and every change is audited. Decommissioning a
// decommissioned device is a KindConflict error that changes nothing.
func (r *RA) Decommission(ctx context.Context, p Principal, req DecommissionRequest) (*DecommissionResult, error) {
	if err := r.authoriseRevoker(ctx, p, audit.ActionDevice+string(Decommission), req.Device.Serial); err != nil {
		return nil, err
	}
	attester := strings.TrimSpace(req.AttestedBy)
	if attester == "" {
		return nil, FieldErrorf(KindBadRequest, "attested_by", "decommissioning device %s needs who attests that its keys were destroyed", req.Device.Serial)
	}
	if len(attester) > maxAttesterLength || strings.ContainsFunc(attester, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, FieldErrorf(KindBadRequest, "attested_by", "attester %.40q: at most %d characters and no control characters", attester, maxAttesterLength)
	}
	found, err := r.FindDevice(ctx, req.Device)
	if err != nil {
		return nil, err
	}
	cas, err := r.deviceCAs(ctx, found.Environment, found.ProductLine)
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Err: err}
	}
	now := r.now()
	res := &DecommissionResult{Environment: found.Environment, ProductLine: found.ProductLine, Serial: found.Serial, At: now, AttestedBy: attester,
		Revoked: []string{}, KeysDestroyed: []string{}}
	err = r.tx(ctx, func(tx store.Tx) error {
		d, err := tx.LockDevice(ctx, found.Environment, found.ProductLine, found.Serial)
		if err != nil {
			return err
		}
		if d.State == store.DeviceDecommissioned {
			return &Error{Kind: KindConflict, Err: fmt.Errorf("device %s of %s/%s was decommissioned at %s; nothing changed (decommissioning is final)",
				d.Serial, d.Environment, d.ProductLine, d.UpdatedAt.UTC().Format(time.RFC3339))}
		}
		// Read with the device locked: a renewal or re-provisioning locks it too, so none can add a
		// certificate between this read and the commit.
		certs, err := r.deviceCertificates(ctx, d, cas)
		if err != nil {
			return err
		}
		extra := map[string]string{"device": d.Serial, "environment": d.Environment, "product_line": d.ProductLine, "decommission": "true"}
		var spkis [][]byte
		for _, c := range certs {
			if !slices.ContainsFunc(spkis, func(h []byte) bool { return string(h) == string(c.SPKISHA256) }) {
				spkis = append(spkis, c.SPKISHA256)
			}
			if !revocableAtDecommission(c, now) {
				res.Untouched = append(res.Untouched, c.Serial)
				continue
			}
			if _, err := r.revokeTx(ctx, tx, p, c.Serial, store.ReasonCessationOfOperation, nil, now, extra); err != nil {
				if errors.Is(err, store.ErrAlreadyRevoked) {
					res.Untouched = append(res.Untouched, c.Serial) // revoked by someone else since the read
					continue
				}
				return err
			}
			res.Revoked = append(res.Revoked, c.Serial)
		}
		for _, h := range spkis {
			uri := DeviceKeyURI(h)
			k, err := r.cfg.Store.GetKey(ctx, uri)
			if errors.Is(err, store.ErrNotFound) {
				continue // a certificate issued over the API from a CSR: its key was never in the glossary
			} else if err != nil {
				return err
			}
			if k.Location != string(keystore.LocationDevice) || k.State == store.KeyDestroyed {
				continue
			}
			if err := tx.SetKeyState(ctx, uri, store.KeyDestroyed, now); err != nil {
				return err
			}
			// As 'keyward key destroy' records a device key: Keyward never held it, so the record rests on
			// the attester's word.
			if err := r.success(ctx, tx, p, audit.ActionKeyDestroy, uri, now, map[string]string{"purpose": k.Purpose, "location": k.Location, "owner": k.Owner,
				"reason": "device decommissioned", "attested_by": attester, "device": d.Serial, "environment": d.Environment, "product_line": d.ProductLine,
				"role": p.Role}); err != nil {
				return err
			}
			res.KeysDestroyed = append(res.KeysDestroyed, uri)
		}
		// The device's symmetric keys, derived from key-derivation keys (kdk.go): Keyward holds none of them,
		// so they too are recorded destroyed on the attester's word.
		sym, err := r.deviceSymmetricKeys(ctx, d.Environment, d.ProductLine, d.Serial)
		if err != nil {
			return err
		}
		for _, k := range sym {
			if err := tx.SetKeyState(ctx, k.URI, store.KeyDestroyed, now); err != nil {
				return err
			}
			if err := r.success(ctx, tx, p, audit.ActionKeyDestroy, k.URI, now, map[string]string{"purpose": k.Purpose, "location": k.Location, "owner": k.Owner,
				"reason": "device decommissioned", "attested_by": attester, "device": d.Serial, "environment": d.Environment, "product_line": d.ProductLine,
				"role": p.Role}); err != nil {
				return err
			}
			res.KeysDestroyed = append(res.KeysDestroyed, k.URI)
		}
		from := d.State
		d.State, d.ReprovisionAllowed, d.ForceRenew, d.UpdatedAt = store.DeviceDecommissioned, false, false, now
		if err := tx.PutDevice(ctx, d); err != nil {
			return err
		}
		res.State = d.State
		return r.success(ctx, tx, p, audit.ActionDevice+string(Decommission), d.Serial, now, map[string]string{"environment": d.Environment,
			"product_line": d.ProductLine, "from": from, "to": d.State, "certificate": d.CertSerial, "attested_by": attester, "role": p.Role,
			"revoked": strings.Join(res.Revoked, ","), "keys_destroyed": fmt.Sprint(len(res.KeysDestroyed))})
	})
	if err != nil {
		var re *Error
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, &Error{Kind: KindUnavailable, Err: fmt.Errorf("decommission %s: %w", found.Serial, err)}
	}
	return res, nil
}

// revocableAtDecommission reports whether decommissioning revokes c: a valid certificate, a superseded one
// that relying parties may still accept until it expires, or one on hold, which becomes a permanent
// revocation (RFC 5280 5.3.1). An expired superseded certificate no relying party accepts, and CRLs leave it
// out anyway (RFC 5280 3.3).
func revocableAtDecommission(c *store.Certificate, now time.Time) bool {
	switch c.Status {
	case store.CertStatusValid:
		return true
	case store.CertStatusSuperseded:
		return c.NotAfter.After(now)
	case store.CertStatusRevoked:
		return c.RevocationReason == store.ReasonCertificateHold
	}
	return false
}

// deviceCAs returns the ids of the CAs that issue device certificates in env and product line: the current
// issuing CA, any retired one, and the factory site CAs whose pre-issued credentials reconciliation recorded.
func (r *RA) deviceCAs(ctx context.Context, env, product string) ([]string, error) {
	list, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, ca := range list {
		if ca.Environment == env && ca.ProductLine == product && (ca.Kind == store.CAKindIssuing || ca.Kind == store.CAKindSite) {
			ids = append(ids, ca.ID)
		}
	}
	return ids, nil
}

// deviceSubject returns the subject DN of d's certificates: that of its current identity.
func (r *RA) deviceSubject(ctx context.Context, d *store.Device) (string, error) {
	c, err := r.cfg.Store.GetCertificate(ctx, d.CertSerial)
	if err != nil {
		return "", fmt.Errorf("current certificate %s of device %s: %w", d.CertSerial, d.Serial, err)
	}
	return c.Subject, nil
}

// deviceCertificates returns every certificate that one of cas issued to d's subject, in serial order.
func (r *RA) deviceCertificates(ctx context.Context, d *store.Device, cas []string) ([]*store.Certificate, error) {
	subject, err := r.deviceSubject(ctx, d)
	if err != nil {
		return nil, err
	}
	var out []*store.Certificate
	for _, ca := range cas {
		list, err := r.cfg.Store.ListCertificates(ctx, store.CertFilter{IssuerID: ca, Subject: subject})
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial < out[j].Serial })
	return out, nil
}

// RegistrySelector selects certificates through the device registry: those of one device, of every device a
// factory station enrolled, or of every device enrolled at a site. Environment and ProductLine narrow the
// registry; they select nothing on their own.
type RegistrySelector struct {
	Environment string `json:"environment,omitempty"`
	ProductLine string `json:"product_line,omitempty"`
	Device      string `json:"device,omitempty"`  // device serial
	Station     string `json:"station,omitempty"` // station id
	Site        string `json:"site,omitempty"`
	// Batch is a factory batch id: the devices headquarters recorded from that batch's reconciled exports.
	Batch string `json:"batch,omitempty"`
}

// IsZero reports whether sel selects nothing.
func (sel RegistrySelector) IsZero() bool {
	return sel.Device == "" && sel.Station == "" && sel.Site == "" && sel.Batch == ""
}

func (sel RegistrySelector) describe() string {
	var parts []string
	for _, f := range []struct{ k, v string }{{"env", sel.Environment}, {"product", sel.ProductLine}, {"device", sel.Device}, {"station", sel.Station}, {"site", sel.Site}, {"batch", sel.Batch}} {
		if f.v != "" {
			parts = append(parts, f.k+"="+f.v)
		}
	}
	return strings.Join(parts, " ")
}

// registryQueries turns sel and q into one certificate query per selected device: its issuing CAs and its
// subject, narrowed by q's other selectors. A device that q's issuers or subject exclude gets no query.
// The station's or site's devices are those whose registry entry names it: who enrolled (or last
// re-provisioned) the device, whose renewals followed from that enrollment.
func (r *RA) registryQueries(ctx context.Context, sel RegistrySelector, q store.CertQuery) ([]store.CertQuery, error) {
	reg := r.cfg.Store
	var devices []*store.Device
	switch {
	case sel.Device != "":
		d, err := r.FindDevice(ctx, DeviceRef{Environment: sel.Environment, ProductLine: sel.ProductLine, Serial: sel.Device})
		if err != nil {
			return nil, err
		}
		if (sel.Station != "" && d.StationID != sel.Station) || (sel.Site != "" && d.Site != sel.Site) {
			return nil, &Error{Kind: KindNotFound, Err: fmt.Errorf("device %s was enrolled by station %s at site %s, not as --station/--site select", d.Serial, d.StationID, d.Site)}
		}
		devices = []*store.Device{d}
	case sel.Batch != "":
		// Reconciliation records a batch's devices with station "batch:<id>" (reconcile.go).
		b, err := reg.GetFactoryBatch(ctx, sel.Batch)
		if errors.Is(err, store.ErrNotFound) {
			return nil, &Error{Kind: KindNotFound, Err: fmt.Errorf("no reconciled factory batch %q (see 'keyward factory reconcile')", sel.Batch)}
		} else if err != nil {
			return nil, &Error{Kind: KindUnavailable, Err: err}
		}
		list, err := reg.ListDevices(ctx, store.DeviceFilter{Environment: sel.Environment, ProductLine: sel.ProductLine, StationID: "batch:" + b.BatchID})
		if err != nil {
			return nil, &Error{Kind: KindUnavailable, Err: err}
		}
		for _, d := range list {
			if sel.Site == "" || d.Site == sel.Site {
				devices = append(devices, d)
			}
		}
	case sel.Station == "":
		// A site: every device provisioned there, by its stations over EST, at a site CA's 'factory serve', or
		// from one of its pre-issued batches; the registry records the site with each.
		list, err := reg.ListDevices(ctx, store.DeviceFilter{Environment: sel.Environment, ProductLine: sel.ProductLine, Site: sel.Site})
		if err != nil {
			return nil, &Error{Kind: KindUnavailable, Err: err}
		}
		if len(list) == 0 {
			if _, err := r.registryStations(ctx, sel); err != nil {
				return nil, err
			}
		}
		devices = list
	default:
		stations, err := r.registryStations(ctx, sel)
		if err != nil {
			return nil, err
		}
		for _, st := range stations {
			list, err := reg.ListDevices(ctx, store.DeviceFilter{Environment: sel.Environment, ProductLine: sel.ProductLine, StationID: st})
			if err != nil {
				return nil, &Error{Kind: KindUnavailable, Err: err}
			}
			devices = append(devices, list...)
		}
	}
	caCache := map[string][]string{}
	var out []store.CertQuery
	for _, d := range devices {
		key := d.Environment + "/" + d.ProductLine
		cas, ok := caCache[key]
		if !ok {
			var err error
			if cas, err = r.deviceCAs(ctx, d.Environment, d.ProductLine); err != nil {
				return nil, &Error{Kind: KindUnavailable, Err: err}
			}
			caCache[key] = cas
		}
		if len(q.IssuerIDs) > 0 {
			cas = slices.DeleteFunc(slices.Clone(cas), func(id string) bool { return !slices.Contains(q.IssuerIDs, id) })
		}
		subject, err := r.deviceSubject(ctx, d)
		if err != nil {
			return nil, &Error{Kind: KindUnavailable, Err: err}
		}
		if len(cas) == 0 || (q.Subject != "" && q.Subject != subject) {
			continue
		}
		dq := q
		dq.IssuerIDs, dq.Subject = cas, subject
		out = append(out, dq)
	}
	return out, nil
}

// registryStations returns the ids of the stations sel names: its station (which must exist), or every station
// at its site (at least one).
func (r *RA) registryStations(ctx context.Context, sel RegistrySelector) ([]string, error) {
	reg := r.cfg.Store
	if sel.Station != "" {
		st, err := reg.GetStation(ctx, sel.Station)
		if errors.Is(err, store.ErrNotFound) {
			return nil, &Error{Kind: KindNotFound, Err: fmt.Errorf("no station %q (see 'keyward station list')", sel.Station)}
		} else if err != nil {
			return nil, &Error{Kind: KindUnavailable, Err: err}
		}
		if sel.Site != "" && st.Site != sel.Site {
			return nil, &Error{Kind: KindNotFound, Err: fmt.Errorf("station %s is at site %s, not %s", st.ID, st.Site, sel.Site)}
		}
		return []string{st.ID}, nil
	}
	all, err := reg.ListStations(ctx)
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Err: err}
	}
	var ids []string
	for _, st := range all {
		if st.Site == sel.Site && (sel.Environment == "" || st.Environment == sel.Environment) {
			ids = append(ids, st.ID)
		}
	}
	if len(ids) == 0 {
		return nil, &Error{Kind: KindNotFound, Err: fmt.Errorf("no factory station at site %q (see 'keyward station list')", sel.Site)}
	}
	return ids, nil
}
