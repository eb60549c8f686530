// Package kbkdftest holds the NIST CAVP KBKDF counter-mode vectors (HMAC-SHA-256, counter before the fixed
// input, 32-bit counter) for the tests of internal/kbkdf and of every keystore's PRF.
package kbkdftest

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

//go:embed KDFCTR_gen_HMAC_SHA256_BEFORE_FIXED_RLEN32.rsp
var rsp []byte

// Vector is one record of the CAVP response file: KO is the first LBits/8 bytes of counter-mode KBKDF with
// HMAC-SHA-256 under KI over FixedInput.
type Vector struct {
	Count      int
	LBits      int
	KI         []byte
	FixedInput []byte
	KO         []byte
}

// Vectors parses the embedded response file, checking that its one section is
// [PRF=HMAC_SHA256][CTRLOCATION=BEFORE_FIXED][RLEN=32_BITS] and that every record is whole.
func Vectors() ([]Vector, error) {
	var vs []Vector
	section := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(rsp))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "["):
			section[line] = true
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("CAVP line %q has no =", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k != "COUNT" && len(vs) == 0 {
			return nil, fmt.Errorf("CAVP field %s before the first COUNT", k)
		}
		var err error
		switch k {
		case "COUNT":
			n, cerr := strconv.Atoi(v)
			if cerr != nil {
				return nil, fmt.Errorf("CAVP COUNT %q: %w", v, cerr)
			}
			vs = append(vs, Vector{Count: n})
		case "L":
			vs[len(vs)-1].LBits, err = strconv.Atoi(v)
		case "KI":
			vs[len(vs)-1].KI, err = hex.DecodeString(v)
		case "FixedInputData":
			vs[len(vs)-1].FixedInput, err = hex.DecodeString(v)
		case "KO":
			vs[len(vs)-1].KO, err = hex.DecodeString(v)
		case "FixedInputDataByteLen":
		default:
			return nil, fmt.Errorf("unexpected CAVP field %q", k)
		}
		if err != nil {
			return nil, fmt.Errorf("CAVP %s: %w", k, err)
		}
	}
	for _, want := range []string{"[PRF=HMAC_SHA256]", "[CTRLOCATION=BEFORE_FIXED]", "[RLEN=32_BITS]"} {
		if !section[want] || len(section) != 3 {
			return nil, fmt.Errorf("CAVP section is %v; want %s with the counter before the fixed input, r = 32", section, want)
		}
	}
	for _, v := range vs {
		if v.LBits <= 0 || v.LBits%8 != 0 || v.LBits/8 != len(v.KO) || len(v.KI) == 0 || len(v.FixedInput) == 0 {
			return nil, fmt.Errorf("CAVP COUNT=%d is not whole: L=%d, KI %d bytes, fixed input %d bytes, KO %d bytes", v.Count, v.LBits, len(v.KI), len(v.FixedInput), len(v.KO))
		}
	}
	return vs, nil
}
