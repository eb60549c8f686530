package factory

// The batch file (.kwb) is an append-only log:
//
//	magic "KWBATCH1"
//	frame*    frame = type (1 byte) | length (uint32, big-endian) | payload | CRC-32C of type, length and payload
//
// The first frame is the header ('H', JSON BatchHeader) binding environment, product line, site, site CA
// certificate, count, first device serial and key custody. Then come Count credential frames ('C', JSON
// Credential) in index order, then injection frames ('I', JSON Injection) in index order. The writer fsyncs at
// each checkpoint; after a crash the file ends with whole frames up to some checkpoint, possibly followed by
// frames written after it and a torn frame. A reader accepts whole frames whose CRC matches and whose index is
// the next one; a torn or corrupt last frame is cut off on resume. A corrupt frame followed by more data is
// not a torn tail but damage, and is refused.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"

	"github.com/keyward/keyward/internal/ra"
)

const batchMagic = "KWBATCH1"

// Frame types.
const (
	frameHeader     = 'H'
	frameCredential = 'C'
	frameInjection  = 'I'
)

// maxFrame bounds a frame's payload, so a damaged length cannot make a reader allocate gigabytes.
const maxFrame = 64 << 10

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Custody names how a batch keeps device private keys.
const (
	// CustodyWrapped: the key is generated in process and only its wrapped form (AES-256-GCM under a
	// per-device transport key) is written; development only.
	CustodyWrapped = ra.CustodyWrapped
	// CustodyPKCS11: the key is generated in the site HSM, sensitive and not extractable; the batch holds its URI.
	CustodyPKCS11 = ra.CustodyPKCS11
)

// BatchHeader binds a batch file to one job.
type BatchHeader struct {
	Version        int       `json:"version"`
	BatchID        string    `json:"batch_id"`
	Environment    string    `json:"environment"`
	ProductLine    string    `json:"product_line"`
	Site           string    `json:"site"`
	SiteCA         string    `json:"site_ca"`
	SiteCASHA256   string    `json:"site_ca_sha256"` // of the site CA certificate DER
	Profile        string    `json:"profile"`
	ProfileVersion int       `json:"profile_version"`
	Count          int64     `json:"count"`
	FirstSerial    string    `json:"first_serial"` // device serial (certificate CN) of index 0
	Custody        string    `json:"custody"`
	TransportKCV   string    `json:"transport_kcv,omitempty"` // key check value of the transport master key
	CreatedAt      time.Time `json:"created_at"`
	// Symmetric names the key-derivation key version of each symmetric purpose the batch derives device keys
	// for (factory batch --symmetric), in the order asked.
	Symmetric []BatchKDK `json:"symmetric,omitempty"`
}

// BatchKDK is the key-derivation key version a batch derives one purpose's device keys with.
type BatchKDK struct {
	Purpose string `json:"purpose"`
	Version int    `json:"version"`
	URI     string `json:"kdk"`
}

// SymmetricKey is a credential's symmetric device key of one purpose: which KDK version derives it and, for
// CustodyWrapped, the key sealed under the device's transport key (WrapDeviceSecret). With CustodyPKCS11 the
// key is derived in the site HSM at injection and wrapped there under the transport key, as the private key is.
type SymmetricKey struct {
	Purpose    string `json:"purpose"`
	KDKVersion int    `json:"kdk_version"`
	WrappedKey []byte `json:"wrapped_key,omitempty"`
}

// Credential is one pre-issued device credential.
type Credential struct {
	Index      int64  `json:"index"`
	DeviceCN   string `json:"cn"`
	CertSerial string `json:"cert_serial"`
	CertDER    []byte `json:"cert"`
	KeyURI     string `json:"key_uri,omitempty"`     // CustodyPKCS11
	WrappedKey []byte `json:"wrapped_key,omitempty"` // CustodyWrapped: nonce | AES-256-GCM(PKCS #8)
	// Symmetric are the device's symmetric keys (factory batch --symmetric), in the header's order.
	Symmetric []SymmetricKey `json:"symmetric,omitempty"`
}

