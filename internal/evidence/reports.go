package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"
)

// Report kinds and the folders of DATA/reports they are saved in ('keyward probe tls', 'keyward fleet scan').
const (
	KindProbe     = "probe-tls"
	KindFleetScan = "fleet-scan"
)

var reportDirs = map[string]string{KindProbe: "probe", KindFleetScan: "fleet-scan"}

// maxReport bounds a report file read into a pack.
const maxReport = 32 << 20

// reportName is a saved report's file name: <UTC YYYYMMDDTHHMMSSZ>-<env>.json.
var reportName = regexp.MustCompile(`^([0-9]{8}T[0-9]{6}Z)-([a-z0-9][a-z0-9-]*)\.json$`)

// Report is a probe or fleet-scan report on record, copied into the pack verbatim, with what index.html says
// of it.
type Report struct {
	Kind        string    `json:"kind"`
	File        string    `json:"file"` // its path in the pack
	Env         string    `json:"env"`
	Product     string    `json:"product,omitempty"`
	Target      string    `json:"target,omitempty"`
	GeneratedAt time.Time `json:"generated_at"`
	// Results counts a probe's cases by result (PASS, FAIL, N/A, ...).
	Results map[string]int `json:"results,omitempty"`
	// Findings counts a fleet scan's findings.
	Findings *int   `json:"findings,omitempty"`
	data     []byte // the file, verbatim
}

// reportHead is what a pack reads of a report: the contract's top-level fields.
type reportHead struct {
	Kind        string                    `json:"kind"`
	Env         string                    `json:"env"`
	Product     string                    `json:"product"`
	GeneratedAt string                    `json:"generated_at"`
	Target      string                    `json:"target"`
	Cases       []struct{ Result string } `json:"cases"`
	Findings    []json.RawMessage         `json:"findings"`
}

// ParseReport reads the contract fields of a saved report: kind, env, product, generated_at (RFC 3339), and the
// probe's cases[].result or the fleet scan's findings[]. Other fields are left as they are.
func ParseReport(data []byte) (*Report, error) {
	if len(data) > maxReport {
		return nil, fmt.Errorf("%d bytes, at most %d", len(data), maxReport)
	}
	var h reportHead
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("not a JSON report: %v", err)
	}
	if reportDirs[h.Kind] == "" {
		return nil, fmt.Errorf("kind %q is not %q or %q", h.Kind, KindProbe, KindFleetScan)
	}
	if h.Env == "" {
		return nil, errors.New("no env")
	}
	at, err := time.Parse(time.RFC3339, h.GeneratedAt)
	if err != nil {
		return nil, fmt.Errorf("generated_at %q is not an RFC 3339 time", h.GeneratedAt)
	}
	r := &Report{Kind: h.Kind, Env: h.Env, Product: h.Product, Target: h.Target, GeneratedAt: at.UTC(), data: data}
	switch h.Kind {
	case KindProbe:
		r.Results = map[string]int{}
		for _, c := range h.Cases {
			r.Results[c.Result]++
		}
	case KindFleetScan:
		n := len(h.Findings)
		r.Findings = &n
	}
	return r, nil
}

// Skipped is a report file left out of a pack, and why.
type Skipped struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// latestReports finds the reports of kind for in's scope in DATA/reports/<dir>: for a probe, the latest of
// each target; for a fleet scan, the latest. Files that break the contract are skipped and named.
func (in *Input) latestReports(kind string) ([]*Report, []Skipped, error) {
	dir := filepath.Join(in.ReportsDir, reportDirs[kind])
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || in.ReportsDir == "" {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, err
	}
	latest := map[string]*Report{}
	var skipped []Skipped
	for _, e := range entries {
		m := reportName.FindStringSubmatch(e.Name())
		if m == nil || m[2] != in.Env || !e.Type().IsRegular() {
			continue
		}
		rel := filepath.ToSlash(filepath.Join(reportDirs[kind], e.Name()))
		data, err := readLimited(filepath.Join(dir, e.Name()), maxReport)
		if err != nil {
			return nil, nil, err
		}
		r, err := ParseReport(data)
		switch {
		case err != nil:
			skipped = append(skipped, Skipped{rel, err.Error()})
			continue
		case r.Kind != kind:
			skipped = append(skipped, Skipped{rel, fmt.Sprintf("kind %q in the %s folder", r.Kind, reportDirs[kind])})
			continue
		case r.Env != in.Env:
			skipped = append(skipped, Skipped{rel, fmt.Sprintf("env %q, but its name says %s", r.Env, in.Env)})
			continue
		case in.Product != "" && r.Product != "" && r.Product != in.Product:
			continue
		}
		r.File = "reports/" + rel
		key := ""
		if kind == KindProbe {
			key = r.Target
		}
		if cur := latest[key]; cur == nil || r.GeneratedAt.After(cur.GeneratedAt) || (r.GeneratedAt.Equal(cur.GeneratedAt) && r.File > cur.File) {
			latest[key] = r
		}
	}
	out := make([]*Report, 0, len(latest))
	for _, r := range latest {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Target != out[j].Target {
			return out[i].Target < out[j].Target
		}
		return out[i].File < out[j].File
	})
	return out, skipped, nil
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, io.LimitReader(f, max+1)); err != nil {
		return nil, err
	}
	if int64(b.Len()) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b.Bytes(), nil
}
