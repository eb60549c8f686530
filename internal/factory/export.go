package factory

// The export (.kwx) is a site's signed, append-only account of a batch's injection log, which headquarters
// imports with Reconcile:
//
//	magic "KWEXPRT1"
//	frame*    frame = type (1 byte) | length (uint32, big-endian) | payload | CRC-32C (as in the batch file)
//
// One header frame ('H', JSON ExportHeader), then Records record frames ('R', JSON ExportRecord) in index
// order, then one signature frame ('S', JSON ExportSignature). Each record carries the SHA-256 chain hash of
// its content and of the previous record's hash (as internal/audit chains events); the first record chains
// to a genesis hash of the batch's identity (chainGenesis), so successive exports of a batch share their
// common records' hashes. The signature covers the header's hash, the chain head and the record count, so
// removing, reordering, altering or appending a record, or cutting the file, is detected, and the header
// (site, environment, batch, sequence number) cannot be moved onto another export.
//
// Who signs. The site CA key has purpose ca-signing, which Keyward's keystore grants for certificates and
// CRLs only: every key has one purpose (README "Keys"), and the revocation service signs its non-X.509 filters
// with a delegate (crl-signing, id-kp-documentSigning) rather than the CA key. A site's exports are likewise
// signed by a key of purpose audit-signing, generated with the site CA in the same keystore (the site HSM) and
// certified by the site CA with keyUsage digitalSignature and id-kp-documentSigning (RFC 9336; internal/ca
// delegate.go), through the custodian (ca.Custodian.SignExport). Headquarters records that certificate with the
// site and verifies every export against it, and the certificate against the site CA.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

const exportMagic = "KWEXPRT1"

// Export frame types.
const (
	frameExportHeader    = 'H'
	frameExportRecord    = 'R'
	frameExportSignature = 'S'
)

// Record kinds (ra.RecordInjected, ra.RecordUnused; sitelog.go: RecordEnrolled).
const (
	// RecordInjected: the credential was bound to a device at injection.
	RecordInjected = ra.RecordInjected
	// RecordUnused: a final export's credential that no device received; headquarters revokes it.
	RecordUnused = ra.RecordUnused
)

// exportDomain separates export signatures and chain hashes from anything else the key or hash could cover.
const exportDomain = "keyward-factory-export-v1"

// ExportHeader binds an export to one site, batch and sequence number.
type ExportHeader struct {
	Version      int       `json:"version"`
	Kind         string    `json:"kind"` // "batch-injection-log", or "site-ca-issuance-log" (whose Count, FirstSerial and Custody are empty)
	SiteCA       string    `json:"site_ca"`
	SiteCASHA256 string    `json:"site_ca_sha256"`
	Site         string    `json:"site"`
	Environment  string    `json:"environment"`
	ProductLine  string    `json:"product_line"`
	BatchID      string    `json:"batch_id"`
	Seq          int64     `json:"seq"` // export sequence number of this batch, from 1
	Count        int64     `json:"count"`
	FirstSerial  string    `json:"first_serial"`
	Custody      string    `json:"custody"`
	Injected     int64     `json:"injected"`
	Records      int64     `json:"records"` // Injected, plus Count-Injected unused records if Final
	Final        bool      `json:"final"`
	SignerCert   []byte    `json:"signer_cert"` // the site's export signer certificate (DER)
	CreatedAt    time.Time `json:"created_at"`
}

// ExportRecord is one credential of the log.
type ExportRecord struct {
	Index        int64     `json:"index"`
	Kind         string    `json:"kind"`
	CertDER      []byte    `json:"cert"`
	DeviceSerial string    `json:"device_serial,omitempty"` // RecordInjected
	At           time.Time `json:"at,omitzero"`             // injection time (RecordInjected)
	KeyURI       string    `json:"key_uri,omitempty"`       // the key in the site HSM (PKCS#11 custody)
	Station      string    `json:"station,omitempty"`       // the factory station that enrolled the device (site CA issuance log); empty in a batch log
	// Symmetric lists the symmetric keys an injected device received, as purpose:version of their KDK,
	// comma-separated (a batch made with --symmetric).
	Symmetric string `json:"symmetric,omitempty"`
	Hash      []byte `json:"hash"` // chain hash over the previous hash and this record
}

// ExportSignature closes an export.
type ExportSignature struct {
	Head      []byte `json:"head"` // hash of the last record (the genesis hash if there is none)
	Signature []byte `json:"signature"`
}

