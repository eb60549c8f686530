package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// RunEnrollment runs the enrollment conformance suite (stations, devices, certificate status, expiry) on a
// backend whose Store implements store.EnrollmentStore and whose transactions implement store.EnrollmentTx.
// open must return a new, empty, migrated store for each call.
func RunEnrollment(t *testing.T, open func(t *testing.T) Backend) {
	runCases(t, open, []testCase{
		{"Station", testStation},
		{"StationQuotaConcurrent", testStationQuotaConcurrent},
		{"Device", testDevice},
		{"CertificateStatus", testCertificateStatus},
		{"ExpiringCertificates", testExpiringCertificates},
		{"IssuanceFacts", testIssuanceFacts},
	})
}

func enrollmentStore(t *testing.T, b Backend) store.EnrollmentStore {
	t.Helper()
	es := b
	return es
}

func etx(t *testing.T, s store.Store, fn func(store.EnrollmentTx) error) error {
	return s.Tx(context.Background(), func(tx store.Tx) error {
		e := tx
		return fn(e)
	})
}

func newStation(t testing.TB, id string, quota int64) *store.Station {
	now := us(time.Now())
	return &store.Station{ID: id, Environment: "dev", Site: "site-a", ProductLines: []string{"demo-implant", "demo-pump"},
		CertSerial: NewSerial(t), SPKISHA256: randBytes(t, 32), Quota: quota, ValidFrom: now.Add(-time.Hour),
		ValidUntil: now.Add(time.Hour), State: store.StationActive, CreatedAt: now, StateChanged: now}
}

func testStation(t *testing.T, b Backend) {
	ctx := context.Background()
	es := enrollmentStore(t, b)
	st := newStation(t, "site-a-01", 10)
	if err := etx(t, b, func(e store.EnrollmentTx) error { return e.InsertStation(ctx, st) }); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "duplicate station", etx(t, b, func(e store.EnrollmentTx) error { return e.InsertStation(ctx, st) }), store.ErrExists)
	got, err := es.GetStation(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "station", got, st)
	_, err = es.GetStation(ctx, "nope")
	wantErr(t, "unknown station", err, store.ErrNotFound)

	later := us(time.Now().Add(time.Minute))
	if err := etx(t, b, func(e store.EnrollmentTx) error {
		s, err := e.LockStation(ctx, st.ID)
		if err != nil {
			return err
		}
		s.Used, s.State, s.StateChanged = 3, store.StationSuspended, later
		return e.UpdateStation(ctx, s)
	}); err != nil {
		t.Fatal(err)
	}
	got, _ = es.GetStation(ctx, st.ID)
	if got.Used != 3 || got.State != store.StationSuspended || !got.StateChanged.Equal(later) {
		t.Fatalf("after update: used %d state %s changed %s", got.Used, got.State, got.StateChanged)
	}
	wantErr(t, "lock unknown", etx(t, b, func(e store.EnrollmentTx) error { _, err := e.LockStation(ctx, "nope"); return err }), store.ErrNotFound)
	wantErr(t, "update unknown", etx(t, b, func(e store.EnrollmentTx) error { return e.UpdateStation(ctx, newStation(t, "nope", 0)) }), store.ErrNotFound)

	st2 := newStation(t, "site-a-00", 0)
	if err := etx(t, b, func(e store.EnrollmentTx) error { return e.InsertStation(ctx, st2) }); err != nil {
		t.Fatal(err)
	}
	list, err := es.ListStations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "site-a-00" || list[1].ID != "site-a-01" {
		t.Fatalf("ListStations: %d stations, want site-a-00, site-a-01 in order", len(list))
	}
}

