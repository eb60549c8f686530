package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ManifestFile is the name of the manifest in a pack.
const ManifestFile = "manifest.json"

// ManifestFormat names the manifest's format and version; the first line of its signed note is NoteHeader.
const (
	ManifestFormat = "keyward-evidence-manifest/1"
	// NoteHeader starts the note the audit key signs: a line no checkpoint has (a checkpoint starts with its
	// log's origin), so neither can pass for the other. It equals ra.EvidenceNoteHeader.
	NoteHeader = "keyward.evidence/1\n"
)

// maxManifest bounds manifest.json when a pack is verified.
const maxManifest = 16 << 20

// Manifest lists every file of a pack but itself with its SHA-256 and size. Signature is a signed note (the
// audit key's, golang.org/x/mod/sumdb/note) whose text is NoteText of the other fields: the JSON is for
// reading, the note is what is trusted.
type Manifest struct {
	Format      string      `json:"format"`
	Environment string      `json:"environment"`
	ProductLine string      `json:"product_line,omitempty"`
	GeneratedAt time.Time   `json:"generated_at"`
	Files       []FileEntry `json:"files"`
	Signature   string      `json:"signature"`
}

// FileEntry is one file of a pack.
type FileEntry struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// File is one file of a pack, by its slash-separated path.
type File struct {
	Path string
	Data []byte
}

// NewManifest lists files (sorted by path) for the pack of env and product generated at.
func NewManifest(env, product string, at time.Time, files []File) *Manifest {
	m := &Manifest{Format: ManifestFormat, Environment: env, ProductLine: product, GeneratedAt: at.UTC().Truncate(time.Second), Files: make([]FileEntry, 0, len(files))}
	for _, f := range files {
		sum := sha256.Sum256(f.Data)
		m.Files = append(m.Files, FileEntry{Path: f.Path, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(f.Data))})
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	return m
}

// NoteText is the text the audit key signs:
//
//	keyward.evidence/1
//	env <env>
//	product <product or ->
//	generated <RFC 3339>
//	<sha256 hex> <size> <path>   (one line per file, sorted by path)
func (m *Manifest) NoteText() []byte {
	var b bytes.Buffer
	b.WriteString(NoteHeader)
	product := m.ProductLine
	if product == "" {
		product = "-"
	}
	fmt.Fprintf(&b, "env %s\nproduct %s\ngenerated %s\n", m.Environment, product, rfc3339(m.GeneratedAt))
	for _, f := range m.Files {
		fmt.Fprintf(&b, "%s %d %s\n", f.SHA256, f.Size, f.Path)
	}
	return b.Bytes()
}

// Marshal returns manifest.json.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ErrMalformedManifest: manifest.json is not a manifest.
var ErrMalformedManifest = errors.New("malformed evidence manifest")

// ParseManifest decodes manifest.json and checks its shape: the format, a known environment name, sorted
// unique paths that stay inside the pack, 64 hex digits per hash. The signature is Verify's business.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformedManifest, len(b), maxManifest)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedManifest, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the manifest", ErrMalformedManifest)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrMalformedManifest, m.Format, ManifestFormat)
	}
	if !safeWord(m.Environment) || (m.ProductLine != "" && !safeWord(m.ProductLine)) {
		return nil, fmt.Errorf("%w: environment %q or product line %q is not a name", ErrMalformedManifest, m.Environment, m.ProductLine)
	}
	for i, f := range m.Files {
		if !safePath(f.Path) || f.Path == ManifestFile {
			return nil, fmt.Errorf("%w: file %d: path %q is not a relative path inside the pack", ErrMalformedManifest, i, f.Path)
		}
		if i > 0 && m.Files[i-1].Path >= f.Path {
			return nil, fmt.Errorf("%w: file %q is out of order or listed twice", ErrMalformedManifest, f.Path)
		}
		if h, err := hex.DecodeString(f.SHA256); err != nil || len(h) != sha256.Size || strings.ToLower(f.SHA256) != f.SHA256 {
			return nil, fmt.Errorf("%w: file %q: sha256 %q is not 64 lower-case hex digits", ErrMalformedManifest, f.Path, f.SHA256)
		}
		if f.Size < 0 {
			return nil, fmt.Errorf("%w: file %q: negative size", ErrMalformedManifest, f.Path)
		}
	}
	return &m, nil
}

// safeWord is an environment or product line name as keyward.yaml allows them.
func safeWord(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

// safePath is a slash-separated relative path of printable ASCII without spaces, "." or ".." elements.
func safePath(p string) bool {
	if p == "" || len(p) > 255 || strings.HasPrefix(p, "/") {
		return false
	}
	for _, r := range p {
		if r <= ' ' || r > '~' || r == '\\' {
			return false
		}
	}
	for _, el := range strings.Split(p, "/") {
		if el == "" || el == "." || el == ".." {
			return false
		}
	}
	return true
}
