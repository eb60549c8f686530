package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// issueMark is what 'bench issue --dir' leaves beside its store, so that a later run measures on it: how many
// devices were prefilled, how many certificates earlier runs issued, and the next free device serial index.
type issueMark struct {
	Prefill int   `json:"prefill"`
	Runs    int   `json:"runs"`
	Issued  int64 `json:"issued"`
	Next    int   `json:"next_device_serial"`
	// The last audit event an earlier run verified the chain up to (from its first event): a later run verifies
	// what follows it.
	AuditSeq  int64  `json:"audit_verified_seq,omitempty"`
	AuditHash []byte `json:"audit_verified_hash,omitempty"`
}

const issueMarkFile = "bench-issue.json"

// readIssueMark returns the mark of an earlier run in dir, nil if dir holds no benchmark store, or an error if
// dir holds something else (a data directory this benchmark did not make is never written to).
func readIssueMark(dir string) (*issueMark, error) {
	b, err := os.ReadFile(filepath.Join(dir, issueMarkFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
			return nil, fmt.Errorf("bench: %s holds a data directory without %s (not a benchmark's, or a run that failed): give an empty or new directory", dir, issueMarkFile)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m issueMark
	if err := json.Unmarshal(b, &m); err != nil || m.Runs < 1 || m.Next < 0 || m.Prefill < 0 {
		return nil, fmt.Errorf("bench: %s in %s is damaged; give another directory", issueMarkFile, dir)
	}
	return &m, nil
}

func writeIssueMark(dir string, m *issueMark) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, issueMarkFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, issueMarkFile))
}