// testStationQuotaConcurrent proves that lock, check and increment inside one transaction never lets more
// enrollments through than the quota, whatever the concurrency.
func testStationQuotaConcurrent(t *testing.T, b Backend) {
	ctx := context.Background()
	es := enrollmentStore(t, b)
	const quota, workers, tries = 7, 8, 4
	st := newStation(t, "quota-st", quota)
	if err := etx(t, b, func(e store.EnrollmentTx) error { return e.InsertStation(ctx, st) }); err != nil {
		t.Fatal(err)
	}
	errExhausted := errors.New("quota exhausted")
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted int
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < tries; i++ {
				err := etx(t, b, func(e store.EnrollmentTx) error {
					s, err := e.LockStation(ctx, st.ID)
					if err != nil {
						return err
					}
					if s.Used >= s.Quota {
						return errExhausted
					}
					s.Used++
					return e.UpdateStation(ctx, s)
				})
				if err != nil && !errors.Is(err, errExhausted) {
					t.Error(err)
				}
				if err == nil {
					mu.Lock()
					granted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if granted != quota {
		t.Fatalf("%d enrollments granted, want exactly the quota %d", granted, quota)
	}
	got, err := es.GetStation(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Used != quota {
		t.Fatalf("used %d after %d concurrent attempts, want exactly the quota %d", got.Used, workers*tries, quota)
	}
}

func newDevice(t testing.TB, serial string) *store.Device {
	now := us(time.Now())
	return &store.Device{Environment: "dev", ProductLine: "demo-implant", Serial: serial, State: store.DeviceActive,
		StationID: "site-a-01", Site: "site-a", EnrolledAt: now, CertSerial: NewSerial(t), SPKISHA256: randBytes(t, 32), UpdatedAt: now}
}

func testDevice(t *testing.T, b Backend) {
	ctx := context.Background()
	es := enrollmentStore(t, b)
	d := newDevice(t, "DEMO-00000001")
	if err := etx(t, b, func(e store.EnrollmentTx) error { return e.PutDevice(ctx, d) }); err != nil {
		t.Fatal(err)
	}
	got, err := es.GetDevice(ctx, "dev", "demo-implant", d.Serial)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "device", got, d)
	// The same serial in another product line is another device.
	other := newDevice(t, d.Serial)
	other.ProductLine = "demo-pump"
	if err := etx(t, b, func(e store.EnrollmentTx) error { return e.PutDevice(ctx, other) }); err != nil {
		t.Fatal(err)
	}
	// Replace: the registry keeps one row per serial.
	upd := *d
	upd.CertSerial, upd.ForceRenew, upd.ReprovisionAllowed, upd.State = NewSerial(t), true, true, store.DeviceSuspended
	upd.UpdatedAt = us(time.Now().Add(time.Minute))
	if err := etx(t, b, func(e store.EnrollmentTx) error {
		cur, err := e.LockDevice(ctx, "dev", "demo-implant", d.Serial)
		if err != nil {
			return err
		}
		if cur.CertSerial != d.CertSerial {
			return fmt.Errorf("LockDevice read cert %s, want %s", cur.CertSerial, d.CertSerial)
		}
		return e.PutDevice(ctx, &upd)
	}); err != nil {
		t.Fatal(err)
	}
	got, _ = es.GetDevice(ctx, "dev", "demo-implant", d.Serial)
	mustEqual(t, "replaced device", got, &upd)
	_, err = es.GetDevice(ctx, "dev", "demo-implant", "DEMO-99999999")
	wantErr(t, "unknown device", err, store.ErrNotFound)
	wantErr(t, "lock unknown device", etx(t, b, func(e store.EnrollmentTx) error {
		_, err := e.LockDevice(ctx, "dev", "demo-implant", "DEMO-99999999")
		return err
	}), store.ErrNotFound)

	all, err := es.ListDevices(ctx, store.DeviceFilter{Serial: d.Serial})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ProductLine != "demo-implant" || all[1].ProductLine != "demo-pump" {
		t.Fatalf("ListDevices by serial: %d devices, want 2 ordered by product line", len(all))
	}
	susp, _ := es.ListDevices(ctx, store.DeviceFilter{State: store.DeviceSuspended})
	if len(susp) != 1 || susp[0].ProductLine != "demo-implant" {
		t.Fatalf("ListDevices suspended: %d devices, want 1", len(susp))
	}
	lim, _ := es.ListDevices(ctx, store.DeviceFilter{Limit: 1})
	if len(lim) != 1 {
		t.Fatalf("ListDevices limit 1: %d devices", len(lim))
	}
	// By site, whatever provisioned the device (a station, or a factory batch recorded as "batch:<id>").
	batchDev := newDevice(t, "DEMO-77777777")
	batchDev.Site, batchDev.StationID = "site-b", "batch:0123"
	if err := etx(t, b, func(e store.EnrollmentTx) error { return e.PutDevice(ctx, batchDev) }); err != nil {
		t.Fatal(err)
	}
	bySite, err := es.ListDevices(ctx, store.DeviceFilter{Site: "site-b"})
	if err != nil || len(bySite) != 1 || bySite[0].Serial != batchDev.Serial {
		t.Fatalf("ListDevices site-b: %+v, %v", bySite, err)
	}
	if siteA, _ := es.ListDevices(ctx, store.DeviceFilter{Site: "site-a"}); len(siteA) != len(all) {
		t.Fatalf("ListDevices site-a: %d devices, want %d", len(siteA), len(all))
	}

	// One device per hardware serial and product line; the column survives a re-put of the same device.
	batchDev.HardwareSerial = "HW-0001"
	if err := etx(t, b, func(e store.EnrollmentTx) error { return e.PutDevice(ctx, batchDev) }); err != nil {
		t.Fatal(err)
	}
	twin := newDevice(t, "DEMO-77777778")
	twin.HardwareSerial = "HW-0001"
	if err := etx(t, b, func(e store.EnrollmentTx) error { return e.PutDevice(ctx, twin) }); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second device on hardware HW-0001: %v, want ErrExists", err)
	}
	twin.ProductLine = "demo-pump"
	if err := etx(t, b, func(e store.EnrollmentTx) error { return e.PutDevice(ctx, twin) }); err != nil {
		t.Fatalf("the same hardware serial in another product line: %v", err)
	}
	hw, err := es.ListDevices(ctx, store.DeviceFilter{ProductLine: "demo-implant", HardwareSerial: "HW-0001"})
	if err != nil || len(hw) != 1 || hw[0].Serial != batchDev.Serial || hw[0].HardwareSerial != "HW-0001" {
		t.Fatalf("ListDevices by hardware serial: %+v, %v", hw, err)
	}
	gotDev, err := es.GetDevice(ctx, "dev", "demo-implant", batchDev.Serial)
	if err != nil || gotDev.HardwareSerial != "HW-0001" {
		t.Fatalf("GetDevice: %+v, %v", gotDev, err)
	}
}

func testCertificateStatus(t *testing.T, b Backend) {
	ctx := context.Background()
	withCAs(t, b, "dev/demo-implant")
	c := newCert(t, "dev/demo-implant", "CN=DEMO-00000001", randBytes(t, 32))
	tx(t, b, func(tx store.Tx) error { return tx.InsertCertificate(ctx, c) })
	if err := etx(t, b, func(e store.EnrollmentTx) error {
		return e.SetCertificateStatus(ctx, c.Serial, store.CertStatusValid, store.CertStatusSuperseded)
	}); err != nil {
		t.Fatal(err)
	}
	got, err := b.GetCertificate(ctx, c.Serial)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "status", got.Status, store.CertStatusSuperseded)
	wantErr(t, "from a status it is not in", etx(t, b, func(e store.EnrollmentTx) error {
		return e.SetCertificateStatus(ctx, c.Serial, store.CertStatusValid, store.CertStatusSuperseded)
	}), store.ErrNotFound)
	wantErr(t, "unknown serial", etx(t, b, func(e store.EnrollmentTx) error {
		return e.SetCertificateStatus(ctx, "abc", store.CertStatusValid, store.CertStatusSuperseded)
	}), store.ErrNotFound)
	// A rolled-back status change leaves the certificate as it was, audit event and all.
	boom := errors.New("boom")
	err = b.Tx(ctx, func(tx store.Tx) error {
		if err := tx.SetCertificateStatus(ctx, c.Serial, store.CertStatusSuperseded, store.CertStatusValid); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: time.Now(), Actor: "t", Action: "x", Subject: c.Serial, Outcome: audit.OutcomeSuccess}); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "rolled back", err, boom)
	got, _ = b.GetCertificate(ctx, c.Serial)
	mustEqual(t, "status after rollback", got.Status, store.CertStatusSuperseded)
	if n := len(auditEvents(t, b, 0)); n != 0 {
		t.Fatalf("%d audit events after rollback, want 0", n)
	}
}