// chainGenesis is the start of a batch's chain: it binds the batch's identity, not one export's header, so
// every export of the batch shares the hashes of the records they have in common and headquarters can check
// that a later export extends what it reconciled before.
func chainGenesis(h *ExportHeader) []byte {
	d := sha256.New()
	writeField(d, []byte(exportDomain+" genesis"))
	for _, f := range []string{h.BatchID, h.SiteCA, h.SiteCASHA256, h.Environment, h.ProductLine, h.Site, h.FirstSerial} {
		writeField(d, []byte(f))
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(h.Count))
	writeField(d, n[:])
	return d.Sum(nil)
}

// headerHash is the hash of the header frame's exact payload, which the signature covers.
func headerHash(payload []byte) []byte {
	h := sha256.New()
	writeField(h, []byte(exportDomain+" header"))
	writeField(h, payload)
	return h.Sum(nil)
}

// writeField writes p to a hash, length first; a hash's Write never fails.
func writeField(w hash.Hash, p []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(p)))
	w.Write(n[:])
	w.Write(p)
}

// recordHash chains r to prev: every field is length-prefixed, so no two records encode alike. Station comes
// last and only when it is set, so a record without one (every batch record, and every record of exports made
// before the field existed) hashes as it always did, and one with a station has one field more.
func recordHash(prev []byte, r *ExportRecord) []byte {
	h := sha256.New()
	writeField(h, []byte(exportDomain+" record"))
	writeField(h, prev)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(r.Index))
	writeField(h, n[:])
	writeField(h, []byte(r.Kind))
	writeField(h, r.CertDER)
	writeField(h, []byte(r.DeviceSerial))
	var at [8]byte
	if !r.At.IsZero() {
		binary.BigEndian.PutUint64(at[:], uint64(r.At.UTC().UnixNano()))
	}
	writeField(h, at[:])
	writeField(h, []byte(r.KeyURI))
	if r.Station != "" {
		writeField(h, []byte(r.Station))
	}
	// As Station: only when set, so records without symmetric keys hash as before; tagged, so it cannot be
	// read as a station.
	if r.Symmetric != "" {
		writeField(h, []byte("symmetric"))
		writeField(h, []byte(r.Symmetric))
	}
	return h.Sum(nil)
}

// signedDigest is what the export signer signs: SHA-256 over the domain, the header hash, the chain head and
// the record count.
func signedDigest(hdrHash, head []byte, records int64) []byte {
	h := sha256.New()
	writeField(h, []byte(exportDomain+" signature"))
	writeField(h, hdrHash)
	writeField(h, head)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(records))
	writeField(h, n[:])
	return h.Sum(nil)
}

// ExportRequest asks for an export of a batch's injection log.
type ExportRequest struct {
	Batch string // batch file (.kwb)
	Out   string // export file (.kwx); must not exist
	// Final closes the batch: the export also lists every credential never injected, as unused records, so
	// headquarters can revoke them and record their keys destroyed. Injecting after a final export is allowed
	// by the batch file but headquarters refuses any later export of the batch.
	Final bool
}

// ExportSummary reports an export.
type ExportSummary struct {
	Path     string `json:"path"`
	BatchID  string `json:"batch_id"`
	SiteCA   string `json:"site_ca"`
	Seq      int64  `json:"seq"`
	Count    int64  `json:"count"`
	Injected int64  `json:"injected"`
	Unused   int64  `json:"unused"`
	Records  int64  `json:"records"`
	Final    bool   `json:"final"`
	Head     string `json:"chain_head"`
}

// Export writes a signed export of the injection log of the complete batch file req.Batch to req.Out. Its
// sequence number is the next after the exports of the batch the RA recorded; the RA records the export, with
// its audit event, before the file appears under req.Out. A failure after that leaves a gap in the sequence,
// which reconciliation accepts (it refuses only numbers it has seen).
func (f *Factory) Export(ctx context.Context, req ExportRequest) (*ExportSummary, error) {
	sum, err := f.export(ctx, req)
	return sum, notFound(err)
}

