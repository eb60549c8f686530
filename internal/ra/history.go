package ra

// Forensics: what the audit trail says about one device, or one certificate, and what the device held at an
// instant ("which keys did device X hold at time T?"). The answer is read from the audit events of the
// device's serial, of each of its certificates' serials and of each of its keys' URIs, in sequence order, so
// each line of it names the event that records it; the certificates table supplies what events do not repeat
// (a certificate's issuer, validity and key).
//
// State at an instant is replayed from the successful events up to it:
//   - a certificate is held from the event that issued it until one supersedes it (a renewal or a
//     re-provisioning names the certificate it replaces), or the device is decommissioned;
//   - it is valid at the instant if it is held, inside its validity period, and not revoked by then (a
//     certificate on hold counts as revoked until released);
//   - a key is held while a certificate it is the key of is held and it is not recorded destroyed; a renewal
//     with a new key (a rekey) ends the old key's holding with the old certificate.

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/auditproof"
)

// History is the forensic record of a device: its registry entry, every audit event about it, its
// certificates or its keys in sequence order, and, when asked for an instant, what it held then.
type History struct {
	Device *store.Device
	// Events are the device's events, successes and refusals, in sequence order.
	Events []*audit.Event
	// Certificates and Keys are every certificate and key the device has had, with when each began and ended.
	Certificates []*HeldCertificate
	Keys         []*HeldKey
	// At is what the device held at the instant asked for, nil when none was.
	At *Snapshot
}

// HeldCertificate is one certificate of a device over time.
type HeldCertificate struct {
	Certificate *store.Certificate
	// IssuedSeq is the event that issued it; EndedSeq the one after which the device no longer held it (0 while
	// it does), for EndedBy: "superseded", "decommissioned".
	IssuedSeq int64
	IssuedAt  time.Time
	EndedSeq  int64
	EndedAt   *time.Time
	EndedBy   string
	// RevokedSeq is the event that revoked it (0 if none), with its reason (RFC 5280 5.3.1 name); a release from
	// hold clears it.
	RevokedSeq       int64
	RevokedAt        *time.Time
	RevocationReason string
}

// HeldKey is one key of a device over time, by the SHA-256 of its SubjectPublicKeyInfo.
type HeldKey struct {
	URI        string
	SPKISHA256 []byte
	SinceSeq   int64
	Since      time.Time
	// UntilSeq is the event after which the device no longer held the key (0 while it does), for EndedBy:
	// "rekeyed", "superseded", "destroyed", "decommissioned".
	UntilSeq int64
	Until    *time.Time
	EndedBy  string
}

// Snapshot is what a device held at an instant, replayed from the events up to it.
type Snapshot struct {
	At time.Time
	// AsOfSeq is the last event at or before At (0: none).
	AsOfSeq int64
	// State is the device's registry state at At: "unknown" before its first event, then active, suspended or
	// decommissioned.
	State        string
	Certificates []CertificateAt
	Keys         []KeyAt
}

// CertificateAt is a certificate the device had by an instant, and whether it held it and it was valid then.
type CertificateAt struct {
	Serial, Issuer      string
	NotBefore, NotAfter time.Time
	Held                bool
	// Valid: held, inside its validity period, and not revoked at the instant.
	Valid            bool
	Revoked          bool
	RevocationReason string
}

// KeyAt is a key the device had by an instant, and whether it held it then.
type KeyAt struct {
	URI        string
	SPKISHA256 []byte
	Held       bool
}

// DeviceHistory returns the forensic record of the device ref names; with at non-nil, also what it held at
// that instant. Admins and auditors may read it.
func (r *RA) DeviceHistory(ctx context.Context, p Principal, ref DeviceRef, at *time.Time) (*History, error) {
	if err := r.authorize(ctx, p, audit.ActionDeviceHistory, ref.Serial, "read device histories", RoleAdmin, RoleAuditor); err != nil {
		return nil, err
	}
	d, err := r.FindDevice(ctx, ref)
	if err != nil {
		return nil, err
	}
	return r.history(ctx, d, at)
}

