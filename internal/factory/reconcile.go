package factory

// Reconciliation at headquarters reads a site's export twice and holds none of its records: OpenExport reads
// the file once to check its structure and chain (pass 1), gathering the few facts the RA needs before it reads
// the records again; the RA (internal/ra reconcile.go) then checks the export against what headquarters
// recorded of the site, verifies its signature, and reads the records again (pass 2) inside the one
// transaction that records them, each checked against the site's rules as it is recorded. A refused record, or
// a file that changed between the passes, fails the transaction, which rolls back everything recorded before
// it.

import (
	"context"
	"crypto/x509"
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/ra"
)

// ReconcileRequest asks to import site exports.
type ReconcileRequest struct {
	Files []string
	// Env and Site, if set, admit only exports of that environment and site; any other is foreign.
	Env, Site string
	// Final closes each batch: its export must be final, and every unused credential is revoked (reason
	// ra.UnusedReason) and its key recorded destroyed.
	Final bool
	// Keys is the site HSM, one of the data directory's keystores. With it, the unused PKCS#11 keys of a final
	// export are destroyed in it; without it (or for software-wrapped keys, which only the site can erase),
	// AttestedBy must name who attests the destruction.
	Keys       keystore.Keystore
	AttestedBy string
}

// ReconcileResult reports one reconciled export.
type ReconcileResult = ra.ReconcileResult

// Reconcile imports req.Files in order, each verified in full and then recorded in one transaction by the RA;
// it stops at the first refused file, whose error wraps ErrTampered, ErrForeign, ErrReplay, ErrRefused,
// ErrConflict or ErrBadRequest. The files before it stay reconciled; the results say which.
func (f *Factory) Reconcile(ctx context.Context, req ReconcileRequest) ([]*ReconcileResult, error) {
	if len(req.Files) == 0 {
		return nil, badRequest("name at least one export file")
	}
	rr := ra.ReconcileRequest{Environment: req.Env, Site: req.Site, Final: req.Final, SiteHSM: req.Keys, AttestedBy: req.AttestedBy}
	var out []*ReconcileResult
	for _, name := range req.Files {
		res, err := f.reconcileFile(ctx, rr, name)
		if err != nil {
			return out, notFound(err)
		}
		out = append(out, res)
	}
	return out, nil
}

func (f *Factory) reconcileFile(ctx context.Context, req ra.ReconcileRequest, name string) (*ReconcileResult, error) {
	facts := &batchFacts{name: name}
	e, err := OpenExport(name, ExportChecks{Header: facts.header, Record: facts.record})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	return f.RA.Reconcile(ctx, f.Principal, req, &siteExport{e: e, facts: facts, suspects: facts.suspects()})
}

// siteExport is an export OpenExport checked, as the RA reads it (ra.SiteExport).
type siteExport struct {
	e        *ExportFile
	facts    *batchFacts
	suspects map[uint64]bool
	hdr      *ra.SiteExportHeader
}

func (x *siteExport) Name() string { return x.e.name }

func (x *siteExport) Header() *ra.SiteExportHeader {
	if x.hdr != nil {
		return x.hdr
	}
	h := x.e.Header()
	x.hdr = &ra.SiteExportHeader{Kind: h.Kind, SiteCA: h.SiteCA, SiteCASHA256: h.SiteCASHA256, Site: h.Site, Environment: h.Environment,
		ProductLine: h.ProductLine, BatchID: h.BatchID, Seq: h.Seq, Count: h.Count, FirstSerial: h.FirstSerial, Injected: h.Injected,
		Records: h.Records, Final: h.Final, SignerCert: h.SignerCert}
	return x.hdr
}

func (x *siteExport) Head() []byte { return x.e.Head() }

func (x *siteExport) UnusedKeys() (hsm, soft int64) { return x.facts.hsmKeys, x.facts.softKeys }

// MayRepeat: only serials whose hash OpenExport saw twice can repeat.
func (x *siteExport) MayRepeat(s string) bool { return x.suspects[maphash.String(x.facts.devSeed, s)] }

func (x *siteExport) VerifySignature(signer *x509.Certificate) error {
	return x.e.VerifySignature(signer)
}

func (x *siteExport) Records(fn func(*ra.SiteExportRecord) error) error {
	return x.e.Records(func(r *ExportRecord) error {
		return fn(&ra.SiteExportRecord{Index: r.Index, Kind: r.Kind, CertDER: r.CertDER, DeviceSerial: r.DeviceSerial, At: r.At, KeyURI: r.KeyURI,
			Station: r.Station, Symmetric: r.Symmetric, Hash: r.Hash})
	})
}

// batchFacts checks a batch injection log's header and records while OpenExport reads them (structure the
// header's counts promise), and keeps the little the RA needs to know before it reads the records again: how
// the unused keys are held, and which device serials may occur twice.
type batchFacts struct {
	name string
	hdr  *ExportHeader
	// Unused records whose key is in the site HSM (a key URI), and software-wrapped ones.
	hsmKeys, softKeys int64
	// devSeed keys devHashes, a 64-bit hash of each injected record's device serial: 8 bytes a record while
	// OpenExport reads the file, sorted and dropped afterwards, leaving only the hashes seen twice (suspects).
	// Reconciliation compares the serials of those records exactly; two serials that only share a hash are
	// not refused.
	devSeed   maphash.Seed
	devHashes []uint64
}

func (b *batchFacts) header(h *ExportHeader) error {
	b.hdr = h
	if h.Kind != exportKindBatch {
		return nil
	}
	// A batch's export lists its injected credentials and, if final, every other one: Records counts those.
	if h.Injected < 0 || h.Injected > h.Count || h.Records > h.Count ||
		(h.Final && h.Records != h.Count) || (!h.Final && h.Records != h.Injected) {
		return fmt.Errorf("%s: %w: header counts are inconsistent: count %d, injected %d, records %d, final %v", b.name, ErrTampered, h.Count, h.Injected, h.Records, h.Final)
	}
	b.devSeed = maphash.MakeSeed()
	// The file bounds the number of records; the header only claims it.
	b.devHashes = make([]uint64, 0, min(h.Injected, 1<<16))
	return nil
}

func (b *batchFacts) record(r *ExportRecord) error {
	h := b.hdr
	if h.Kind != exportKindBatch {
		return nil
	}
	// The injections come first, in index order (export.go).
	want := RecordInjected
	if r.Index >= h.Injected {
		want = RecordUnused
	}
	if r.Kind != want {
		return fmt.Errorf("%s: %w: record %d is %q; the header's %d injections make it %q", b.name, ErrTampered, r.Index, r.Kind, h.Injected, want)
	}
	switch {
	case r.Kind == RecordInjected:
		b.devHashes = append(b.devHashes, maphash.String(b.devSeed, r.DeviceSerial))
	case r.KeyURI != "":
		b.hsmKeys++
	default:
		b.softKeys++
	}
	return nil
}

// suspects returns the device-serial hashes that occur more than once, and drops the rest.
func (b *batchFacts) suspects() map[uint64]bool {
	slices.Sort(b.devHashes)
	out := map[uint64]bool{}
	for i := 1; i < len(b.devHashes); i++ {
		if b.devHashes[i] == b.devHashes[i-1] {
			out[b.devHashes[i]] = true
		}
	}
	b.devHashes = nil
	return out
}