func (f *Factory) export(ctx context.Context, req ExportRequest) (*ExportSummary, error) {
	if req.Out == "" {
		return nil, badRequest("--out is required")
	}
	if _, err := os.Stat(req.Out); err == nil {
		return nil, fmt.Errorf("%w: %s exists; an export is never overwritten, choose another --out", ErrConflict, req.Out)
	}
	res, err := scanFile(req.Batch, nil, nil)
	if err != nil {
		return nil, err
	}
	h := res.Header
	if res.Credentials < h.Count {
		return nil, fmt.Errorf("%w: %s holds %d of its %d credentials; finish it with 'keyward factory batch' before exporting", ErrConflict, req.Batch, res.Credentials, h.Count)
	}
	if res.TornTail {
		return nil, fmt.Errorf("%w: %s ends with a torn frame after offset %d; restore it from a copy before exporting", ErrCorrupt, req.Batch, res.End)
	}
	site, err := f.RA.FactorySite(ctx, h.Environment, h.ProductLine, h.Site)
	if err != nil {
		return nil, err
	}
	caSum := sha256.Sum256(site.CA.CertDER)
	if hex.EncodeToString(caSum[:]) != h.SiteCASHA256 {
		return nil, fmt.Errorf("%w: batch %s was issued by another certificate of site CA %s than this data directory holds", ErrConflict, h.BatchID, site.CA.ID)
	}
	if site.Site.AuditKeyURI == "" {
		return nil, fmt.Errorf("%w: site CA %s has no export signer", ErrBadRequest, site.CA.ID)
	}

	// Injections first (the batch file keeps them in index order, from 0), then, if final, the credentials
	// no device received.
	injected := res.Injections
	records := injected
	if req.Final {
		records = h.Count
	}
	now := f.now()
	hdr := ExportHeader{Version: 1, Kind: exportKindBatch, SiteCA: site.CA.ID, SiteCASHA256: h.SiteCASHA256, Site: h.Site,
		Environment: h.Environment, ProductLine: h.ProductLine, BatchID: h.BatchID, Count: h.Count, FirstSerial: h.FirstSerial,
		Custody: h.Custody, Injected: injected, Records: records, Final: req.Final, SignerCert: site.Site.AuditCertDER, CreatedAt: now}

	// The next sequence number; recording the export below fails if another export took it meanwhile.
	if hdr.Seq, err = f.RA.NextExportSeq(ctx, h.BatchID); err != nil {
		return nil, err
	}

	x, err := newExportWriter(req.Out, &hdr)
	if err != nil {
		return nil, err
	}
	defer x.close()
	// The batch file holds the credentials in index order, then the injections in index order: one reader at
	// each section, merged (credential i with injection i), so neither list is held.
	injections, stopInjections := streamInjections(req.Batch, injected)
	defer func() { _, _ = stopInjections() }()
	var unused int64
	_, err = scanFile(req.Batch, func(c *Credential, _ []byte) error {
		r := &ExportRecord{Index: c.Index, CertDER: c.CertDER, KeyURI: c.KeyURI}
		switch {
		case c.Index < injected:
			in, ok := <-injections
			if !ok {
				total, err := stopInjections()
				if err != nil {
					return err
				}
				return fmt.Errorf("%w: %s changed while it was exported (%d injections, then %d); export again", ErrConflict, req.Batch, injected, total)
			}
			if in.Index != c.Index {
				return fmt.Errorf("%w: %s: injection %d where %d was due", ErrCorrupt, req.Batch, in.Index, c.Index)
			}
			r.Kind, r.DeviceSerial, r.At = RecordInjected, in.DeviceSerial, in.At.UTC()
			r.Symmetric = SymmetricList(c.Symmetric)
		case req.Final:
			r.Kind = RecordUnused
			unused++
		default:
			return errStop
		}
		return x.add(r)
	}, nil)
	if err != nil {
		return nil, err
	}
	// Every injection the export lists was sent; the count of all of them says whether one was added meanwhile
	// (for a final export, a credential listed as unused might then be on a device).
	if total, err := stopInjections(); err != nil {
		return nil, err
	} else if total != injected {
		return nil, fmt.Errorf("%w: %s changed while it was exported (%d injections, then %d); export again", ErrConflict, req.Batch, injected, total)
	}
	if err := x.seal(f.exportSignature(ctx, site)); err != nil {
		return nil, fmt.Errorf("sign export of batch %s: %w", h.BatchID, err)
	}
	if err := f.RA.RecordExport(ctx, f.Principal, &store.FactoryExport{BatchID: h.BatchID, Seq: hdr.Seq, CAID: site.CA.ID, Records: records, ChainHead: x.head, Final: req.Final, CreatedAt: now},
		"batch "+h.BatchID, map[string]string{"batch": h.BatchID, "injected": fmt.Sprint(injected), "unused": fmt.Sprint(unused), "file": filepath.Base(req.Out)}); err != nil {
		return nil, err
	}
	if err := x.publish(); err != nil {
		return nil, err
	}
	return &ExportSummary{Path: req.Out, BatchID: h.BatchID, SiteCA: site.CA.ID, Seq: hdr.Seq, Count: h.Count, Injected: injected, Unused: unused,
		Records: records, Final: req.Final, Head: hex.EncodeToString(x.head)}, nil
}

