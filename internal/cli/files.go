package cli

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxInputFile bounds files read from operators (CSRs, certificates): far above any legitimate one.
const maxInputFile = 1 << 20

func readFileLimited(path string) ([]byte, error) {
	if path == "" {
		return nil, usageError{fmt.Errorf("missing file argument")}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError{err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxInputFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInputFile {
		return nil, badInput(fmt.Errorf("%s is larger than %d bytes", path, maxInputFile))
	}
	return data, nil
}

// readPEMOrDER returns the DER of the first PEM block of type typ in path, or the file itself if it is not PEM.
func readPEMOrDER(path, typ string) ([]byte, error) {
	data, err := readFileLimited(path)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		return data, nil
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, badInput(fmt.Errorf("%s: no PEM block of type %q", path, typ))
		}
		if b.Type == typ || (typ == "CERTIFICATE REQUEST" && b.Type == "NEW CERTIFICATE REQUEST") {
			return b.Bytes, nil
		}
	}
}

func readCert(path string) ([]byte, error) { return readPEMOrDER(path, "CERTIFICATE") }

func badInput(err error) error { return &exitError{code: ExitBadRequest, err: err} }

// pemBytes encodes der as one PEM block of typ.
func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeFileAtomic writes data to path through a temporary file in the same directory and a rename, so a reader
// never sees half a file and a failure leaves any earlier file as it was.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