// Injection binds credential Index to the device with serial DeviceSerial.
type Injection struct {
	Index        int64     `json:"index"`
	DeviceSerial string    `json:"device_serial"`
	At           time.Time `json:"at"`
}

// appendFrame encodes v as a frame of type typ onto buf.
func appendFrame(buf []byte, typ byte, v any) ([]byte, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(payload) > maxFrame {
		return nil, fmt.Errorf("batch frame of %d bytes exceeds %d", len(payload), maxFrame)
	}
	start := len(buf)
	buf = append(buf, typ)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(payload)))
	buf = append(buf, payload...)
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], crcTable)), nil
}

// scanResult is what a scan of a batch file found.
type scanResult struct {
	Header      BatchHeader
	Credentials int64 // whole credential frames, indexes 0..Credentials-1
	Injections  int64 // whole injection frames, indexes 0..Injections-1
	End         int64 // offset after the last whole frame
	TornTail    bool  // bytes after End that do not form a whole frame
}

// scanFile reads the batch file at path, calling onCred and onInj (either may be nil) for each whole frame in
// order; a callback returning errStop ends the scan early.
func scanFile(path string, onCred func(*Credential, []byte) error, onInj func(*Injection) error) (*scanResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, notFound(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return scan(bufio.NewReaderSize(f, 1<<20), st.Size(), path, onCred, onInj)
}

var errStop = errors.New("stop scan")

func scan(r *bufio.Reader, size int64, name string, onCred func(*Credential, []byte) error, onInj func(*Injection) error) (*scanResult, error) {
	magic := make([]byte, len(batchMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != batchMagic {
		return nil, fmt.Errorf("%s: %w: not a Keyward batch file (no %q magic)", name, ErrCorrupt, batchMagic)
	}
	res := &scanResult{End: int64(len(batchMagic))}
	var hdr [5]byte
	payload := make([]byte, 0, 4096)
	for n := 0; ; n++ {
		off := res.End
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				break
			}
			res.TornTail = true
			break
		}
		typ, ln := hdr[0], binary.BigEndian.Uint32(hdr[1:])
		frameEnd := off + 5 + int64(ln) + 4
		if frameEnd > size {
			// A frame running past the end of the file is a torn write.
			res.TornTail = true
			break
		}
		if ln > maxFrame {
			return nil, fmt.Errorf("%s: %w: frame at offset %d claims %d bytes (at most %d)", name, ErrCorrupt, off, ln, maxFrame)
		}
		payload = payload[:0]
		payload = append(payload, make([]byte, ln+4)...)
		if _, err := io.ReadFull(r, payload); err != nil {
			res.TornTail = true
			break
		}
		crc := crc32.Update(crc32.Checksum(hdr[:], crcTable), crcTable, payload[:ln])
		if crc != binary.BigEndian.Uint32(payload[ln:]) {
			if frameEnd == size {
				res.TornTail = true
				break
			}
			return nil, fmt.Errorf("%s: %w: frame at offset %d fails its checksum and is followed by %d more bytes", name, ErrCorrupt, off, size-frameEnd)
		}
		body := payload[:ln]
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s: %w: frame at offset %d: %s", name, ErrCorrupt, off, fmt.Sprintf(format, args...))
		}
		switch {
		case n == 0 && typ != frameHeader:
			return nil, bad("the first frame is not the header")
		case n == 0:
			if err := json.Unmarshal(body, &res.Header); err != nil {
				return nil, bad("header: %v", err)
			}
			if res.Header.Version != 1 {
				return nil, bad("batch file version %d; this keyward reads version 1", res.Header.Version)
			}
		case typ == frameCredential:
			if res.Injections > 0 {
				return nil, bad("credential after injections")
			}
			var c Credential
			if err := json.Unmarshal(body, &c); err != nil {
				return nil, bad("credential: %v", err)
			}
			if c.Index != res.Credentials {
				return nil, bad("credential index %d where %d was due (a gap or a duplicate)", c.Index, res.Credentials)
			}
			if c.Index >= res.Header.Count {
				return nil, bad("credential index %d beyond the batch count %d", c.Index, res.Header.Count)
			}
			if onCred != nil {
				if err := onCred(&c, body); err != nil {
					res.Credentials++
					res.End = frameEnd
					if errors.Is(err, errStop) {
						return res, nil
					}
					return nil, err
				}
			}
			res.Credentials++
		case typ == frameInjection:
			var in Injection
			if err := json.Unmarshal(body, &in); err != nil {
				return nil, bad("injection: %v", err)
			}
			if res.Credentials != res.Header.Count {
				return nil, bad("injection before the batch is complete")
			}
			if in.Index != res.Injections {
				return nil, bad("injection of credential %d where %d was due", in.Index, res.Injections)
			}
			if onInj != nil {
				if err := onInj(&in); err != nil {
					return nil, err
				}
			}
			res.Injections++
		default:
			return nil, bad("unknown frame type %q", typ)
		}
		res.End = frameEnd
	}
	if res.End == int64(len(batchMagic)) {
		return nil, fmt.Errorf("%s: %w: no header (the batch was interrupted before it started; delete the file and start again)", name, ErrCorrupt)
	}
	return res, nil
}

