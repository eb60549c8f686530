package factory

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unicode"
)

// Injected is the credential handed to a device by Inject.
type Injected struct {
	BatchID      string `json:"batch_id"`
	Index        int64  `json:"index"`
	DeviceSerial string `json:"device_serial"`
	CommonName   string `json:"common_name"`
	CertSerial   string `json:"cert_serial"`
	CertDER      []byte `json:"certificate"`
	Custody      string `json:"custody"`
	// KeyURI names the device key in the site HSM (CustodyPKCS11).
	KeyURI string `json:"key_uri,omitempty"`
	// WrappedKey is the device key sealed under its per-device transport key (CustodyWrapped).
	WrappedKey []byte `json:"wrapped_key,omitempty"`
}

// Inject hands the next unused credential of the complete batch file at path to the device with serial
// deviceSerial and appends the binding, fsynced, before returning it. It refuses a device serial that already
// got a credential from this batch and a batch whose credentials are all used. An exclusive lock on the file
// keeps two injectors apart.
func Inject(path, deviceSerial string, now time.Time) (*Injected, error) {
	if err := checkDeviceSerial(deviceSerial); err != nil {
		return nil, err
	}
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, fmt.Errorf("%w: %s is being injected from by another process: %v", ErrConflict, path, err)
	}
	var prev *Injection
	res, err := scanFile(path, nil, func(in *Injection) error {
		if in.DeviceSerial == deviceSerial {
			prev = in
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case res.Credentials < res.Header.Count:
		return nil, fmt.Errorf("%w: %s holds %d of its %d credentials; finish it with 'keyward factory batch' before injecting", ErrConflict, path, res.Credentials, res.Header.Count)
	case prev != nil:
		return nil, fmt.Errorf("%w: device %q got credential %d of batch %s already, at %s; a device gets one credential", ErrConflict, deviceSerial, prev.Index, res.Header.BatchID, prev.At.Format(time.RFC3339))
	case res.Injections >= res.Header.Count:
		return nil, fmt.Errorf("%w: all %d credentials of batch %s (%s) are injected; start a new batch", ErrConflict, res.Header.Count, res.Header.BatchID, path)
	case res.TornTail:
		return nil, fmt.Errorf("%w: %s ends with a torn frame after offset %d; run 'keyward factory batch show' and restore it from a copy", ErrCorrupt, path, res.End)
	}
	next := res.Injections
	var cred *Credential
	if _, err := scanFile(path, func(c *Credential, _ []byte) error {
		if c.Index == next {
			cred = c
			return errStop
		}
		return nil
	}, nil); err != nil {
		return nil, err
	}
	if cred == nil {
		return nil, fmt.Errorf("%w: credential %d not found in %s", ErrCorrupt, next, path)
	}
	buf, err := appendFrame(nil, frameInjection, &Injection{Index: next, DeviceSerial: deviceSerial, At: now.UTC()})
	if err != nil {
		return nil, err
	}
	if _, err := file.Seek(res.End, 0); err != nil {
		return nil, err
	}
	if _, err := file.Write(buf); err != nil {
		return nil, fmt.Errorf("record injection in %s: %w", path, err)
	}
	if err := file.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", path, err)
	}
	return &Injected{BatchID: res.Header.BatchID, Index: next, DeviceSerial: deviceSerial, CommonName: cred.DeviceCN, CertSerial: cred.CertSerial,
		CertDER: cred.CertDER, Custody: res.Header.Custody, KeyURI: cred.KeyURI, WrappedKey: cred.WrappedKey}, nil
}

func checkDeviceSerial(s string) error {
	if s == "" || len(s) > 64 {
		return badRequest("--device-serial %q: give the device's serial number, 1 to 64 characters", s)
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' {
			return badRequest("--device-serial %q: use printable ASCII without spaces", s)
		}
	}
	return nil
}

// BatchInfo is what 'keyward factory batch show' reports.
type BatchInfo struct {
	Path              string      `json:"path"`
	Header            BatchHeader `json:"header"`
	Count             int64       `json:"count"`
	Credentials       int64       `json:"credentials"`
	Complete          bool        `json:"complete"`
	UniqueIndexes     int64       `json:"unique_indexes"`
	UniqueSerials     int64       `json:"unique_serials"` // certificate serials
	UniqueCommonNames int64       `json:"unique_common_names"`
	Injected          int64       `json:"injected"`
	TornTail          bool        `json:"torn_tail"`
	Bytes             int64       `json:"bytes"`
}

// Show reads the batch file at path. It keeps a set of serials and names, so its memory grows with the count.
func Show(path string) (*BatchInfo, error) {
	serials, cns := map[string]struct{}{}, map[string]struct{}{}
	var indexes int64
	res, err := scanFile(path, func(c *Credential, _ []byte) error {
		serials[c.CertSerial] = struct{}{}
		cns[c.DeviceCN] = struct{}{}
		indexes++ // scan enforces index == position, so every index is new
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	info := &BatchInfo{Path: path, Header: res.Header, Count: res.Header.Count, Credentials: res.Credentials,
		Complete: res.Credentials == res.Header.Count, UniqueIndexes: indexes, UniqueSerials: int64(len(serials)),
		UniqueCommonNames: int64(len(cns)), Injected: res.Injections, TornTail: res.TornTail}
	if st, err := os.Stat(path); err == nil {
		info.Bytes = st.Size()
	}
	return info, nil
}

// ReadCredentials calls fn for every whole credential of the batch file at path, in index order.
func ReadCredentials(path string, fn func(*Credential) error) error {
	_, err := scanFile(path, func(c *Credential, _ []byte) error { return fn(c) }, nil)
	return err
}
