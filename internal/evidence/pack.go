package evidence

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keyward/keyward/pkg/auditproof"
)

// Paths of a pack's files.
const (
	PathIndex       = "index.html"
	PathCBOM        = "cbom.json"
	PathCheckpoint  = "audit/checkpoint"
	PathConsistency = "audit/consistency.json"
	PathAuditKey    = "audit/audit.pub"
)

// ErrExists: the pack's directory exists already; nothing was written.
var ErrExists = errors.New("the evidence pack directory exists already")

// Build makes every file of in's pack but the manifest, in path order. It reads DATA/reports and probes the
// TLS configuration in memory; it writes nothing.
func Build(ctx context.Context, in Input) ([]File, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	cp, err := auditproof.Open(in.Checkpoint, in.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("evidence: the audit checkpoint: %w", err)
	}
	st, err := ProbeTLS(ctx, in.TLS)
	if err != nil {
		return nil, err
	}
	g := in.glossary()
	classes := in.revocationClasses()
	var files []File
	add := func(path string, data []byte) { files = append(files, File{Path: path, Data: data}) }
	addJSON := func(path string, v any) error {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		add(path, append(b, '\n'))
		return nil
	}
	cbom, err := in.cbom(g, st, classes)
	if err != nil {
		return nil, err
	}
	add(PathCBOM, cbom)
	if err := addJSON("key-glossary.json", g); err != nil {
		return nil, err
	}
	if err := addJSON("tls.json", st); err != nil {
		return nil, err
	}
	if err := addJSON("revocation.json", classes); err != nil {
		return nil, err
	}
	var bundle []byte
	for _, c := range in.cas() {
		if len(c.CertDER) > 0 {
			bundle = append(bundle, fmt.Sprintf("# %s (%s, %s)\n", c.ID, c.Kind, c.Status)...)
			bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.CertDER})...)
		}
	}
	add("ca-certificates.pem", bundle)
	add(PathCheckpoint, in.Checkpoint)
	add(PathAuditKey, []byte(in.VerifierKey+"\n"))
	if in.Consistency != nil {
		if err := addJSON(PathConsistency, in.Consistency); err != nil {
			return nil, err
		}
	}
	var reports []*Report
	var skipped []Skipped
	for _, kind := range []string{KindProbe, KindFleetScan} {
		r, s, err := in.latestReports(kind)
		if err != nil {
			return nil, err
		}
		reports, skipped = append(reports, r...), append(skipped, s...)
		for _, rep := range r {
			add(rep.File, rep.data)
		}
	}
	pages := map[string]*page{
		"key-glossary.html":       glossaryPage(&in, g),
		"tls.html":                tlsPage(&in, st),
		"revocation.html":         revocationPage(&in, classes),
		"certificate-policy.html": policyPage(&in, g, st),
		PathIndex:                 indexPage(&in, cp, g, reports, skipped),
	}
	for _, name := range sortedKeys(pages) {
		b, err := pages[name].render()
		if err != nil {
			return nil, err
		}
		add(name, b)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func indexPage(in *Input, cp auditproof.Checkpoint, g *Glossary, reports []*Report, skipped []Skipped) *page {
	docs := []link{
		{PathCBOM, "cbom.json", "CycloneDX 1.6 cryptographic bill of materials: algorithms, protocols, keys by URI and purpose, certificate profiles, CA certificates"},
		{"key-glossary.html", "Key glossary", fmt.Sprintf("%d keys held or managed, %d groups of keys held on devices (key-glossary.json)", len(g.Keys), len(g.DeviceKeys))},
		{"certificate-policy.html", "Certificate policy and practice statement", "RFC 3647 outline, generated from keyward.yaml and the profiles"},
		{"tls.html", "TLS configuration statement", "what the listener accepts, probed from its configuration (tls.json)"},
		{"revocation.html", "Revocation strategy per device class", "revocation.json"},
		{"ca-certificates.pem", "CA certificates", "PEM"},
	}
	var probeRows, fleetRows [][]string
	var paras []string
	for _, r := range reports {
		switch r.Kind {
		case KindProbe:
			var counts []string
			for _, res := range []string{"PASS", "FAIL", "N/A"} {
				counts = append(counts, fmt.Sprintf("%s %d", res, r.Results[res]))
			}
			for _, res := range sortedKeys(r.Results) {
				if res != "PASS" && res != "FAIL" && res != "N/A" {
					counts = append(counts, fmt.Sprintf("%s %d", orDash(res), r.Results[res]))
				}
			}
			probeRows = append(probeRows, []string{orDash(r.Target), rfc3339(r.GeneratedAt), strings.Join(counts, ", "), r.File})
		case KindFleetScan:
			fleetRows = append(fleetRows, []string{rfc3339(r.GeneratedAt), orDash(r.Product), itoa(*r.Findings), r.File})
		}
	}
	probeSec := section{ID: "probe", Heading: "TLS probe reports", Level: 2}
	if len(probeRows) == 0 {
		probeSec.Paras = []string{"No probe report on record for " + in.Env + " ('keyward probe tls' saves them in the data directory's reports/probe)."}
	} else {
		probeSec.Paras = []string{"The latest report of each target, copied verbatim; cases counted by result."}
		probeSec.Table = &table{Head: []string{"Target", "Generated", "Cases", "Report"}, Rows: probeRows}
	}
	fleetSec := section{ID: "fleet", Heading: "Fleet scan", Level: 2}
	if len(fleetRows) == 0 {
		fleetSec.Paras = []string{"No fleet scan on record for " + in.Env + " ('keyward fleet scan' saves them in the data directory's reports/fleet-scan)."}
	} else {
		fleetSec.Paras = []string{"The latest fleet scan, copied verbatim."}
		fleetSec.Table = &table{Head: []string{"Generated", "Product line", "Findings", "Report"}, Rows: fleetRows}
	}
	for _, s := range skipped {
		paras = append(paras, fmt.Sprintf("Report %s was left out: %s.", s.File, s.Reason))
	}
	if len(paras) > 0 {
		fleetSec.Paras = append(fleetSec.Paras, paras...)
	}
	audit := section{ID: "audit", Heading: "Audit log", Level: 2, Paras: []string{
		fmt.Sprintf("Signed checkpoint of the audit log %s: %d events (audit/checkpoint, a C2SP tlog-checkpoint signed with the audit-signing key; its verifier key is audit/audit.pub, for reading: verify against the key you hold).", cp.Origin, cp.Size)}}
	if in.Consistency != nil {
		audit.Paras = append(audit.Paras, fmt.Sprintf("Consistency proof (RFC 9162 section 2.1.4) from the previous pack's checkpoint of %d events to this one: audit/consistency.json. No event recorded before the previous pack was changed or removed.", in.Consistency.OldSize))
	} else {
		audit.Paras = append(audit.Paras, "No previous evidence pack's checkpoint on record for this environment: no consistency proof.")
	}
	audit.Links = []link{{PathCheckpoint, "audit/checkpoint", ""}, {PathAuditKey, "audit/audit.pub", ""}}
	if in.Consistency != nil {
		audit.Links = append(audit.Links, link{PathConsistency, "audit/consistency.json", ""})
	}
	product := ""
	if in.Product != "" {
		product = ", product line " + in.Product
	}
	return &page{Index: true, Title: "Evidence pack: " + in.Config.Organization + ", environment " + in.Env + product,
		Subtitle: "Generated by keyward " + in.Version + " at " + rfc3339(in.Now) + " from the installation itself. Every file's SHA-256 is in manifest.json, signed with the audit-signing key: check it with 'keyward evidence verify DIR --key audit.pub'.",
		Sections: []section{
			{ID: "documents", Heading: "Documents", Level: 2, Links: docs},
			probeSec, fleetSec, audit,
			{ID: "manifest", Heading: "Integrity", Level: 2, Links: []link{{ManifestFile, "manifest.json", "SHA-256 of every file, signed note by the audit-signing key"}}},
		}}
}

// Write writes files and the manifest to a new directory dir: into a temporary sibling, renamed to dir at the
// end, so a failure leaves nothing and dir is never half-written. An existing dir is ErrExists.
func Write(dir string, files []File, manifest []byte) error {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("%s: %w: choose another --out (a pack is never overwritten)", dir, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(tmp)
		}
	}()
	all := append(append([]File(nil), files...), File{Path: ManifestFile, Data: manifest})
	for _, f := range all {
		p := filepath.Join(tmp, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	// rename(2) replaces an empty directory: check again just before.
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("%s: %w: choose another --out (a pack is never overwritten)", dir, ErrExists)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	done = true
	return nil
}
