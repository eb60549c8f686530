package main

// The documents' shell examples are run as written: each document's ```sh blocks, in order, as one bash script
// in a fresh directory, against the keyward built from this tree. The only rewrites are the ones a checkout
// needs and a shared machine forces:
//
//   - "go build -o keyward ./cmd/keyward" copies the binary the test built, and "go run ./cmd/keyward" runs it
//     (the directory is not a checkout), and a bare "keyward" finds it first on PATH;
//   - 127.0.0.1:8443 becomes a free port, so that the test runs beside other servers.
//
// A command that prints a refusal and exits 0 (curl without -f) is caught by what the test expects in the output.
//
// A block that is not meant to run is preceded by an HTML comment "<!-- norun: why -->" (the reason is
// required). Keep those few: every one is a line a reader may copy that no test runs.

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docBlock is a fenced shell block of a Markdown document.
type docBlock struct {
	line  int    // line of the opening fence, from 1
	text  string // the block's lines
	norun string // the reason given by a <!-- norun: ... --> comment right before the fence; "" if it runs
}

var shellFence = regexp.MustCompile("^```(sh|bash|shell)\\s*$")

// shellBlocks reads the fenced shell blocks of the Markdown document at path.
func shellBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		blocks  []docBlock
		cur     *docBlock
		comment strings.Builder
		inCmt   bool
		lastCmt = -1 // line number on which the last HTML comment ended
		lastTxt string
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case inCmt || strings.HasPrefix(line, "<!--"):
			if !inCmt {
				comment.Reset()
			}
			comment.WriteString(line + "\n")
			inCmt = !strings.Contains(line, "-->")
			if !inCmt {
				lastCmt, lastTxt = n, comment.String()
			}
		case shellFence.MatchString(line):
			cur = &docBlock{line: n}
			if lastCmt == n-1 {
				body := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(lastTxt, "<!--")), "-->"))
				if reason, ok := strings.CutPrefix(body, "norun:"); ok {
					cur.norun = strings.Join(strings.Fields(reason), " ")
					if cur.norun == "" {
						t.Errorf("%s:%d: <!-- norun: --> gives no reason", path, n)
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: the block is not closed", path, cur.line)
	}
	return blocks
}

// needTools skips the test when a tool the documents use is missing, or fails it under CI.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("KEYWARD_REQUIRE_INTEGRATION") == "1" {
				t.Fatalf("%s not found (KEYWARD_REQUIRE_INTEGRATION=1)", name)
			}
			t.Skipf("%s not found: the documents' examples use it (skipped; KEYWARD_REQUIRE_INTEGRATION=1 makes this a failure)", name)
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// runDoc runs the runnable shell blocks of the document at path (relative to the repository) as one script in a
// fresh directory and returns its output.
func runDoc(t *testing.T, bin, path string) string {
	t.Helper()
	blocks := shellBlocks(t, filepath.Join("..", "..", path))
	port := freePort(t)
	rewrite := strings.NewReplacer(
		"go build -o keyward ./cmd/keyward", `cp "$KEYWARD_BIN" keyward`,
		"go run ./cmd/keyward", "keyward",
		"127.0.0.1:8443", "127.0.0.1:"+port,
	)
	var script strings.Builder
	script.WriteString(`set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT
PS4='+ '
set -x
`)
	ran := 0
	for _, b := range blocks {
		if b.norun != "" {
			t.Logf("%s:%d not run: %s", path, b.line, b.norun)
			continue
		}
		ran++
		script.WriteString(": " + path + ":" + strconv.Itoa(b.line) + "\n" + rewrite.Replace(b.text))
	}
	if ran == 0 {
		t.Fatalf("%s has no block that runs", path)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KEYWARD_BIN="+bin, "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	// The blocks start servers in the background: on a timeout, stop the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: the examples failed: %v\n%s", path, err, tail(string(out), 6000))
	}
	if testing.Verbose() {
		t.Logf("%s: the examples' trace and output:\n%s", path, out)
	}
	return string(out)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// TestDocsRun runs README.md's and docs/enrollment.md's shell examples as written.
func TestDocsRun(t *testing.T) {
	needTools(t, "bash", "openssl", "curl", "jq")
	bin := buildKeyward(t)

	t.Run("README.md", func(t *testing.T) {
		// One data directory: the service command of "Two commands" (not run: it serves until stopped) and
		// every example use the same one.
		dataFlag := regexp.MustCompile(`--data[ =](\S+)`)
		for _, b := range shellBlocks(t, filepath.Join("..", "..", "README.md")) {
			for _, m := range dataFlag.FindAllStringSubmatch(b.text, -1) {
				if m[1] != "./kw" {
					t.Errorf("README.md:%d uses --data %s; every example uses ./kw", b.line, m[1])
				}
			}
		}
		out := runDoc(t, bin, "README.md")
		for _, want := range []string{"\ngo      go1.", `"id": "dev/demo-implant"`, "dev.pem: OK", `"subject": "CN=DEMO-00000002"`} {
			if !strings.Contains(out, want) {
				t.Errorf("README.md's examples did not print %q:\n%s", want, tail(out, 6000))
			}
		}
	})

	t.Run("docs/enrollment.md", func(t *testing.T) {
		out := runDoc(t, bin, "docs/enrollment.md")
		for _, want := range []string{"renewed DEMO-00000001", "100 enrolled, 100 renewed, 0 failed"} {
			if !strings.Contains(out, want) {
				t.Errorf("docs/enrollment.md's examples did not print %q:\n%s", want, tail(out, 6000))
			}
		}
	})
}
