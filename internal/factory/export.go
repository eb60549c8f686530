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
// certified by the site CA with keyUsage digitalSignature and id-kp-documentSigning (RFC 9336). Headquarters
// records that certificate with the site and verifies every export against it, and the certificate against
// the site CA.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

const exportMagic = "KWEXPRT1"

// Export frame types.
const (
	frameExportHeader    = 'H'
	frameExportRecord    = 'R'
	frameExportSignature = 'S'
)

// Record kinds.
const (
	// RecordInjected: the credential was bound to a device at injection.
	RecordInjected = "injected"
	// RecordUnused: a final export's credential that no device received; headquarters revokes it.
	RecordUnused = "unused"
)

// exportDomain separates export signatures and chain hashes from anything else the key or hash could cover.
const exportDomain = "keyward-factory-export-v1"

// oidDocumentSigning is id-kp-documentSigning (RFC 9336 3.1).
var oidDocumentSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 36}

// ErrTampered: an export fails verification (altered, reordered, removed or appended record, truncated file,
// signature that does not verify).
var ErrTampered = errors.New("export fails verification")

// ErrForeign: an export belongs to another site, environment or data directory.
var ErrForeign = errors.New("export is foreign")

// ErrReplay: the export (its batch and sequence number) was reconciled already, or its batch is closed.
var ErrReplay = errors.New("export already reconciled")

// ExportHeader binds an export to one site, batch and sequence number.
type ExportHeader struct {
	Version      int       `json:"version"`
	Kind         string    `json:"kind"` // "batch-injection-log"
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
	Hash         []byte    `json:"hash"`                    // chain hash over the previous hash and this record
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

func writeField(w io.Writer, p []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(p)))
	w.Write(n[:])
	w.Write(p)
}

// recordHash chains r to prev: every field is length-prefixed, so no two records encode alike.
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

