package cli

import (
	"bytes"
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veraison/go-cose"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/pkg/trust"
)

// rollover is a dev root rollover on disk: a factory anchors file holding the old root (no state block) and
// signed updates.
type rollover struct {
	dir              string
	oldRoot, newRoot *pkitest.CA
	factory          string // anchors.pem of a factory: the old root, no state block
	overlap          string // version 1: old and new root, signed by both
	retire           string // version 2: the new root only, signed by it
}

func newRollover(t *testing.T) *rollover {
	t.Helper()
	r := &rollover{dir: t.TempDir(), oldRoot: pkitest.NewRoot(t, "Keyward dev Root CA", nil), newRoot: pkitest.NewRoot(t, "Keyward dev Root CA 2", pkitest.KeyOf(t, "P-384"))}
	r.factory = r.write(t, "anchors.pem", pkitest.PEM("CERTIFICATE", r.oldRoot.Cert.Raw))
	r.overlap = r.sign(t, "overlap.cbor", r.update("dev", 1, r.oldRoot, r.newRoot), r.oldRoot.Key, r.newRoot.Key)
	r.retire = r.sign(t, "retire.cbor", r.update("dev", 2, r.newRoot), r.newRoot.Key)
	return r
}

func (r *rollover) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *rollover) update(env string, v uint64, cas ...*pkitest.CA) *trust.Update {
	now := time.Now()
	u := &trust.Update{Environment: env, Version: v, NotBefore: now.Add(-time.Hour).Unix(), NotAfter: now.Add(30 * 24 * time.Hour).Unix(), IssuedAt: now.Unix()}
	for _, ca := range cas {
		u.Anchors = append(u.Anchors, ca.Cert.Raw)
	}
	return u
}