// CertificateHistory returns the forensic record of the device that certificate serial was issued to, and the
// serial's normalised form; with at non-nil, also what the device held at that instant. A certificate of no
// registered device (issued over the API to a subject the registry does not hold) is not found.
func (r *RA) CertificateHistory(ctx context.Context, p Principal, serial string, at *time.Time) (*History, string, error) {
	if err := r.authorize(ctx, p, audit.ActionCertHistory, serial, "read certificate histories", RoleAdmin, RoleAuditor); err != nil {
		return nil, "", err
	}
	s, err := NormalizeSerial(serial)
	if err != nil {
		return nil, "", err
	}
	c, err := r.cfg.Store.GetCertificate(ctx, s)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", errorf(KindNotFound, "no certificate %s (see 'keyward cert list')", s)
	} else if err != nil {
		return nil, "", wrap(KindUnavailable, err)
	}
	issuer, err := r.cfg.Store.GetCA(ctx, c.IssuerID)
	if err != nil {
		return nil, "", wrap(KindUnavailable, err)
	}
	// A device's serial is its certificates' common name.
	parsed, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return nil, "", wrap(KindInternal, err)
	}
	devices, err := r.cfg.Store.ListDevices(ctx, store.DeviceFilter{Environment: issuer.Environment, ProductLine: issuer.ProductLine, Serial: parsed.Subject.CommonName})
	if err != nil {
		return nil, "", wrap(KindUnavailable, err)
	}
	for _, d := range devices {
		h, err := r.history(ctx, d, at)
		if err != nil {
			return nil, "", err
		}
		if slices.ContainsFunc(h.Certificates, func(hc *HeldCertificate) bool { return hc.Certificate.Serial == s }) {
			return h, s, nil
		}
	}
	return nil, "", errorf(KindNotFound, "certificate %s (%s) belongs to no device of the %s/%s registry: only device certificates have a history",
		s, c.Subject, issuer.Environment, issuer.ProductLine)
}

// HistoryProofs returns the inclusion proof of each event of h, in its order, in the tree of the checkpoint
// given (signed; nil: the newest, made now if events were appended since the last), so that an inspector can
// check with 'keyward audit check-proof' (pkg/auditproof), holding only the log's key, that every line of the
// history is in the log the checkpoint commits to. Admins and auditors may ask for them.
func (r *RA) HistoryProofs(ctx context.Context, p Principal, h *History, checkpoint []byte) ([]*auditproof.InclusionProof, error) {
	if err := r.authorize(ctx, p, audit.ActionAuditProve, h.Device.Serial, "prove device histories", RoleAdmin, RoleAuditor); err != nil {
		return nil, err
	}
	if len(h.Events) == 0 {
		return []*auditproof.InclusionProof{}, nil
	}
	seqs := make([]int64, len(h.Events))
	for i, e := range h.Events {
		seqs[i] = e.Seq
	}
	return r.proveEvents(ctx, p, seqs, checkpoint)
}

// history reads d's events and replays them.
func (r *RA) history(ctx context.Context, d *store.Device, at *time.Time) (*History, error) {
	cas, err := r.deviceCAs(ctx, d.Environment, d.ProductLine)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	certs, err := r.deviceCertificates(ctx, d, cas)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	bySerial := make(map[string]*store.Certificate, len(certs))
	subjects := []string{d.Serial}
	for _, c := range certs {
		bySerial[c.Serial] = c
		subjects = append(subjects, c.Serial)
		if uri := DeviceKeyURI(c.SPKISHA256); !slices.Contains(subjects, uri) {
			subjects = append(subjects, uri)
		}
	}
	var events []*audit.Event
	for _, s := range subjects {
		err := r.cfg.Store.WalkAuditBySubject(ctx, s, func(e *audit.Event) error {
			// The same serial in another environment or product line is another device.
			if e.Subject == d.Serial && !sameDevice(e, d) {
				return nil
			}
			events = append(events, e)
			return nil
		})
		if err != nil {
			return nil, wrap(KindUnavailable, err)
		}
	}
	sort.Slice(events, func(i, j int) bool { return events[i].Seq < events[j].Seq })
	events = slices.CompactFunc(events, func(a, b *audit.Event) bool { return a.Seq == b.Seq })

	h := &History{Device: d, Events: events}
	rp := newReplay(d, bySerial)
	for _, e := range events {
		if at != nil && e.Time.After(*at) && h.At == nil {
			h.At = rp.snapshot(*at)
		}
		rp.apply(e)
	}
	if at != nil && h.At == nil {
		h.At = rp.snapshot(*at)
	}
	h.Certificates, h.Keys = rp.certs, rp.keys
	return h, nil
}

// sameDevice reports whether an event whose subject is a device serial is about d: events name the device's
// environment and product line in their details when they have them.
func sameDevice(e *audit.Event, d *store.Device) bool {
	env, product := e.Details["environment"], e.Details["product_line"]
	return (env == "" || env == d.Environment) && (product == "" || product == d.ProductLine)
}

// replay folds a device's events, in sequence order, into what it held.
type replay struct {
	device   *store.Device
	bySerial map[string]*store.Certificate
	certs    []*HeldCertificate
	keys     []*HeldKey
	state    string
	lastSeq  int64
}

func newReplay(d *store.Device, bySerial map[string]*store.Certificate) *replay {
	return &replay{device: d, bySerial: bySerial, state: "unknown"}
}

func (rp *replay) cert(serial string) *HeldCertificate {
	for _, c := range rp.certs {
		if c.Certificate.Serial == serial {
			return c
		}
	}
	return nil
}