// streamInjections reads the injections of the batch file at path in a goroutine and sends the first n of
// them, in index order, on the channel it returns, which it closes at the end of the file; it counts the rest.
// stop ends the reader (it is safe to call more than once) and returns the count of injections it read, which
// is every injection in the file if the first n were all received, and the reader's error.
func streamInjections(path string, n int64) (<-chan Injection, func() (int64, error)) {
	ch := make(chan Injection, 1024)
	quit, done := make(chan struct{}), make(chan struct{})
	var (
		total int64
		err   error
	)
	go func() {
		defer close(done)
		defer close(ch)
		_, err = scanFile(path, nil, func(in *Injection) error {
			total++
			if total > n {
				return nil
			}
			select {
			case ch <- *in:
				return nil
			case <-quit:
				return errStop
			}
		})
		if errors.Is(err, errStop) {
			err = nil
		}
	}()
	var once sync.Once
	return ch, func() (int64, error) {
		once.Do(func() { close(quit) })
		<-done
		return total, err
	}
}

// appendRawFrame appends a frame with an already encoded payload.
func appendRawFrame(buf []byte, typ byte, payload []byte) ([]byte, error) {
	if len(payload) > maxFrame {
		return nil, fmt.Errorf("export frame of %d bytes exceeds %d", len(payload), maxFrame)
	}
	start := len(buf)
	buf = append(buf, typ)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(payload)))
	buf = append(buf, payload...)
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], crcTable)), nil
}

// verifyDigest verifies a signature of a SHA-256 digest as ca.Custodian.SignExport makes it: ECDSA over the
// digest (ASN.1 signature), Ed25519 over the digest as its message (pure Ed25519 over a 32-byte message).
func verifyDigest(pub crypto.PublicKey, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, digest, sig)
	}
	return false
}

// Export kinds the reader accepts. The structure of both is the same; what their header counts and records
// mean is for their reconciliation to check (batch: reconcile.go).
const (
	exportKindBatch   = ra.ExportKindBatch
	exportKindSiteLog = ra.ExportKindSiteLog
)

// ExportChecks are a caller's checks of an export's content, run by OpenExport while it reads the file. They
// see content whose signature is not verified yet: they may refuse it, or gather the few small facts the
// caller needs before reading the records again with Records, but must not act on it.
type ExportChecks struct {
	// Header, if set, sees the header as soon as it is read, before any record.
	Header func(*ExportHeader) error
	// Record, if set, sees each record once its index and chain hash are checked.
	Record func(*ExportRecord) error
}

// ExportFile is an export whose structure and chain OpenExport checked in one pass over the file, holding its
// header, chain head and counts but none of its records; Records reads them again. It holds the file open
// until Close.
type ExportFile struct {
	name    string
	src     io.ReaderAt
	closer  io.Closer
	scanned *exportScan
}

// exportScan is what a pass over an export learnt: everything needed to verify the signature and to recognise
// the same file in a later pass.
type exportScan struct {
	hdr     ExportHeader
	hdrHash []byte
	sig     ExportSignature
	records int64
	digest  []byte // SHA-256 of every byte of the file, as read
}

// OpenExport opens the export at name and checks its structure and chain in one pass, holding no record:
// magic, whole frames with good checksums, the header first, records with indexes 0, 1, 2, ... each chained to
// the one before, the record count the header announces, and one signature frame at the end whose head is the
// chain's. Every failure wraps ErrTampered and names the first bad frame and what is wrong with it; checks
// run on the way (their errors are returned as they are). The signature is not checked yet (VerifySignature).
func OpenExport(name string, checks ExportChecks) (*ExportFile, error) {
	file, err := os.Open(name)
	if err != nil {
		return nil, notFound(err)
	}
	st, err := file.Stat()
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		_ = file.Close()
		return nil, badRequest("%s is not a regular file; an export is read twice (verified, then recorded), so copy it to a file first", name)
	}
	e, err := openExport(file, name, checks)
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	e.closer = file
	return e, nil
}

