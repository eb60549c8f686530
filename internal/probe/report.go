package probe

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Kind is the report's kind field.
const Kind = "probe-tls"

// Results of a case.
const (
	Pass = "PASS"
	Fail = "FAIL"
	NA   = "N/A"
)

// Expected outcomes.
const (
	ExpectRefused  = "refused"
	ExpectAccepted = "accepted"
)

// Report is the outcome of one probe run. Its JSON names are a contract: 'keyward evidence' reads them.
type Report struct {
	Kind    string `json:"kind"`
	Env     string `json:"env"`
	Product string `json:"product"`
	Profile string `json:"profile"`
	// Target is the address probed (Side client) or listened on (Side server).
	Target      string    `json:"target"`
	As          Side      `json:"as"`
	GeneratedAt time.Time `json:"generated_at"`
	Cases       []Case    `json:"cases"`
	Summary     Summary   `json:"summary"`
	// Publication says what the revoked case's revocation republished.
	Publication *Publication `json:"publication,omitempty"`
	// Notes are facts about the run a reader needs to weigh the results.
	Notes []string `json:"notes,omitempty"`
}

// Case is one case of the catalogue and its outcome.
type Case struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Expected    string `json:"expected"`
	Observed    string `json:"observed"`
	Result      string `json:"result"`
	// Alert is the TLS alert the peer sent, by its RFC 8446 6 name with spaces ("bad certificate"), or "".
	Alert string `json:"alert"`
	// Serial is the certificate's serial (hex) when the RA issued it for the case.
	Serial string `json:"serial,omitempty"`
}

// Summary counts the results.
type Summary struct {
	Total int `json:"total"`
	Pass  int `json:"pass"`
	Fail  int `json:"fail"`
	NA    int `json:"na"`
	// Result is PASS when no case failed, else FAIL.
	Result string `json:"result"`
}

// Publication is the revocation the probe published before running its cases.
type Publication struct {
	RevokedSerial string `json:"revoked_serial"`
	CRLIssuer     string `json:"crl_issuer"`
	CRLNumber     int64  `json:"crl_number"`
	// Filters are the scopes and versions of the revocation filters built ("dev": 12).
	Filters map[string]int64 `json:"filters"`
}

// Failed reports whether any case failed.
func (r *Report) Failed() bool { return r.Summary.Fail > 0 }

func (r *Report) summarise() {
	s := Summary{Total: len(r.Cases)}
	for _, c := range r.Cases {
		switch c.Result {
		case Pass:
			s.Pass++
		case Fail:
			s.Fail++
		default:
			s.NA++
		}
	}
	s.Result = Pass
	if s.Fail > 0 {
		s.Result = Fail
	}
	r.Summary = s
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReportDir is where a data directory keeps probe reports, relative to it.
const ReportDir = "reports/probe"

// TimestampLayout names report copies: UTC, sortable, no separators that a file system might refuse.
const TimestampLayout = "20060102T150405Z"

// SaveCopy writes the report to <dataDir>/reports/probe/<generated_at>-<env>.json (directories 0700, the
// file 0600) and returns the path. The file is written whole under a temporary name and renamed into place,
// so a reader never sees half a report; a run for the same environment within the same second replaces it.
func (r *Report) SaveCopy(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, filepath.FromSlash(ReportDir))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("probe report directory: %w", err)
	}
	path := filepath.Join(dir, r.GeneratedAt.UTC().Format(TimestampLayout)+"-"+r.Env+".json")
	f, err := os.CreateTemp(dir, ".probe-*.json")
	if err != nil {
		return "", fmt.Errorf("probe report copy: %w", err)
	}
	tmp := f.Name()
	err = r.WriteJSON(f)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("probe report copy %s: %w", path, err)
	}
	return path, nil
}

var htmlReport = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Keyward TLS probe: {{.Env}}{{if .Product}}/{{.Product}}{{end}} {{.Target}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.4em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.PASS { color: #0a6b2b; font-weight: bold; }
.FAIL { color: #b00020; font-weight: bold; }
.NA { color: #666; font-weight: bold; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; }
</style>
</head>
<body>
<h1>TLS probe: <span class="{{if eq .Summary.Result "FAIL"}}FAIL{{else}}PASS{{end}}">{{.Summary.Result}}</span></h1>
<dl>
<dt>environment</dt><dd>{{.Env}}</dd>
<dt>product line</dt><dd>{{.Product}}</dd>
<dt>profile</dt><dd>{{.Profile}}</dd>
<dt>target</dt><dd>{{.Target}} (the probe played the TLS {{.As}})</dd>
<dt>generated</dt><dd>{{.GeneratedAt.Format "2006-01-02T15:04:05Z07:00"}}</dd>
<dt>cases</dt><dd>{{.Summary.Total}}: {{.Summary.Pass}} PASS, {{.Summary.Fail}} FAIL, {{.Summary.NA}} N/A</dd>
{{with .Publication}}<dt>revocation published</dt><dd>certificate {{.RevokedSerial}} revoked; CRL {{.CRLNumber}} of {{.CRLIssuer}}{{range $scope, $v := .Filters}}; filter {{$scope}} v{{$v}}{{end}}</dd>{{end}}
</dl>
{{range .Notes}}<p>{{.}}</p>
{{end}}
<table>
<thead><tr><th>case</th><th>description</th><th>expected</th><th>observed</th><th>alert</th><th>result</th></tr></thead>
<tbody>
{{range .Cases}}<tr><td>{{.Name}}{{if .Serial}}<br><small>serial {{.Serial}}</small>{{end}}</td><td>{{.Description}}</td><td>{{.Expected}}</td><td>{{.Observed}}</td><td>{{.Alert}}</td><td class="{{if eq .Result "N/A"}}NA{{else}}{{.Result}}{{end}}">{{.Result}}</td></tr>
{{end}}</tbody>
</table>
</body>
</html>
`))

// WriteHTML writes the report as one self-contained HTML page (no script, no outside resource); every value
// is escaped by html/template.
func (r *Report) WriteHTML(w io.Writer) error { return htmlReport.Execute(w, r) }
