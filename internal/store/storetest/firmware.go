package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// RunFirmware runs the conformance suite of store.FirmwareTx and store.FirmwareStore against a backend.
func RunFirmware(t *testing.T, open func(t *testing.T) Backend) {
	ctx := context.Background()
	s := open(t)
	t.Cleanup(func() { _ = s.Close() })
	now := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
	kid := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	fwtx := func(fn func(store.FirmwareTx) error) error {
		return s.Tx(ctx, func(tx store.Tx) error { return fn(tx) })
	}

	// Trust versions.
	root := &store.FirmwareRoot{Environment: "dev", Version: 1, KeyURI: "soft:r1", CertDER: []byte{1, 2}, PQKeyURI: "soft:p1", PQPublic: []byte{3}, CreatedAt: now}
	fwMust(t, fwtx(func(tx store.FirmwareTx) error { return tx.InsertFirmwareRoot(ctx, root) }))
	if err := fwtx(func(tx store.FirmwareTx) error { return tx.InsertFirmwareRoot(ctx, root) }); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate trust version: %v, want ErrExists", err)
	}
	v2 := *root
	v2.Version, v2.Revoked, v2.Update = 2, [][]byte{kid(9), kid(8)}, []byte{0xd8, 0x62}
	fwMust(t, fwtx(func(tx store.FirmwareTx) error { return tx.InsertFirmwareRoot(ctx, &v2) }))
	fwMust(t, fwtx(func(tx store.FirmwareTx) error {
		got, err := tx.LatestFirmwareRoot(ctx, "dev")
		if err != nil {
			return err
		}
		if got.Version != 2 || len(got.Revoked) != 2 || !bytes.Equal(got.Revoked[1], kid(8)) || !got.CreatedAt.Equal(now) || !bytes.Equal(got.Update, v2.Update) {
			t.Errorf("latest root = %+v", got)
		}
		if _, err := tx.LatestFirmwareRoot(ctx, "staging"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("latest root of staging: %v, want ErrNotFound", err)
		}
		return nil
	}))
	roots, err := s.FirmwareRoots(ctx, "dev")
	if err != nil || len(roots) != 2 || roots[0].Version != 1 || roots[0].Update != nil || roots[0].Revoked != nil {
		t.Fatalf("FirmwareRoots = %+v, %v", roots, err)
	}

	// Signing keys.
	k1 := &store.FirmwareSigningKey{KID: kid(1), Environment: "dev", Algorithm: "ecdsa-p256", KeyURI: "soft:k1", Cert: []byte{4}, RootVersion: 1, Status: store.FirmwareKeyActive, CreatedAt: now}
	fwMust(t, fwtx(func(tx store.FirmwareTx) error { return tx.InsertFirmwareSigningKey(ctx, k1) }))
	if err := fwtx(func(tx store.FirmwareTx) error { return tx.InsertFirmwareSigningKey(ctx, k1) }); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate signing key: %v, want ErrExists", err)
	}
	fwMust(t, fwtx(func(tx store.FirmwareTx) error {
		return tx.SetFirmwareSigningKeyStatus(ctx, kid(1), store.FirmwareKeyRevoked, now.Add(time.Hour))
	}))
	if err := fwtx(func(tx store.FirmwareTx) error {
		return tx.SetFirmwareSigningKeyStatus(ctx, kid(7), store.FirmwareKeyRetired, now)
	}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("status of unknown key: %v, want ErrNotFound", err)
	}
	keys, err := s.FirmwareSigningKeys(ctx, "dev")
	if err != nil || len(keys) != 1 || keys[0].Status != store.FirmwareKeyRevoked || keys[0].RevokedAt == nil || !keys[0].RevokedAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("FirmwareSigningKeys = %+v, %v", keys, err)
	}
	if all, err := s.FirmwareSigningKeys(ctx, ""); err != nil || len(all) != 1 {
		t.Fatalf("FirmwareSigningKeys(all) = %d, %v", len(all), err)
	}

	// Releases, sequences and approvals.
	rel := &store.FirmwareRelease{ID: "r1", Environment: "dev", ProductLine: "demo-implant", Version: "1.0.0", ImageSHA256: kid(5), ImageSize: 1 << 20,
		NotBefore: now, NotAfter: now.Add(time.Hour), Threshold: 2, Hybrid: true, Status: store.FirmwareDraft, CreatedBy: "cli:alice", CreatedAt: now}
	fwMust(t, fwtx(func(tx store.FirmwareTx) error {
		seq, err := tx.NextFirmwareSequence(ctx, "dev", "demo-implant")
		if err != nil {
			return err
		}
		if seq != 1 {
			t.Errorf("first sequence = %d, want 1", seq)
		}
		rel.Sequence = seq
		return tx.InsertFirmwareRelease(ctx, rel)
	}))
	dupVersion := *rel
	dupVersion.ID, dupVersion.Sequence = "r2", 2
	if err := fwtx(func(tx store.FirmwareTx) error { return tx.InsertFirmwareRelease(ctx, &dupVersion) }); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second release with version 1.0.0: %v, want ErrExists", err)
	}
	dupSeq := *rel
	dupSeq.ID, dupSeq.Version = "r3", "1.0.1"
	if err := fwtx(func(tx store.FirmwareTx) error { return tx.InsertFirmwareRelease(ctx, &dupSeq) }); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second release with sequence 1: %v, want ErrExists", err)
	}
	fwMust(t, fwtx(func(tx store.FirmwareTx) error {
		seq, err := tx.NextFirmwareSequence(ctx, "dev", "demo-implant")
		if seq != 2 {
			t.Errorf("next sequence = %d, want 2", seq)
		}
		return err
	}))
	approve := func(signer string) error {
		return fwtx(func(tx store.FirmwareTx) error {
			return tx.InsertFirmwareApproval(ctx, &store.FirmwareApproval{ReleaseID: "r1", Signer: signer, ApprovedAt: now})
		})
	}
	fwMust(t, approve("signer-a"))
	if err := approve("signer-a"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second approval by signer-a: %v, want ErrExists", err)
	}
	if err := fwtx(func(tx store.FirmwareTx) error {
		return tx.InsertFirmwareApproval(ctx, &store.FirmwareApproval{ReleaseID: "nope", Signer: "signer-a", ApprovedAt: now})
	}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("approval of unknown release: %v, want ErrNotFound", err)
	}
	fwMust(t, approve("signer-b"))
	as, err := s.FirmwareApprovals(ctx, "r1")
	if err != nil || len(as) != 2 || as[0].Signer != "signer-a" || !as[0].ApprovedAt.Equal(now) {
		t.Fatalf("FirmwareApprovals = %+v, %v", as, err)
	}

	// A change and its audit event commit together, or not at all.
	boom := errors.New("boom")
	err = s.Tx(ctx, func(tx store.Tx) error {
		r, err := tx.GetFirmwareRelease(ctx, "r1")
		if err != nil {
			return err
		}
		signed := now.Add(time.Minute)
		r.Status, r.Manifest, r.SignerKID, r.SignedAt = store.FirmwareSigned, []byte{0xd2}, kid(1), &signed
		if err := tx.UpdateFirmwareRelease(ctx, r); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: "t", Action: "firmware.sign", Subject: "r1", Outcome: audit.OutcomeSuccess}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx = %v", err)
	}
	got, err := s.GetFirmwareRelease(ctx, "r1")
	if err != nil || got.Status != store.FirmwareDraft || got.Manifest != nil || got.SignedAt != nil {
		t.Fatalf("after rollback release = %+v, %v", got, err)
	}
	fwMust(t, s.Tx(ctx, func(tx store.Tx) error {
		r, err := tx.GetFirmwareRelease(ctx, "r1")
		if err != nil {
			return err
		}
		signed := now.Add(time.Minute)
		r.Status, r.Manifest, r.SignerKID, r.SignedAt = store.FirmwareSigned, []byte{0xd2}, kid(1), &signed
		return tx.UpdateFirmwareRelease(ctx, r)
	}))
	got, err = s.GetFirmwareRelease(ctx, "r1")
	if err != nil || got.Status != store.FirmwareSigned || !bytes.Equal(got.Manifest, []byte{0xd2}) || !got.SignedAt.Equal(now.Add(time.Minute)) ||
		!got.Hybrid || got.Threshold != 2 || !got.NotAfter.Equal(now.Add(time.Hour)) || got.ImageSize != 1<<20 {
		t.Fatalf("signed release = %+v, %v", got, err)
	}
	if _, err := s.GetFirmwareRelease(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown release: %v, want ErrNotFound", err)
	}
	list, err := s.ListFirmwareReleases(ctx, "dev", "")
	if err != nil || len(list) != 1 || list[0].ID != "r1" {
		t.Fatalf("ListFirmwareReleases = %+v, %v", list, err)
	}
	if list, _ := s.ListFirmwareReleases(ctx, "dev", "other"); len(list) != 0 {
		t.Fatalf("ListFirmwareReleases(other product) = %d releases", len(list))
	}
	if n, err := store.VerifyAudit(ctx, s); err != nil || n != 0 {
		t.Fatalf("audit after rolled-back event: %d events, %v", n, err)
	}
}

func fwMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
