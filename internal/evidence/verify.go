package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyward/keyward/pkg/auditproof"
)

// Problem kinds of a verification.
const (
	ProblemChanged   = "changed"
	ProblemMissing   = "missing"
	ProblemAdded     = "added"
	ProblemSignature = "bad signature"
	ProblemMalformed = "malformed"
	ProblemProof     = "proof does not verify"
)

// Problem is one file of a pack that fails verification.
type Problem struct {
	Path    string `json:"path"`
	Problem string `json:"problem"`
	Detail  string `json:"detail,omitempty"`
}

// Result is what Verify found.
type Result struct {
	OK          bool      `json:"ok"`
	Environment string    `json:"environment,omitempty"`
	ProductLine string    `json:"product_line,omitempty"`
	Files       int       `json:"files"`
	Checkpoint  uint64    `json:"checkpoint_size,omitempty"`
	Extends     *uint64   `json:"extends,omitempty"` // the previous pack's checkpoint size the proof connects
	Problems    []Problem `json:"problems"`
}

// ErrVerify: a pack failed verification; the error names the first bad file.
var ErrVerify = errors.New("evidence pack verification failed")

// Verify checks the pack in dir against the audit log's verifier key vkey (never a key the pack carries): the
// manifest's signed note, that it and the JSON list agree, every file's SHA-256 and size, that no file is
// missing or added, the checkpoint's signature, and the consistency proof if there is one. The result lists
// every problem, sorted by path; the error (ErrVerify) names the first.
func Verify(dir, vkey string) (*Result, error) {
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("the verifier key: %v (give the audit.pub written by 'keyward audit pubkey')", err)
	}
	res := &Result{Problems: []Problem{}}
	fail := func() (*Result, error) {
		sort.SliceStable(res.Problems, func(i, j int) bool { return res.Problems[i].Path < res.Problems[j].Path })
		// A bad manifest makes every other answer moot: it goes first.
		sort.SliceStable(res.Problems, func(i, j int) bool {
			return res.Problems[i].Path == ManifestFile && res.Problems[j].Path != ManifestFile
		})
		p := res.Problems[0]
		msg := fmt.Sprintf("%s: %s", p.Path, p.Problem)
		if p.Detail != "" {
			msg += " (" + p.Detail + ")"
		}
		if n := len(res.Problems); n > 1 {
			msg += fmt.Sprintf("; %d more problem(s), listed with --json", n-1)
		}
		return res, fmt.Errorf("%w: %s", ErrVerify, msg)
	}
	mb, err := readLimited(filepath.Join(dir, ManifestFile), maxManifest)
	if errors.Is(err, fs.ErrNotExist) {
		res.Problems = append(res.Problems, Problem{ManifestFile, ProblemMissing, "a pack without its manifest proves nothing"})
		return fail()
	} else if err != nil {
		return nil, err
	}
	m, err := ParseManifest(mb)
	if err != nil {
		res.Problems = append(res.Problems, Problem{ManifestFile, ProblemMalformed, err.Error()})
		return fail()
	}
	n, err := note.Open([]byte(m.Signature), note.VerifierList(verifier))
	if err != nil {
		res.Problems = append(res.Problems, Problem{ManifestFile, ProblemSignature, "not signed by the audit key " + verifier.Name() + ": " + err.Error()})
		return fail()
	}
	if !bytes.Equal([]byte(n.Text), m.NoteText()) {
		res.Problems = append(res.Problems, Problem{ManifestFile, ProblemChanged, "its file list differs from the signed one"})
		return fail()
	}
	res.Environment, res.ProductLine, res.Files = m.Environment, m.ProductLine, len(m.Files)

	listed := map[string]FileEntry{}
	for _, f := range m.Files {
		listed[f.Path] = f
	}
	found := map[string]bool{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() || rel == ManifestFile {
			return nil
		}
		found[rel] = true
		f, ok := listed[rel]
		switch {
		case !ok:
			res.Problems = append(res.Problems, Problem{rel, ProblemAdded, "not in the signed manifest"})
		case !d.Type().IsRegular():
			res.Problems = append(res.Problems, Problem{rel, ProblemChanged, "not a regular file"})
		default:
			sum, size, err := hashFile(path)
			if err != nil {
				return err
			}
			if size != f.Size || hex.EncodeToString(sum) != f.SHA256 {
				res.Problems = append(res.Problems, Problem{rel, ProblemChanged, fmt.Sprintf("SHA-256 %x, signed %s", sum, f.SHA256)})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, f := range m.Files {
		if !found[f.Path] {
			res.Problems = append(res.Problems, Problem{f.Path, ProblemMissing, "listed in the signed manifest"})
		}
	}
	if len(res.Problems) > 0 {
		return fail()
	}
	// The files are the signed ones; now what they claim.
	if _, ok := listed[PathCheckpoint]; ok {
		b, err := os.ReadFile(filepath.Join(dir, PathCheckpoint))
		if err != nil {
			return nil, err
		}
		cp, err := auditproof.Open(b, vkey)
		if err != nil {
			res.Problems = append(res.Problems, Problem{PathCheckpoint, ProblemSignature, err.Error()})
			return fail()
		}
		res.Checkpoint = cp.Size
		if _, ok := listed[PathConsistency]; ok {
			pb, err := os.ReadFile(filepath.Join(dir, PathConsistency))
			if err != nil {
				return nil, err
			}
			p, err := auditproof.ParseConsistencyProof(pb)
			if err != nil {
				res.Problems = append(res.Problems, Problem{PathConsistency, ProblemMalformed, err.Error()})
				return fail()
			}
			older, newer, err := p.Verify(vkey)
			if err == nil && (newer.Size != cp.Size || !bytes.Equal(newer.Root, cp.Root)) {
				err = fmt.Errorf("it ends at a checkpoint of %d events, not the pack's checkpoint", newer.Size)
			}
			if err != nil {
				res.Problems = append(res.Problems, Problem{PathConsistency, ProblemProof, err.Error()})
				return fail()
			}
			res.Extends = &older.Size
		}
	}
	res.OK = true
	return res, nil
}

func hashFile(path string) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, 0, err
	}
	return h.Sum(nil), n, nil
}