func testExpiringCertificates(t *testing.T, b Backend) {
	ctx := context.Background()
	es := enrollmentStore(t, b)
	withCAs(t, b, "dev/demo-implant")
	now := us(time.Now())
	var serials []string
	for i, d := range []time.Duration{72 * time.Hour, 24 * time.Hour, 48 * time.Hour, 400 * 24 * time.Hour} {
		c := newCert(t, "dev/demo-implant", fmt.Sprintf("CN=DEMO-%08d", i), randBytes(t, 32))
		c.NotAfter = now.Add(d)
		tx(t, b, func(tx store.Tx) error { return tx.InsertCertificate(ctx, c) })
		serials = append(serials, c.Serial)
	}
	// The 48h one is superseded: it is no longer what must renew.
	if err := etx(t, b, func(e store.EnrollmentTx) error {
		return e.SetCertificateStatus(ctx, serials[2], store.CertStatusValid, store.CertStatusSuperseded)
	}); err != nil {
		t.Fatal(err)
	}
	got, err := es.ExpiringCertificates(ctx, now.Add(90*24*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Serial != serials[1] || got[1].Serial != serials[0] {
		t.Fatalf("ExpiringCertificates(90d): %d certificates, want the 24h then the 72h one", len(got))
	}
	got, _ = es.ExpiringCertificates(ctx, now.Add(90*24*time.Hour), 1)
	if len(got) != 1 || got[0].Serial != serials[1] {
		t.Fatalf("ExpiringCertificates limit 1: %d certificates", len(got))
	}

	// CountExpiring: valid ones of the profile in (after, before]; the bounds are exclusive, then inclusive.
	other := newCert(t, "dev/demo-implant", "CN=gw", randBytes(t, 32))
	other.Profile, other.NotAfter = "gateway-identity", now.Add(24*time.Hour)
	tx(t, b, func(tx store.Tx) error { return tx.InsertCertificate(ctx, other) })
	for _, tc := range []struct {
		profile       string
		after, before time.Duration
		want          int64
	}{
		{"implant-identity", 0, 90 * 24 * time.Hour, 2},         // 24h and 72h; 48h is superseded, 400d is later
		{"implant-identity", 0, 500 * 24 * time.Hour, 3},        // and the 400d one
		{"implant-identity", 24 * time.Hour, 72 * time.Hour, 1}, // (24h, 72h]: only 72h
		{"implant-identity", 0, time.Hour, 0},
		{"gateway-identity", 0, 90 * 24 * time.Hour, 1},
		{"no-such-profile", 0, 90 * 24 * time.Hour, 0},
	} {
		n, err := es.CountExpiring(ctx, tc.profile, now.Add(tc.after), now.Add(tc.before))
		if err != nil || n != tc.want {
			t.Errorf("CountExpiring(%s, %s, %s) = %d, %v; want %d", tc.profile, tc.after, tc.before, n, err, tc.want)
		}
	}
}

// testIssuanceFacts: one read returns the certificates of a key and the registry's device, or no device.
func testIssuanceFacts(t *testing.T, b Backend) {
	ctx := context.Background()
	withCAs(t, b, "dev/demo-implant")
	spki := randBytes(t, 32)
	c := newCert(t, "dev/demo-implant", "CN=DEMO-00000007", spki)
	d := newDevice(t, "DEMO-00000007")
	d.State = store.DeviceDecommissioned
	tx(t, b, func(tx store.Tx) error {
		if err := tx.InsertCertificate(ctx, c); err != nil {
			return err
		}
		return tx.PutDevice(ctx, d)
	})
	certs, dev, err := b.IssuanceFacts(ctx, spki, "dev", "demo-implant", "DEMO-00000007")
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 1 || certs[0].Serial != c.Serial || dev == nil || dev.State != store.DeviceDecommissioned {
		t.Fatalf("IssuanceFacts: %d certificates, device %+v; want the one certificate and the decommissioned device", len(certs), dev)
	}
	certs, dev, err = b.IssuanceFacts(ctx, randBytes(t, 32), "dev", "demo-implant", "DEMO-00000008")
	if err != nil || len(certs) != 0 || dev != nil {
		t.Fatalf("IssuanceFacts of an unknown key and serial: %v %v %v", certs, dev, err)
	}
}
