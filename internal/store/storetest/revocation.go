package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// RunRevocation runs the conformance suite of store.RevocationStore and store.RevocationTx. open must return a
// new, empty, migrated store for each call, as for Run.
func RunRevocation(t *testing.T, open func(t *testing.T) Backend) {
	runCases(t, open, []testCase{
		{"RevokeAndTwice", testRevokeTwice},
		{"HoldUnholdChanges", testHoldUnhold},
		{"RevokeRollsBack", testRevokeRollback},
		{"CRLNumbersAndStorage", testCRLStorage},
		{"CRLChunks", testCRLChunks},
		{"WalkRevokedRanges", testWalkRevokedRanges},
		{"WalkCertStatusPages", testWalkCertStatus},
		{"SignersAndFilters", testSignersFilters},
		{"PublisherLock", testPublisherLock},
	})
}

func rtx(t *testing.T, s store.Store, fn func(store.Tx, store.RevocationTx) error) error {
	t.Helper()
	return s.Tx(context.Background(), func(tx store.Tx) error {
		r := tx
		return fn(tx, r)
	})
}

func insertCerts(t *testing.T, s store.Store, issuer string, n int) []*store.Certificate {
	t.Helper()
	var out []*store.Certificate
	tx(t, s, func(tx store.Tx) error {
		for i := 0; i < n; i++ {
			c := newCert(t, issuer, fmt.Sprintf("CN=DEMO-%08d", i), nil)
			if err := tx.InsertCertificate(context.Background(), c); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	return out
}

func testRevokeTwice(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/a")
	certs := insertCerts(t, s, "dev/a", 2)
	at := us(t0.Add(time.Hour))
	inv := us(t0.Add(30 * time.Minute))

	err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		_, err := r.Revoke(ctx, &store.Revocation{Serial: "abcdef", Reason: store.ReasonKeyCompromise, RevokedAt: at})
		return err
	})
	wantErr(t, "revoke unknown serial", err, store.ErrNotFound)

	var e *store.RevocationEntry
	if err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		var err error
		e, err = r.Revoke(ctx, &store.Revocation{Serial: certs[0].Serial, Reason: store.ReasonKeyCompromise, RevokedAt: at, InvalidityDate: &inv})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "entry", *e, store.RevocationEntry{Serial: certs[0].Serial, IssuerID: "dev/a", Status: store.CertStatusRevoked,
		Reason: store.ReasonKeyCompromise, RevokedAt: &at, InvalidityDate: &inv, NotAfter: certs[0].NotAfter, Seq: 1})
	got, err := s.GetCertificate(ctx, certs[0].Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.CertStatusRevoked || got.RevocationReason != store.ReasonKeyCompromise || got.RevokedAt == nil || !got.RevokedAt.Equal(at) {
		t.Fatalf("certificate after revoke: %+v", got)
	}
	// Twice: refused, and nothing changes.
	err = rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		_, err := r.Revoke(ctx, &store.Revocation{Serial: certs[0].Serial, Reason: store.ReasonSuperseded, RevokedAt: at.Add(time.Hour)})
		return err
	})
	wantErr(t, "revoke twice", err, store.ErrAlreadyRevoked)
	got, _ = s.GetCertificate(ctx, certs[0].Serial)
	if got.RevocationReason != store.ReasonKeyCompromise || !got.RevokedAt.Equal(at) {
		t.Fatalf("second revoke changed the certificate: %+v", got)
	}
	// Unhold of a certificate that is not on hold.
	err = rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		_, err := r.Unhold(ctx, certs[0].Serial, at)
		return err
	})
	wantErr(t, "unhold a keyCompromise revocation", err, store.ErrNotOnHold)
	err = rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		_, err := r.Unhold(ctx, certs[1].Serial, at)
		return err
	})
	wantErr(t, "unhold a valid certificate", err, store.ErrNotOnHold)
}

