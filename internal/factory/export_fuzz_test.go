package factory

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzOpenExport: the export parser reads files from outside; it must refuse, never panic, and what it
// accepts in the first pass its second pass (Records) must read the same.
func FuzzOpenExport(f *testing.F) {
	for _, kind := range []string{exportKindBatch, exportKindSiteLog} {
		hdr := &ExportHeader{Version: 1, Kind: kind, Count: 2, Injected: 1, Records: 1, BatchID: "b"}
		h, _ := json.Marshal(hdr)
		seed, _ := appendRawFrame([]byte(exportMagic), frameExportHeader, h)
		r := &ExportRecord{Index: 0, Kind: RecordInjected, CertDER: []byte{0x30}, DeviceSerial: "HW-1"}
		if kind == exportKindSiteLog {
			r.Station = "station-1"
		}
		r.Hash = recordHash(chainGenesis(hdr), r)
		rec, _ := json.Marshal(r)
		seed, _ = appendRawFrame(seed, frameExportRecord, rec)
		f.Add(bytes.Clone(seed))
		sig, _ := json.Marshal(&ExportSignature{Head: r.Hash, Signature: []byte{1}})
		seed, _ = appendRawFrame(seed, frameExportSignature, sig)
		f.Add(seed)
	}
	f.Add([]byte(exportMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		var seen int64
		e, err := openExport(bytes.NewReader(data), "fuzz", ExportChecks{Record: func(*ExportRecord) error { seen++; return nil }})
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("error %v does not wrap ErrTampered", err)
			}
			return
		}
		if h := e.Header(); seen != h.Records {
			t.Fatalf("accepted %d records where the header says %d", seen, h.Records)
		}
		var again int64
		if err := e.Records(func(r *ExportRecord) error {
			if r.Index != again {
				t.Fatalf("second pass: record %d at position %d", r.Index, again)
			}
			again++
			return nil
		}); err != nil || again != seen {
			t.Fatalf("second pass of an accepted export: %d of %d records, %v", again, seen, err)
		}
	})
}
