package factory

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/internal/ra"
)

// exportWriter writes an export (export.go) of either kind to a temporary file beside its destination: the
// header, the records chained from the log's genesis hash, and the signature. Recording the export (the RA's
// RecordExport) comes before publish, so a crash in between leaves a recorded sequence number without a file,
// never a file whose number could be reused.
type exportWriter struct {
	out     string
	tmp     *os.File
	w       *bufio.Writer
	buf     []byte
	hdrHash []byte
	head    []byte
	records int64
}

// newExportWriter starts the export of hdr for out, which must not exist.
func newExportWriter(out string, hdr *ExportHeader) (*exportWriter, error) {
	payload, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	buf, err := appendRawFrame([]byte(exportMagic), frameExportHeader, payload)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".export-*")
	if err != nil {
		return nil, err
	}
	x := &exportWriter{out: out, tmp: tmp, w: bufio.NewWriterSize(tmp, 1<<20), hdrHash: headerHash(payload), head: chainGenesis(hdr)}
	if _, err := x.w.Write(buf); err != nil {
		x.close()
		return nil, err
	}
	x.buf = buf[:0]
	return x, nil
}

// add chains r to the records before it (setting r.Hash) and writes it.
func (x *exportWriter) add(r *ExportRecord) error {
	r.Hash = recordHash(x.head, r)
	x.head = r.Hash
	var err error
	if x.buf, err = appendFrame(x.buf[:0], frameExportRecord, r); err != nil {
		return err
	}
	x.records++
	_, err = x.w.Write(x.buf)
	return err
}

// seal has sign sign the header hash, the chain head and the record count (signedDigest) and writes the
// signature, then flushes and syncs the temporary file.
func (x *exportWriter) seal(sign func(digest []byte) ([]byte, error)) error {
	sig, err := sign(signedDigest(x.hdrHash, x.head, x.records))
	if err != nil {
		return err
	}
	if x.buf, err = appendFrame(x.buf[:0], frameExportSignature, &ExportSignature{Head: x.head, Signature: sig}); err != nil {
		return err
	}
	if _, err := x.w.Write(x.buf); err != nil {
		return err
	}
	if err := x.w.Flush(); err != nil {
		return err
	}
	return x.tmp.Sync()
}

// publish makes the sealed export appear under its name (never replacing a file).
func (x *exportWriter) publish() error {
	if err := x.tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(x.tmp.Name(), x.out); err != nil {
		return fmt.Errorf("publish export %s: %w", x.out, err)
	}
	return nil
}

// close removes the temporary file; after publish the export stays under its name.
func (x *exportWriter) close() {
	_ = x.tmp.Close()
	_ = os.Remove(x.tmp.Name())
}

// exportSignature signs an export's digest with site's export signer, through the custodian.
func (f *Factory) exportSignature(ctx context.Context, site *ra.SiteCA) func([]byte) ([]byte, error) {
	return func(digest []byte) ([]byte, error) {
		return f.CA.SignExport(ctx, site.Site.AuditKeyURI, digest)
	}
}
