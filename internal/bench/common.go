package bench

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"time"
)

// workDir returns dir, or a new temporary directory that cleanup removes.
func workDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	d, err := os.MkdirTemp("", "keyward-bench-")
	if err != nil {
		return "", nil, err
	}
	return d, func() { _ = os.RemoveAll(d) }, nil
}

// progressTo returns a printf that writes a line to w, or does nothing if w is nil.
func progressTo(w io.Writer) func(format string, args ...any) {
	return func(format string, args ...any) {
		if w != nil {
			fmt.Fprintf(w, format+"\n", args...)
		}
	}
}

// tail is the latency distribution of a load run, in milliseconds.
type tail struct {
	p50, p99, p999, max float64
	over100ms           int
}

// latencyTail sorts the per-client latencies of a run together and returns their distribution.
func latencyTail(perClient [][]time.Duration) tail {
	var all []time.Duration
	for _, l := range perClient {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return tail{}
	}
	slices.Sort(all)
	t := tail{p50: ms(all[len(all)/2]), p99: ms(all[min(len(all)-1, len(all)*99/100)]),
		p999: ms(all[min(len(all)-1, len(all)*999/1000)]), max: ms(all[len(all)-1])}
	for _, d := range all {
		if d > 100*time.Millisecond {
			t.over100ms++
		}
	}
	return t
}

// cpuProfile starts a CPU profile of the timed part into path (go tool pprof); stop ends it. An empty path
// profiles nothing.
func cpuProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close() // a diagnostic file; nothing to do about a failed close
		return nil, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close() // a diagnostic file; nothing to do about a failed close
	}, nil
}