func (rp *replay) key(spki []byte) *HeldKey {
	for _, k := range rp.keys {
		if string(k.SPKISHA256) == string(spki) {
			return k
		}
	}
	return nil
}

// issued records certificate serial issued to the device by e, superseding the one e names.
func (rp *replay) issued(e *audit.Event, serial string) {
	c, ok := rp.bySerial[serial]
	if !ok || rp.cert(serial) != nil {
		return
	}
	if rp.state == "unknown" {
		rp.state = store.DeviceActive
	}
	if old := rp.cert(e.Details["superseded"]); old != nil {
		rp.endCert(old, e, "superseded")
		if k := rp.key(old.Certificate.SPKISHA256); k != nil && string(k.SPKISHA256) != string(c.SPKISHA256) {
			by := "superseded"
			if e.Details["rekey"] == "true" {
				by = "rekeyed"
			}
			rp.endKey(k, e, by)
		}
	}
	rp.certs = append(rp.certs, &HeldCertificate{Certificate: c, IssuedSeq: e.Seq, IssuedAt: e.Time})
	if k := rp.key(c.SPKISHA256); k == nil {
		rp.keys = append(rp.keys, &HeldKey{URI: DeviceKeyURI(c.SPKISHA256), SPKISHA256: c.SPKISHA256, SinceSeq: e.Seq, Since: e.Time})
	} else if k.UntilSeq != 0 && k.EndedBy != "destroyed" {
		k.UntilSeq, k.Until, k.EndedBy = 0, nil, "" // a key certified again (a renewal that kept it after a gap)
	}
}

func (rp *replay) endCert(c *HeldCertificate, e *audit.Event, by string) {
	if c.EndedSeq == 0 {
		t := e.Time
		c.EndedSeq, c.EndedAt, c.EndedBy = e.Seq, &t, by
	}
}

func (rp *replay) endKey(k *HeldKey, e *audit.Event, by string) {
	if k.UntilSeq == 0 {
		t := e.Time
		k.UntilSeq, k.Until, k.EndedBy = e.Seq, &t, by
	}
}

// apply folds one event in; refusals change nothing.
func (rp *replay) apply(e *audit.Event) {
	rp.lastSeq = e.Seq
	if e.Outcome != audit.OutcomeSuccess {
		return
	}
	switch e.Action {
	case audit.ActionESTEnroll, audit.ActionESTReenroll:
		rp.issued(e, e.Details["serial"])
	case audit.ActionCertIssue:
		if rp.bySerial[e.Subject] != nil {
			rp.issued(e, e.Subject)
		} else {
			rp.issued(e, e.Details["serial"])
		}
	case audit.ActionDeviceRegister:
		rp.issued(e, e.Details["certificate"])
	case audit.ActionCertRevoke:
		if c := rp.cert(e.Subject); c != nil && c.RevokedSeq == 0 {
			t := e.Time
			c.RevokedSeq, c.RevokedAt, c.RevocationReason = e.Seq, &t, e.Details["reason"]
		}
	case audit.ActionCertUnhold:
		if c := rp.cert(e.Subject); c != nil {
			c.RevokedSeq, c.RevokedAt, c.RevocationReason = 0, nil, ""
		}
	case audit.ActionKeyDestroy:
		for _, k := range rp.keys {
			if k.URI == e.Subject {
				rp.endKey(k, e, "destroyed")
			}
		}
	case audit.ActionDevice + string(Suspend):
		rp.state = store.DeviceSuspended
	case audit.ActionDevice + string(Resume):
		rp.state = store.DeviceActive
	case audit.ActionDevice + string(Decommission):
		rp.state = store.DeviceDecommissioned
		for _, c := range rp.certs {
			rp.endCert(c, e, "decommissioned")
		}
		for _, k := range rp.keys {
			rp.endKey(k, e, "decommissioned")
		}
	}
}

// snapshot is what the replay so far says the device held at t (every event folded in is at or before t).
func (rp *replay) snapshot(t time.Time) *Snapshot {
	s := &Snapshot{At: t, AsOfSeq: rp.lastSeq, State: rp.state, Certificates: []CertificateAt{}, Keys: []KeyAt{}}
	for _, c := range rp.certs {
		held := c.EndedSeq == 0
		revoked := c.RevokedSeq != 0
		cert := c.Certificate
		s.Certificates = append(s.Certificates, CertificateAt{Serial: cert.Serial, Issuer: cert.IssuerID, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
			Held: held, Revoked: revoked, RevocationReason: c.RevocationReason,
			Valid: held && !revoked && !t.Before(cert.NotBefore) && t.Before(cert.NotAfter)})
	}
	for _, k := range rp.keys {
		s.Keys = append(s.Keys, KeyAt{URI: k.URI, SPKISHA256: k.SPKISHA256, Held: k.UntilSeq == 0})
	}
	return s
}