// readFrameAt reads the one whole frame that starts at offset off of a batch file, which must end at or before
// limit, and checks its length and checksum. It reads hint bytes first (the caller's guess of the frame's
// length) and the rest only if the frame is longer, so an index can jump to one credential or injection in one
// read instead of scanning the file.
func readFrameAt(r io.ReaderAt, off, limit int64, hint int, name string) (typ byte, body []byte, end int64, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: frame at offset %d: %s", name, ErrCorrupt, off, fmt.Sprintf(format, args...))
	}
	if off < int64(len(batchMagic)) || off+9 > limit {
		return 0, nil, 0, bad("no whole frame fits before offset %d", limit)
	}
	buf := make([]byte, min(int64(max(hint, 9)), limit-off, 9+maxFrame))
	if _, err := r.ReadAt(buf, off); err != nil {
		return 0, nil, 0, bad("%v", err)
	}
	ln := int64(binary.BigEndian.Uint32(buf[1:5]))
	if ln > maxFrame {
		return 0, nil, 0, bad("claims %d bytes (at most %d)", ln, maxFrame)
	}
	end = off + 9 + ln
	if end > limit {
		return 0, nil, 0, bad("claims %d bytes, running past offset %d", ln, limit)
	}
	if have := int64(len(buf)); have < 9+ln {
		buf = append(buf, make([]byte, 9+ln-have)...)
		if _, err := r.ReadAt(buf[have:], off+have); err != nil {
			return 0, nil, 0, bad("%v", err)
		}
	}
	buf = buf[:9+ln]
	if crc32.Checksum(buf[:5+ln], crcTable) != binary.BigEndian.Uint32(buf[5+ln:]) {
		return 0, nil, 0, bad("fails its checksum")
	}
	return buf[0], buf[5 : 5+ln], end, nil
}

// scanAt is scan over the first size bytes of r whose callbacks also get the offset of their frame, so the
// injection index can be built in the same single pass that checks the file. scan calls a callback right after
// its frame is read and before the next one is, so the frame's end is what the bufio.Reader has consumed.
func scanAt(r io.ReaderAt, size int64, name string, onCred func(c *Credential, off int64) error, onInj func(in *Injection, off int64) error) (*scanResult, error) {
	src := &countingReader{r: io.NewSectionReader(r, 0, size)}
	br := bufio.NewReaderSize(src, 1<<20)
	consumed := func() int64 { return src.n - int64(br.Buffered()) }
	// The first callback's frame starts where the header frame ends; if these bytes are not there, scan fails.
	prevEnd := int64(-1)
	var head [len(batchMagic) + 5]byte
	if n, _ := r.ReadAt(head[:], 0); n == len(head) {
		prevEnd = int64(len(head)) + int64(binary.BigEndian.Uint32(head[len(batchMagic)+1:])) + 4
	}
	return scan(br, size, name, func(c *Credential, _ []byte) error {
		off := prevEnd
		prevEnd = consumed()
		if onCred == nil {
			return nil
		}
		return onCred(c, off)
	}, func(in *Injection) error {
		off := prevEnd
		prevEnd = consumed()
		if onInj == nil {
			return nil
		}
		return onInj(in, off)
	})
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