func testHoldUnhold(t *testing.T, s Backend) {
	ctx := context.Background()
	rs := s
	withCAs(t, s, "dev/a", "dev/b")
	a := insertCerts(t, s, "dev/a", 3)
	b := insertCerts(t, s, "dev/b", 1)
	at := us(t0.Add(time.Hour))
	revoke := func(serial string, reason int) error {
		return rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
			_, err := r.Revoke(ctx, &store.Revocation{Serial: serial, Reason: reason, RevokedAt: at})
			return err
		})
	}
	for _, c := range []struct {
		serial string
		reason int
	}{{a[0].Serial, store.ReasonCertificateHold}, {a[1].Serial, store.ReasonCertificateHold}, {b[0].Serial, store.ReasonSuperseded}} {
		if err := revoke(c.serial, c.reason); err != nil {
			t.Fatal(err)
		}
	}
	// Hold on hold: refused. Hold to keyCompromise: allowed (RFC 5280 5.3.1).
	wantErr(t, "hold twice", revoke(a[0].Serial, store.ReasonCertificateHold), store.ErrAlreadyRevoked)
	if err := revoke(a[1].Serial, store.ReasonKeyCompromise); err != nil {
		t.Fatalf("hold to keyCompromise: %v", err)
	}
	if err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		_, err := r.Unhold(ctx, a[0].Serial, at)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	head, err := rs.RevocationHead(ctx)
	if err != nil || head != 5 {
		t.Fatalf("head %d, %v; want 5 (the refused hold rolled its sequence number back)", head, err)
	}
	var changes []string
	if err := rs.WalkRevocationChanges(ctx, "dev/a", 0, func(e *store.RevocationEntry) error {
		changes = append(changes, fmt.Sprintf("%s %s %d", e.Serial, e.Status, e.Reason))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Seq order: a[1] changed at seq 4 (keyCompromise), a[0] at 5 (unhold).
	mustEqual(t, "changes of dev/a", changes, []string{
		a[1].Serial + " revoked 1", a[0].Serial + " valid 0",
	})
	changes = nil
	if err := rs.WalkRevocationChanges(ctx, "dev/a", 4, func(e *store.RevocationEntry) error {
		changes = append(changes, e.Serial)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "changes after 4", changes, []string{a[0].Serial})
	var revoked []string
	if err := rs.WalkRevoked(ctx, store.RevokedQuery{IssuerID: "dev/a", NotAfterFrom: t0}, func(e *store.RevocationEntry) error {
		revoked = append(revoked, e.Serial)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "revoked of dev/a", revoked, []string{a[1].Serial})
	revoked = nil
	if err := rs.WalkRevoked(ctx, store.RevokedQuery{IssuerID: "dev/a", NotAfterFrom: t0.AddDate(11, 0, 0)}, func(e *store.RevocationEntry) error {
		revoked = append(revoked, e.Serial)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 0 {
		t.Fatalf("expired certificates walked: %v", revoked)
	}
}

func testRevokeRollback(t *testing.T, s Backend) {
	ctx := context.Background()
	rs := s
	withCAs(t, s, "dev/a")
	c := insertCerts(t, s, "dev/a", 1)[0]
	boom := errors.New("boom")
	err := rtx(t, s, func(tx store.Tx, r store.RevocationTx) error {
		if _, err := r.Revoke(ctx, &store.Revocation{Serial: c.Serial, Reason: store.ReasonKeyCompromise, RevokedAt: t0}); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: t0, Actor: "t", Action: "cert.revoke", Subject: c.Serial, Outcome: audit.OutcomeSuccess}); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "rolled back revoke", err, boom)
	got, _ := s.GetCertificate(ctx, c.Serial)
	if got.Status != store.CertStatusValid || got.RevokedAt != nil {
		t.Fatalf("rolled-back revocation persisted: %+v", got)
	}
	if head, _ := rs.RevocationHead(ctx); head != 0 {
		t.Fatalf("head %d after rollback", head)
	}
	if evs := auditEvents(t, s, 0); len(evs) != 0 {
		t.Fatalf("audit event of a rolled-back revocation persisted: %+v", evs)
	}
}

func testCRLStorage(t *testing.T, s Backend) {
	ctx := context.Background()
	rs := s
	withCAs(t, s, "dev/a", "dev/b")
	if _, err := rs.LatestCRL(ctx, "dev/a", false); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("latest CRL of a fresh store: %v", err)
	}
	for i := 1; i <= 5; i++ {
		err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
			n, err := r.NextCRLNumber(ctx, "dev/a")
			if err != nil {
				return err
			}
			if n != int64(i) {
				t.Fatalf("CRL number %d, want %d", n, i)
			}
			c := &store.PublishedCRL{IssuerID: "dev/a", Number: n, ThisUpdate: us(t0), NextUpdate: us(t0.Add(time.Hour)), MaxSeq: n * 10,
				Entries: i, DER: []byte{0x30, byte(i)}, CreatedAt: us(t0)}
			if err := r.InsertCRL(ctx, c); err != nil {
				return err
			}
			d := *c
			d.Delta, d.BaseNumber = true, n
			return r.InsertCRL(ctx, &d)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		n, err := r.NextCRLNumber(ctx, "dev/b")
		if n != 1 {
			t.Errorf("first CRL number of dev/b: %d", n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	full, err := rs.LatestCRL(ctx, "dev/a", false)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "latest full", *full, store.PublishedCRL{IssuerID: "dev/a", Number: 5, ThisUpdate: us(t0), NextUpdate: us(t0.Add(time.Hour)),
		MaxSeq: 50, Entries: 5, Size: 2, DER: []byte{0x30, 5}, CreatedAt: us(t0)})
	delta, err := rs.LatestCRL(ctx, "dev/a", true)
	if err != nil || !delta.Delta || delta.BaseNumber != 5 {
		t.Fatalf("latest delta %+v, %v", delta, err)
	}
	err = rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		return r.InsertCRL(ctx, &store.PublishedCRL{IssuerID: "dev/a", Number: 5, ThisUpdate: t0, NextUpdate: t0, DER: []byte{1}, CreatedAt: t0})
	})
	wantErr(t, "duplicate CRL number", err, store.ErrExists)
}

// testCRLChunks stores CRLs larger than store.CRLChunkSize in chunks: written before the CRL, checked by
// InsertCRL, read back one at a time, and pruned with their CRL; orphans of a failed publication go with the
// next prune, and chunks being written for a CRL not yet stored stay.
func testCRLChunks(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/a")
	const size = 2*store.CRLChunkSize + 1234
	body := func(number int64) []byte {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(int64(i)*7 + number)
		}
		return b
	}
	insertChunks := func(number int64, der []byte, skip int) {
		t.Helper()
		for seq := 0; seq < store.CRLChunks(int64(len(der))); seq++ {
			if seq == skip {
				continue
			}
			chunk := der[seq*store.CRLChunkSize : min(len(der), (seq+1)*store.CRLChunkSize)]
			if err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
				return r.InsertCRLChunk(ctx, "dev/a", false, number, seq, chunk)
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	row := func(number int64) *store.PublishedCRL {
		return &store.PublishedCRL{IssuerID: "dev/a", Number: number, ThisUpdate: us(t0), NextUpdate: us(t0.Add(time.Hour)), Entries: 7, Size: size, CreatedAt: us(t0)}
	}
	insertCRL := func(c *store.PublishedCRL) error {
		return rtx(t, s, func(_ store.Tx, r store.RevocationTx) error { return r.InsertCRL(ctx, c) })
	}
	readAll := func(number int64) []byte {
		t.Helper()
		var out []byte
		for seq := 0; seq < store.CRLChunks(size); seq++ {
			chunk, err := s.ReadCRLChunk(ctx, "dev/a", false, number, seq)
			if err != nil {
				t.Fatalf("chunk %d of CRL %d: %v", seq, number, err)
			}
			out = append(out, chunk...)
		}
		return out
	}
	// A chunk missing, or a CRL stored whole with its size wrong: refused.
	insertChunks(1, body(1), 1)
	if err := insertCRL(row(1)); err == nil {
		t.Fatal("stored a CRL with a chunk missing")
	}
	if err := insertCRL(&store.PublishedCRL{IssuerID: "dev/a", Number: 9, ThisUpdate: t0, NextUpdate: t0, Size: 3, DER: []byte{1, 2}, CreatedAt: t0}); err == nil {
		t.Fatal("stored a CRL whose DER is shorter than its size")
	}
	err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		return r.InsertCRLChunk(ctx, "dev/a", false, 1, 0, []byte{1})
	})
	wantErr(t, "duplicate chunk", err, store.ErrExists)
	// Numbers 2..6 stored whole-chunked; 1 never completes (a failed publication).
	for n := int64(2); n <= 6; n++ {
		insertChunks(n, body(n), -1)
		if err := insertCRL(row(n)); err != nil {
			t.Fatalf("CRL %d: %v", n, err)
		}
	}
	latest, err := s.LatestCRL(ctx, "dev/a", false)
	if err != nil || latest.Number != 6 || latest.Size != size || latest.DER != nil || !latest.Chunked() {
		t.Fatalf("latest CRL %+v, %v; want number 6 of %d octets stored in chunks", latest, err, size)
	}
	if got := readAll(6); string(got) != string(body(6)) {
		t.Fatal("chunks of CRL 6 read back differ from those written")
	}
	if _, err := s.ReadCRLChunk(ctx, "dev/a", false, 6, store.CRLChunks(size)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("chunk past the end: %v", err)
	}
	// CRLs 2 and 3 were pruned; their chunks, and the orphans of 1, go with PruneCRLChunks, a few at a time.
	// Chunks being written for number 7 stay.
	insertChunks(7, body(7), -1)
	prune := func() int {
		t.Helper()
		total := 0
		for {
			var n int
			if err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
				var err error
				n, err = r.PruneCRLChunks(ctx, "dev/a", false, 2)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if n > 2 {
				t.Fatalf("pruned %d chunks in one call, limit 2", n)
			}
			if total += n; n == 0 {
				return total
			}
		}
	}
	if got, want := prune(), 2+3+3; got != want {
		t.Fatalf("pruned %d chunks, want %d (CRL 1's two, 2's and 3's three each)", got, want)
	}
	for _, n := range []int64{1, 2, 3} {
		if _, err := s.ReadCRLChunk(ctx, "dev/a", false, n, 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("chunk of CRL %d after it was pruned: %v", n, err)
		}
	}
	if err := insertCRL(row(7)); err != nil {
		t.Fatal(err)
	}
	if got := readAll(7); string(got) != string(body(7)) {
		t.Fatal("chunks of CRL 7 read back differ from those written")
	}
	if got := prune(); got != 3 {
		t.Fatalf("pruned %d chunks after CRL 7, want CRL 4's 3", got)
	}
	if _, err := s.ReadCRLChunk(ctx, "dev/a", false, 4, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("chunk of CRL 4 after CRL 7: %v", err)
	}
	if got := readAll(5); string(got) != string(body(5)) {
		t.Fatal("chunks of CRL 5, still stored, were pruned")
	}
}

// testWalkRevokedRanges: ranges of serials split a walk of the revoked certificates into parts that together
// yield each entry once, in serial order, also across pages; RevokedSerialRange bounds them.
func testWalkRevokedRanges(t *testing.T, s Backend) {
	ctx := context.Background()
	withCAs(t, s, "dev/a", "dev/b")
	if first, last, err := s.RevokedSerialRange(ctx, "dev/a"); err != nil || first != "" || last != "" {
		t.Fatalf("serial range with nothing revoked: %q %q %v", first, last, err)
	}
	const n = 9000 // more than one page of the backends' walks
	a := insertCerts(t, s, "dev/a", n)
	insertCerts(t, s, "dev/b", 3)
	at := us(t0.Add(time.Hour))
	if err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		for i, c := range a {
			if i%10 == 3 {
				continue // one in ten stays valid
			}
			if _, err := r.Revoke(ctx, &store.Revocation{Serial: c.Serial, Reason: store.ReasonSuperseded, RevokedAt: at}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, c := range a {
		if i%10 != 3 {
			want = append(want, c.Serial)
		}
	}
	sort.Strings(want)
	first, last, err := s.RevokedSerialRange(ctx, "dev/a")
	if err != nil || first != want[0] || last != want[len(want)-1] {
		t.Fatalf("serial range %q..%q, %v; want %q..%q", first, last, err, want[0], want[len(want)-1])
	}
	walk := func(q store.RevokedQuery) []string {
		t.Helper()
		var got []string
		q.IssuerID, q.NotAfterFrom = "dev/a", t0
		if err := s.WalkRevoked(ctx, q, func(e *store.RevocationEntry) error {
			if e.Reason != store.ReasonSuperseded || e.RevokedAt == nil || !e.RevokedAt.Equal(at) {
				t.Fatalf("entry %+v", e)
			}
			got = append(got, e.Serial)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	mustEqual(t, "whole walk", walk(store.RevokedQuery{}), want)
	// Bounds taken from the entries themselves (After exclusive, UpTo inclusive), and between them.
	for _, bounds := range [][]string{
		{want[100], want[5000]},
		{"", "5", "8", "b", "f0"},
		{"", want[0], want[1], want[len(want)-2]},
	} {
		var got []string
		for i, after := range bounds {
			q := store.RevokedQuery{After: after}
			if i+1 < len(bounds) {
				q.UpTo = bounds[i+1]
			}
			got = append(got, walk(q)...)
		}
		start := sort.SearchStrings(want, bounds[0])
		if start < len(want) && want[start] == bounds[0] {
			start++
		}
		mustEqual(t, fmt.Sprintf("walk in ranges %q", bounds), got, want[start:])
	}
	if got := walk(store.RevokedQuery{After: want[10], UpTo: want[10]}); len(got) != 0 {
		t.Fatalf("empty range walked %v", got)
	}
}

func testWalkCertStatus(t *testing.T, s Backend) {
	ctx := context.Background()
	rs := s
	withCAs(t, s, "dev/a", "dev/b")
	const n = 5003 // more than one page of 5000
	a := insertCerts(t, s, "dev/a", n)
	insertCerts(t, s, "dev/b", 7)
	var seen []string
	if err := rs.WalkCertStatus(ctx, store.CertQuery{IssuerIDs: []string{"dev/a"}}, func(c *store.CertStatus) error {
		seen = append(seen, c.Serial)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := make([]string, 0, n)
	for _, c := range a {
		want = append(want, c.Serial)
	}
	sort.Strings(want)
	mustEqual(t, "walked serials", seen, want)
	count, err := rs.CountCertificates(ctx, store.CertQuery{IssuerIDs: []string{"dev/a", "dev/b"}})
	if err != nil || count != n+7 {
		t.Fatalf("count %d, %v", count, err)
	}
	count, err = rs.CountCertificates(ctx, store.CertQuery{Subject: "CN=DEMO-00000003"})
	if err != nil || count != 2 {
		t.Fatalf("count by subject %d, %v", count, err)
	}
	// newCert sets CreatedAt = t0 + 3ms.
	for _, tc := range []struct {
		from, to time.Time
		want     int64
	}{{t0, t0.Add(time.Second), n + 7}, {t0.Add(4 * time.Millisecond), time.Time{}, 0}, {time.Time{}, t0, 0}} {
		count, err = rs.CountCertificates(ctx, store.CertQuery{IssuedFrom: tc.from, IssuedTo: tc.to})
		if err != nil || count != tc.want {
			t.Fatalf("count issued in [%v, %v): %d, %v; want %d", tc.from, tc.to, count, err, tc.want)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err = rs.WalkCertStatus(ctx, store.CertQuery{}, func(*store.CertStatus) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("walk did not stop at the first error: %v after %d calls", err, calls)
	}
}

func testSignersFilters(t *testing.T, s Backend) {
	ctx := context.Background()
	rs := s
	withCAs(t, s, "dev/a")
	if _, err := rs.LatestRevocationSigner(ctx, "dev/a", "ocsp-signing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("signer of a fresh store: %v", err)
	}
	for i, uri := range []string{"soft:o1", "soft:o2"} {
		if err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
			return r.InsertRevocationSigner(ctx, &store.RevocationSigner{IssuerID: "dev/a", Purpose: "ocsp-signing", KeyURI: uri,
				CertDER: []byte{byte(i)}, NotAfter: us(t0.AddDate(0, 3, 0)), CreatedAt: us(t0.Add(time.Duration(i) * time.Hour))})
		}); err != nil {
			t.Fatal(err)
		}
	}
	sg, err := rs.LatestRevocationSigner(ctx, "dev/a", "ocsp-signing")
	if err != nil || sg.KeyURI != "soft:o2" || !sg.NotAfter.Equal(us(t0.AddDate(0, 3, 0))) {
		t.Fatalf("latest signer %+v, %v", sg, err)
	}
	err = rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
		return r.InsertRevocationSigner(ctx, &store.RevocationSigner{IssuerID: "dev/a", Purpose: "ocsp-signing", KeyURI: "soft:o1", CertDER: []byte{1}, NotAfter: t0, CreatedAt: t0})
	})
	wantErr(t, "duplicate signer", err, store.ErrExists)

	for v := int64(1); v <= 2; v++ {
		if err := rtx(t, s, func(_ store.Tx, r store.RevocationTx) error {
			got, err := r.NextFilterVersion(ctx, "dev")
			if err != nil {
				return err
			}
			if got != v {
				t.Fatalf("filter version %d, want %d", got, v)
			}
			if err := r.InsertFilter(ctx, &store.PublishedFilter{Scope: "dev", Version: v, IssuedAt: us(t0), NextUpdate: us(t0.Add(time.Hour)), Data: []byte{byte(v)}}); err != nil {
				return err
			}
			return r.InsertFilter(ctx, &store.PublishedFilter{Scope: "dev", Version: v, BaseVersion: 1, IssuedAt: us(t0), NextUpdate: us(t0), Data: []byte{9}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := rs.LatestFilter(ctx, "dev")
	if err != nil || f.Version != 2 || f.BaseVersion != 0 || f.Data[0] != 2 {
		t.Fatalf("latest filter %+v, %v", f, err)
	}
	d, err := rs.GetFilter(ctx, "dev", 2, 1)
	if err != nil || d.Data[0] != 9 {
		t.Fatalf("delta filter %+v, %v", d, err)
	}
	if _, err := rs.GetFilter(ctx, "dev", 3, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing filter: %v", err)
	}
}

func testPublisherLock(t *testing.T, s Backend) {
	ctx := context.Background()
	release, ok, err := s.TryPublisherLock(ctx, "node-a")
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok2, err := s.TryPublisherLock(ctx, "node-b"); err != nil || ok2 {
		t.Fatalf("second holder got the lock: %v %v", ok2, err)
	}
	release()
	release2, ok, err := s.TryPublisherLock(ctx, "node-b")
	if err != nil || !ok {
		t.Fatalf("lock after release: %v %v", ok, err)
	}
	release2()
}