// openExport is OpenExport over any source that can be read again.
func openExport(src io.ReaderAt, name string, checks ExportChecks) (*ExportFile, error) {
	s, err := readExport(io.NewSectionReader(src, 0, math.MaxInt64), name, func(h *ExportHeader, _ []byte) error {
		if checks.Header != nil {
			return checks.Header(h)
		}
		return nil
	}, checks.Record)
	if err != nil {
		return nil, err
	}
	return &ExportFile{name: name, src: src, scanned: s}, nil
}

// Header is the export's header. The caller must not modify it.
func (e *ExportFile) Header() *ExportHeader { return &e.scanned.hdr }

// Head is the chain head the signature covers: the hash of the last record, or the genesis hash if there is
// none.
func (e *ExportFile) Head() []byte { return e.scanned.sig.Head }

// Close closes the file.
func (e *ExportFile) Close() error {
	if e.closer == nil {
		return nil
	}
	return e.closer.Close()
}

// VerifySignature checks the export's signature with the public key of signer.
func (e *ExportFile) VerifySignature(signer *x509.Certificate) error {
	s := e.scanned
	if !verifyDigest(signer.PublicKey, signedDigest(s.hdrHash, s.sig.Head, s.records), s.sig.Signature) {
		return fmt.Errorf("%w: the signature of export %d of batch %s does not verify with %s's export signer (serial %x): the header or signature was altered, or another key signed it",
			ErrTampered, s.hdr.Seq, s.hdr.BatchID, s.hdr.SiteCA, signer.SerialNumber)
	}
	return nil
}

// Records reads the file again and calls fn with each record in index order, after checking its chain hash;
// each call gets a record of its own. The file must be the one OpenExport read, byte for byte: if it changed
// since (another header, chain head, record count or any other byte), Records fails with ErrTampered, also
// when fn failed on the way (the change explains the failure better), and a caller that records as it goes
// must undo what it recorded. So that this holds, Records reads the file to its end even after fn failed, and
// returns fn's error once the file is known to be the same. Until Records returns nil, a record fn saw may be
// one whose signature nobody checked.
func (e *ExportFile) Records(fn func(*ExportRecord) error) error {
	want := e.scanned
	var fnErr error
	s, err := readExport(io.NewSectionReader(e.src, 0, math.MaxInt64), e.name, func(_ *ExportHeader, hdrHash []byte) error {
		if !bytes.Equal(hdrHash, want.hdrHash) {
			return fmt.Errorf("%s: %w: its header changed after it was verified", e.name, ErrTampered)
		}
		return nil
	}, func(r *ExportRecord) error {
		if fnErr == nil {
			fnErr = fn(r)
		}
		return nil
	})
	switch {
	case err != nil && errors.Is(err, ErrTampered):
		return &exportChangedError{fmt.Errorf("%s changed after it was verified: %w", e.name, err)}
	case err != nil:
		return err
	case s.records != want.records || !bytes.Equal(s.sig.Head, want.sig.Head) || !bytes.Equal(s.digest, want.digest):
		return &exportChangedError{fmt.Errorf("%s: %w: the file changed after it was verified (%d records with chain head %s, then %d with %s)",
			e.name, ErrTampered, want.records, short(hex.EncodeToString(want.sig.Head)), s.records, short(hex.EncodeToString(s.sig.Head)))}
	}
	return fnErr
}

// exportChangedError is Records' error for a file that is not the one OpenExport read; it wraps ErrTampered
// and matches ra.ErrExportChanged, by which reconciliation knows that the change explains any other failure.
type exportChangedError struct{ err error }

func (e *exportChangedError) Error() string        { return e.err.Error() }
func (e *exportChangedError) Unwrap() error        { return e.err }
func (e *exportChangedError) Is(target error) bool { return target == ra.ErrExportChanged }

// hashingReader hashes what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