// exportSigner generates the site's export signer (purpose audit-signing) in req.Keys and certifies it with
// the site CA's key (siteKeyURI, just generated), linted before the signature like every certificate.
func (f *Factory) exportSigner(ctx context.Context, req SiteCARequest, siteCert *x509.Certificate, siteKeyURI string, now time.Time) (keystore.Key, []byte, error) {
	id := SiteID(req.Env, req.Product, req.Site)
	siteSigner, err := req.Keys.Signer(ctx, siteKeyURI, keystore.PurposeCASigning)
	if err != nil {
		return keystore.Key{}, nil, fmt.Errorf("site CA %s signer: %w", id, err)
	}
	alg, err := keystore.AlgorithmOf(siteSigner.Public())
	if err != nil {
		return keystore.Key{}, nil, err
	}
	key, err := req.Keys.Generate(ctx, keystore.PurposeAuditSigning, alg, id+" export signer")
	if err != nil {
		return keystore.Key{}, nil, fmt.Errorf("generate %s export signer key: %w", id, err)
	}
	fail := func(cause error) (keystore.Key, []byte, error) {
		if err := req.Keys.Destroy(ctx, key.URI); err != nil {
			cause = fmt.Errorf("%w (and destroying the unused key %s failed: %v)", cause, key.URI, err)
		}
		return keystore.Key{}, nil, cause
	}
	serial, err := issuer.RandomSerial()
	if err != nil {
		return fail(err)
	}
	ski, err := profile.SubjectKeyID(key.Public)
	if err != nil {
		return fail(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: siteCert.Subject.CommonName + " export signer"},
		NotBefore:    now.Add(-time.Minute),
		// As long as the site CA: headquarters reconciles the last exports after the issuing window.
		NotAfter: siteCert.NotAfter,
		// RFC 5280 4.2.1.3: digitalSignature for signing files; RFC 9336: id-kp-documentSigning.
		KeyUsage:           x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidDocumentSigning},
		AuthorityKeyId:     siteCert.SubjectKeyId,
		SubjectKeyId:       ski,
	}
	iss, err := issuer.New(siteCert, siteSigner)
	if err != nil {
		return fail(err)
	}
	prep, err := iss.Prepare(tmpl, key.Public)
	if err != nil {
		return fail(fmt.Errorf("export signer certificate for %s refused before signing: %w", id, err))
	}
	der, err := iss.Issue(ctx, prep)
	if err != nil {
		return fail(err)
	}
	return key, der, nil
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
// sequence number is the next after the exports of the batch recorded in the store; the export is recorded
// there, with its audit event, before the file appears under req.Out. A failure after that leaves a gap in
// the sequence, which reconciliation accepts (it refuses only numbers it has seen).
func (f *Factory) Export(ctx context.Context, req ExportRequest) (*ExportSummary, error) {
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
	site, err := f.loadSite(ctx, h.Environment, h.ProductLine, h.Site)
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
	signer, err := f.Keys.Signer(ctx, site.Site.AuditKeyURI, keystore.PurposeAuditSigning)
	if err != nil {
		return nil, fmt.Errorf("export signer of %s: %w", site.CA.ID, err)
	}

	// Injections first (the batch file keeps them in index order, from 0), then, if final, the credentials
	// no device received.
	injected := res.Injections
	records := injected
	if req.Final {
		records = h.Count
	}
	now := f.now()
	hdr := ExportHeader{Version: 1, Kind: "batch-injection-log", SiteCA: site.CA.ID, SiteCASHA256: h.SiteCASHA256, Site: h.Site,
		Environment: h.Environment, ProductLine: h.ProductLine, BatchID: h.BatchID, Count: h.Count, FirstSerial: h.FirstSerial,
		Custody: h.Custody, Injected: injected, Records: records, Final: req.Final, SignerCert: site.Site.AuditCertDER, CreatedAt: now}

	// The next sequence number; recording the export below fails if another export took it meanwhile.
	err = f.Store.Tx(ctx, func(tx store.Tx) error {
		last, err := tx.LastFactoryExportSeq(ctx, h.BatchID)
		if err != nil {
			return err
		}
		hdr.Seq = last + 1
		return nil
	})
	if err != nil {
		return nil, err
	}

	tmp, err := os.CreateTemp(filepath.Dir(req.Out), ".export-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	w := bufio.NewWriterSize(tmp, 1<<20)
	hdrPayload, err := json.Marshal(&hdr)
	if err != nil {
		return nil, err
	}
	buf := []byte(exportMagic)
	if buf, err = appendRawFrame(buf, frameExportHeader, hdrPayload); err != nil {
		return nil, err
	}
	hHash := headerHash(hdrPayload)
	prev := chainGenesis(&hdr)
	emit := func(r *ExportRecord) error {
		r.Hash = recordHash(prev, r)
		prev = r.Hash
		var err error
		if buf, err = appendFrame(buf[:0], frameExportRecord, r); err != nil {
			return err
		}
		_, err = w.Write(buf)
		return err
	}
	if _, err := w.Write(buf); err != nil {
		return nil, err
	}
	// Pass 1: injections (index -> device serial and time). Pass 2: credentials in index order. Both are
	// streams; only the injection list is held, which is at most Count small entries.
	injections := make([]Injection, 0, injected)
	if _, err := scanFile(req.Batch, nil, func(in *Injection) error {
		injections = append(injections, *in)
		return nil
	}); err != nil {
		return nil, err
	}
	if int64(len(injections)) != injected {
		return nil, fmt.Errorf("%w: %s changed while it was exported (%d injections, then %d); export again", ErrConflict, req.Batch, injected, len(injections))
	}
	var unused int64
	_, err = scanFile(req.Batch, func(c *Credential, _ []byte) error {
		r := &ExportRecord{Index: c.Index, CertDER: c.CertDER, KeyURI: c.KeyURI}
		switch {
		case c.Index < injected:
			in := injections[c.Index]
			r.Kind, r.DeviceSerial, r.At = RecordInjected, in.DeviceSerial, in.At.UTC()
		case req.Final:
			r.Kind = RecordUnused
			unused++
		default:
			return errStop
		}
		return emit(r)
	}, nil)
	if err != nil {
		return nil, err
	}
	sig, err := signDigest(signer, signedDigest(hHash, prev, records))
	if err != nil {
		return nil, fmt.Errorf("sign export of batch %s: %w", h.BatchID, err)
	}
	if buf, err = appendFrame(buf[:0], frameExportSignature, &ExportSignature{Head: prev, Signature: sig}); err != nil {
		return nil, err
	}
	if _, err := w.Write(buf); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	// Record the export with its audit event, then publish the file: a crash in between leaves a recorded
	// sequence number without a file, never a file whose number could be reused.
	err = f.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertFactoryExport(ctx, &store.FactoryExport{BatchID: h.BatchID, Seq: hdr.Seq, CAID: site.CA.ID, Records: records,
			ChainHead: prev, Final: req.Final, CreatedAt: now}); err != nil {
			if errors.Is(err, store.ErrExists) {
				return fmt.Errorf("%w: another export of batch %s took sequence number %d at the same time; export again", ErrConflict, h.BatchID, hdr.Seq)
			}
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: f.Actor, Action: "factory.export", Subject: site.CA.ID, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"batch": h.BatchID, "seq": fmt.Sprint(hdr.Seq), "injected": fmt.Sprint(injected), "unused": fmt.Sprint(unused),
				"final": fmt.Sprint(req.Final), "chain_head": hex.EncodeToString(prev), "file": filepath.Base(req.Out)}})
	})
	if err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), req.Out); err != nil {
		return nil, fmt.Errorf("publish export %s: %w", req.Out, err)
	}
	return &ExportSummary{Path: req.Out, BatchID: h.BatchID, SiteCA: site.CA.ID, Seq: hdr.Seq, Count: h.Count, Injected: injected, Unused: unused,
		Records: records, Final: req.Final, Head: hex.EncodeToString(prev)}, nil
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

// signDigest signs a SHA-256 digest: ECDSA signs the digest (ASN.1 signature), Ed25519 the digest as its
// message (pure Ed25519 over a 32-byte message).
func signDigest(s crypto.Signer, digest []byte) ([]byte, error) {
	if _, ok := s.Public().(ed25519.PublicKey); ok {
		return s.Sign(rand.Reader, digest, crypto.Hash(0))
	}
	return s.Sign(rand.Reader, digest, crypto.SHA256)
}