func (r *rollover) sign(t *testing.T, name string, u *trust.Update, signers ...crypto.Signer) string {
	t.Helper()
	data, err := trust.Sign(u, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return r.write(t, name, data)
}

func readAnchorsFile(t *testing.T, path string) *trust.Anchors {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := trust.ParseAnchorsPEM(data, "")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestTrustApply walks a device's anchors file through a rollover: the overlap from a factory file, a replay
// refused without touching a file, and the retirement of the old root written over the input.
func TestTrustApply(t *testing.T) {
	t.Parallel()
	r := newRollover(t)
	v1 := filepath.Join(r.dir, "v1.pem")

	_, stderr, code := kw(t, "trust", "apply", "--anchors", r.factory, "--update", r.overlap, "--out", v1)
	if code != ExitUsage || !strings.Contains(stderr, "--env is required") {
		t.Fatalf("factory file without --env: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(v1); !os.IsNotExist(err) {
		t.Fatalf("a refused apply wrote %s", v1)
	}

	out := mustKW(t, "trust", "apply", "--anchors", r.factory, "--env", "dev", "--update", r.overlap, "--out", v1)
	for _, want := range []string{"applied trust-anchor update to dev: version 0 -> 1", "added    CN=Keyward dev Root CA 2,O=Keyward Test  sha256:",
		"kept     CN=Keyward dev Root CA,O=Keyward Test  sha256:", "wrote " + v1 + ": 2 anchors"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	a := readAnchorsFile(t, v1)
	if a.Environment != "dev" || a.Version != 1 || len(a.Certificates()) != 2 {
		t.Fatalf("%s: %s version %d, %d anchors", v1, a.Environment, a.Version, len(a.Certificates()))
	}
	if info, err := os.Stat(v1); err != nil || info.Mode().Perm() != 0o644 {
		t.Fatalf("%s: %v, mode %v", v1, err, info.Mode())
	}

	show := mustKW(t, "trust", "show", "--anchors", v1)
	if !strings.Contains(show, "environment dev, version 1, 2 anchors") || !strings.Contains(show, "ecdsa-p384") {
		t.Errorf("trust show:\n%s", show)
	}

	before, _ := os.ReadFile(v1)
	replayOut := filepath.Join(r.dir, "replay.pem")
	_, stderr, code = kw(t, "trust", "apply", "--anchors", v1, "--update", r.overlap, "--out", replayOut)
	if code != ExitBadRequest || !strings.Contains(stderr, "not newer") || !strings.Contains(stderr, "(--update)") {
		t.Fatalf("replay: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(replayOut); !os.IsNotExist(err) {
		t.Fatal("a refused apply wrote its output")
	}
	// In place: --out is the input.
	out = mustKW(t, "trust", "apply", "--anchors", v1, "--update", r.retire, "--out", v1)
	if !strings.Contains(out, "version 1 -> 2") || !strings.Contains(out, "removed  CN=Keyward dev Root CA,O=Keyward Test") {
		t.Errorf("retirement output:\n%s", out)
	}
	if after, _ := os.ReadFile(v1); bytes.Equal(after, before) || readAnchorsFile(t, v1).Version != 2 {
		t.Fatal("the retirement was not written over the input")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(r.dir, ".*")); len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

// trustRefusals are refusals of 'trust apply' and 'trust show', as the golden file and TestTrustApplyRefusals
// run them, with the exit code each must give.
func trustRefusals(t *testing.T, r *rollover) []struct {
	name string
	args []string
	code int
} {
	t.Helper()
	staging := pkitest.NewRoot(t, "Keyward staging Root CA", nil)
	attacker := pkitest.NewRoot(t, "Keyward dev Root CA 2", nil)
	overlap, err := os.ReadFile(r.overlap)
	if err != nil {
		t.Fatal(err)
	}
	var msg cose.SignMessage
	if err := msg.UnmarshalCBOR(overlap); err != nil {
		t.Fatal(err)
	}
	msg.Signatures[0].Signature[4] ^= 1
	forged := r.write(t, "forged.cbor", must(msg.MarshalCBOR()))
	onlyOld := r.sign(t, "only-old.cbor", r.update("dev", 1, r.oldRoot, r.newRoot), r.oldRoot.Key)
	onlyNew := r.sign(t, "only-new.cbor", r.update("dev", 1, r.oldRoot, r.newRoot), r.newRoot.Key)
	impostor := r.sign(t, "impostor.cbor", r.update("dev", 1, attacker), attacker.Key)
	other := r.sign(t, "staging.cbor", r.update("staging", 1, staging), staging.Key)
	garbage := r.write(t, "garbage.cbor", []byte("not an update"))
	v1 := filepath.Join(r.dir, "v1.pem")
	mustKW(t, "trust", "apply", "--anchors", r.factory, "--env", "dev", "--update", r.overlap, "--out", v1)
	out := filepath.Join(r.dir, "out.pem")
	apply := func(anchors, update string, extra ...string) []string {
		return append([]string{"trust", "apply", "--anchors", anchors, "--update", update, "--out", out}, extra...)
	}
	later := time.Now().Add(31 * 24 * time.Hour).UTC().Format(time.RFC3339)
	return []struct {
		name string
		args []string
		code int
	}{
		{"forged signature", apply(r.factory, forged, "--env", "dev"), ExitDenied},
		{"signed only by the old root", apply(r.factory, onlyOld, "--env", "dev"), ExitDenied},
		{"signed only by the new root", apply(r.factory, onlyNew, "--env", "dev"), ExitDenied},
		{"a root nobody holds", apply(r.factory, impostor, "--env", "dev"), ExitDenied},
		{"replay", apply(v1, r.overlap), ExitBadRequest},
		{"another environment", apply(r.factory, other, "--env", "dev"), ExitBadRequest},
		{"expired", apply(r.factory, r.overlap, "--env", "dev", "--now", later), ExitBadRequest},
		{"garbage", apply(r.factory, garbage, "--env", "dev"), ExitBadRequest},
		{"--env disagrees with the file", apply(v1, r.retire, "--env", "staging"), ExitBadRequest},
		{"an update as the anchors file", apply(r.overlap, r.retire, "--env", "dev"), ExitBadRequest},
		{"--env that is no environment name", apply(r.factory, r.overlap, "--env", "Dev Env"), ExitBadRequest},
		{"no --env for a factory file", apply(r.factory, r.overlap), ExitUsage},
		{"no --out", []string{"trust", "apply", "--anchors", r.factory, "--update", r.overlap}, ExitUsage},
		{"no such update", apply(r.factory, filepath.Join(r.dir, "missing.cbor"), "--env", "dev"), ExitUsage},
		{"bad --now", apply(r.factory, r.overlap, "--env", "dev", "--now", "tomorrow"), ExitUsage},
		{"show without --anchors", []string{"trust", "show"}, ExitUsage},
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestTrustApplyRefusals: each refusal exits with its code, names the flag at fault where there is one, and
// writes nothing.
func TestTrustApplyRefusals(t *testing.T) {
	t.Parallel()
	r := newRollover(t)
	for _, tc := range trustRefusals(t, r) {
		factory, _ := os.ReadFile(r.factory)
		_, stderr, code := kw(t, tc.args...)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d\n%s", tc.name, code, tc.code, stderr)
		}
		if _, err := os.Stat(filepath.Join(r.dir, "out.pem")); !os.IsNotExist(err) {
			t.Fatalf("%s: a refused apply wrote its output", tc.name)
		}
		if now, _ := os.ReadFile(r.factory); !bytes.Equal(now, factory) {
			t.Fatalf("%s: the input anchors file changed", tc.name)
		}
	}
}

// TestGoldenTrust pins the --json output of 'trust show' and 'trust apply' and the refusals' exit codes and
// messages.
func TestGoldenTrust(t *testing.T) {
	t.Parallel()
	r := newRollover(t)
	var b bytes.Buffer
	run := func(args ...string) {
		stdout, stderr, code := kw(t, args...)
		fmt.Fprintf(&b, "$ keyward %s\nexit %d\n%s%s\n", normalise(strings.Join(args, " "), r.dir), code, normalise(stdout, r.dir), normalise(stderr, r.dir))
	}
	v1 := filepath.Join(r.dir, "v1.pem")
	run("trust", "show", "--anchors", r.factory, "--json")
	run("trust", "show", "--anchors", r.factory, "--env", "dev", "--json")
	run("trust", "apply", "--anchors", r.factory, "--env", "dev", "--update", r.overlap, "--out", v1, "--json")
	run("trust", "show", "--anchors", v1, "--json")
	run("trust", "apply", "--anchors", v1, "--update", r.retire, "--out", filepath.Join(r.dir, "v2.pem"), "--json")
	for _, tc := range trustRefusals(t, r) {
		run(tc.args...)
	}
	golden(t, "trust.golden", b.Bytes())
}