// readExport is the export parser (one pass over r): it checks structure and chain as OpenExport describes,
// calls onHeader with the parsed header and its hash, and onRecord with each record once it is chained.
func readExport(r io.Reader, name string, onHeader func(*ExportHeader, []byte) error, onRecord func(*ExportRecord) error) (*exportScan, error) {
	hr := &hashingReader{r: r, h: sha256.New()}
	br := bufio.NewReaderSize(hr, 256<<10)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrTampered, fmt.Sprintf(format, args...))
	}
	magic := make([]byte, len(exportMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != exportMagic {
		return nil, bad("not a Keyward export (no %q magic)", exportMagic)
	}
	out := &exportScan{}
	p := &out.hdr
	var (
		prev     []byte
		haveHdr  bool
		haveSig  bool
		frameHdr [5]byte
		body     = make([]byte, 0, 4096) // one frame at a time, reused
		off      = int64(len(exportMagic))
	)
	for n := 0; ; n++ {
		if _, err := io.ReadFull(br, frameHdr[:]); err != nil {
			if err == io.EOF {
				break
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, bad("truncated: the file ends inside the frame at offset %d", off)
			}
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		typ, ln := frameHdr[0], binary.BigEndian.Uint32(frameHdr[1:])
		if ln > maxFrame {
			return nil, bad("frame at offset %d claims %d bytes (at most %d)", off, ln, maxFrame)
		}
		body = slices.Grow(body[:0], int(ln)+4)[:ln+4]
		if _, err := io.ReadFull(br, body); err != nil {
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, bad("truncated: the file ends inside the frame at offset %d", off)
			}
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		if crc32.Update(crc32.Checksum(frameHdr[:], crcTable), crcTable, body[:ln]) != binary.BigEndian.Uint32(body[ln:]) {
			return nil, bad("frame at offset %d fails its checksum (altered or damaged)", off)
		}
		payload := body[:ln]
		switch {
		case haveSig:
			return nil, bad("data after the signature at offset %d (appended)", off)
		case n == 0 && typ != frameExportHeader:
			return nil, bad("the first frame is not the header")
		case n == 0:
			if err := json.Unmarshal(payload, p); err != nil {
				return nil, bad("header: %v", err)
			}
			if p.Version != 1 || (p.Kind != exportKindBatch && p.Kind != exportKindSiteLog) {
				return nil, bad("export version %d kind %q; this keyward reads version 1 %s and %s", p.Version, p.Kind, exportKindBatch, exportKindSiteLog)
			}
			if p.Records < 0 {
				return nil, bad("header announces %d records", p.Records)
			}
			out.hdrHash = headerHash(payload)
			prev = chainGenesis(p)
			haveHdr = true
			if err := onHeader(p, out.hdrHash); err != nil {
				return nil, err
			}
		case typ == frameExportRecord:
			var rec ExportRecord
			if err := json.Unmarshal(payload, &rec); err != nil {
				return nil, bad("record frame at offset %d: %v", off, err)
			}
			want := out.records
			switch {
			case rec.Index < want:
				return nil, bad("record %d at position %d, where %d was due: a duplicate or reordered record", rec.Index, want, want)
			case rec.Index > want:
				return nil, bad("record %d at position %d, where %d was due: record %d was removed, or records were reordered", rec.Index, want, want, want)
			case want >= p.Records:
				return nil, bad("record %d beyond the %d records the header announces (appended)", rec.Index, p.Records)
			}
			h := recordHash(prev, &rec)
			if !bytes.Equal(h, rec.Hash) {
				return nil, bad("record %d does not match its chain hash: it was altered, or the record before it was removed or reordered", rec.Index)
			}
			prev = h
			out.records++
			if onRecord != nil {
				if err := onRecord(&rec); err != nil {
					return nil, err
				}
			}
		case typ == frameExportSignature:
			if err := json.Unmarshal(payload, &out.sig); err != nil {
				return nil, bad("signature frame: %v", err)
			}
			if out.records != p.Records {
				return nil, bad("%d records where the header announces %d: records were removed from the end", out.records, p.Records)
			}
			if !bytes.Equal(out.sig.Head, prev) {
				return nil, bad("the signed chain head is not the hash of the last record")
			}
			haveSig = true
		default:
			return nil, bad("unknown frame type %q at offset %d", typ, off)
		}
		off += 5 + int64(ln) + 4
	}
	if !haveHdr {
		return nil, bad("truncated: no header")
	}
	if !haveSig {
		return nil, bad("truncated: %d of %d records and no signature", out.records, p.Records)
	}
	out.digest = hr.h.Sum(nil)
	return out, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// SymmetricList encodes the symmetric keys of a credential for its export record: purpose:version of their
// KDK, comma-separated, in the credential's order.
func SymmetricList(keys []SymmetricKey) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d", k.Purpose, k.KDKVersion)
	}
	return b.String()
}
