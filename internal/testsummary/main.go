package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	failOnSkip := flag.Bool("fail-on-skip", false, "exit 1 when any test skipped")
	flag.Parse()
	out := map[string]*strings.Builder{}
	var passed, failed, skipped int
	var skips []string
	buildFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			// Build errors and other non-JSON lines go straight through.
			fmt.Println(string(line))
			if strings.Contains(string(line), "build failed") || strings.HasPrefix(string(line), "FAIL") {
				buildFailed = true
			}
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			b := out[key]
			if b == nil {
				b = &strings.Builder{}
				out[key] = b
			}
			if b.Len() < 64<<10 {
				b.WriteString(e.Output)
			}
		case "pass":
			if e.Test != "" {
				passed++
			} else {
				fmt.Printf("ok   %s %.1fs\n", e.Package, e.Elapsed)
			}
			delete(out, key)
		case "skip":
			if e.Test != "" {
				skipped++
				reason := ""
				if b := out[key]; b != nil {
					reason = strings.TrimSpace(b.String())
				}
				skips = append(skips, fmt.Sprintf("SKIP %s %s\n%s", e.Package, e.Test, indent(reason)))
			} else {
				fmt.Printf("?    %s [no test files]\n", e.Package)
			}
			delete(out, key)
		case "fail":
			if e.Test != "" {
				failed++
				fmt.Printf("--- FAIL %s %s\n%s\n", e.Package, e.Test, indent(out[key].String()))
			} else {
				fmt.Printf("FAIL %s %.1fs\n", e.Package, e.Elapsed)
				if b := out[key]; b != nil {
					fmt.Print(indent(b.String()))
				}
				buildFailed = true
			}
			delete(out, key)
		}
	}
	sort.Strings(skips)
	for _, s := range skips {
		fmt.Println(s)
	}
	fmt.Printf("tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || buildFailed || (*failOnSkip && skipped > 0) {
		os.Exit(1)
	}
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