func verifyDigest(pub crypto.PublicKey, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, digest, sig)
	}
	return false
}

// ParsedExport is a read export whose frames are whole and whose chain is continuous; its signature is not
// checked yet (VerifySignature).
type ParsedExport struct {
	Header     ExportHeader
	Records    []ExportRecord
	Signature  ExportSignature
	headerHash []byte
}

// ParseExport reads an export and checks its structure and chain: magic, whole frames with good checksums, the
// header first, records with indexes 0, 1, 2, ... each chained to the one before, the record counts the header
// announces, and one signature frame at the end whose head is the chain's. Every failure wraps ErrTampered
// and names the first bad frame and what is wrong with it.
func ParseExport(r io.Reader, name string) (*ParsedExport, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, ErrTampered, fmt.Sprintf(format, args...))
	}
	magic := make([]byte, len(exportMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != exportMagic {
		return nil, bad("not a Keyward export (no %q magic)", exportMagic)
	}
	p := &ExportHeader{}
	out := &ParsedExport{}
	var (
		prev     []byte
		haveHdr  bool
		haveSig  bool
		frameHdr [5]byte
		off      = int64(len(exportMagic))
	)
	for n := 0; ; n++ {
		if _, err := io.ReadFull(br, frameHdr[:]); err != nil {
			if err == io.EOF {
				break
			}
			return nil, bad("truncated: the file ends inside the frame at offset %d", off)
		}
		typ, ln := frameHdr[0], binary.BigEndian.Uint32(frameHdr[1:])
		if ln > maxFrame {
			return nil, bad("frame at offset %d claims %d bytes (at most %d)", off, ln, maxFrame)
		}
		body := make([]byte, ln+4)
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, bad("truncated: the file ends inside the frame at offset %d", off)
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
			if p.Version != 1 || p.Kind != "batch-injection-log" {
				return nil, bad("export version %d kind %q; this keyward reads version 1 batch-injection-log", p.Version, p.Kind)
			}
			if p.Records < 0 || p.Injected < 0 || p.Injected > p.Count || p.Records > p.Count ||
				(p.Final && p.Records != p.Count) || (!p.Final && p.Records != p.Injected) {
				return nil, bad("header counts are inconsistent: count %d, injected %d, records %d, final %v", p.Count, p.Injected, p.Records, p.Final)
			}
			out.headerHash = headerHash(payload)
			prev = chainGenesis(p)
			haveHdr = true
			out.Records = make([]ExportRecord, 0, min(p.Records, 1<<16))
		case typ == frameExportRecord:
			var rec ExportRecord
			if err := json.Unmarshal(payload, &rec); err != nil {
				return nil, bad("record frame at offset %d: %v", off, err)
			}
			want := int64(len(out.Records))
			switch {
			case rec.Index < want:
				return nil, bad("record %d at position %d, where %d was due: a duplicate or reordered record", rec.Index, want, want)
			case rec.Index > want:
				return nil, bad("record %d at position %d, where %d was due: record %d was removed, or records were reordered", rec.Index, want, want, want)
			case want >= p.Records:
				return nil, bad("record %d beyond the %d records the header announces (appended)", rec.Index, p.Records)
			}
			wantKind := RecordInjected
			if rec.Index >= p.Injected {
				wantKind = RecordUnused
			}
			if rec.Kind != wantKind {
				return nil, bad("record %d is %q; the header's %d injections make it %q", rec.Index, rec.Kind, p.Injected, wantKind)
			}
			h := recordHash(prev, &rec)
			if !bytes.Equal(h, rec.Hash) {
				return nil, bad("record %d does not match its chain hash: it was altered, or the record before it was removed or reordered", rec.Index)
			}
			prev = h
			out.Records = append(out.Records, rec)
		case typ == frameExportSignature:
			if err := json.Unmarshal(payload, &out.Signature); err != nil {
				return nil, bad("signature frame: %v", err)
			}
			if got := int64(len(out.Records)); got != p.Records {
				return nil, bad("%d records where the header announces %d: records were removed from the end", got, p.Records)
			}
			if !bytes.Equal(out.Signature.Head, prev) {
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
		return nil, bad("truncated: %d of %d records and no signature", len(out.Records), p.Records)
	}
	out.Header = *p
	return out, nil
}

// VerifySignature checks the export's signature with the public key of signer.
func (e *ParsedExport) VerifySignature(signer *x509.Certificate) error {
	if !verifyDigest(signer.PublicKey, signedDigest(e.headerHash, e.Signature.Head, int64(len(e.Records))), e.Signature.Signature) {
		return fmt.Errorf("%w: the signature of export %d of batch %s does not verify with %s's export signer (serial %x): the header or signature was altered, or another key signed it",
			ErrTampered, e.Header.Seq, e.Header.BatchID, e.Header.SiteCA, signer.SerialNumber)
	}
	return nil
}
