package audit

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxDetail is the most bytes Bound keeps of a string a caller controls (a certificate's subject, a URL path, a
// CSR's common name): a refused request must not be able to grow the audit trail by more than a few hundred bytes
// per field, whatever it sends.
const MaxDetail = 256

// Bound returns s escaped and cut to at most max bytes, for storing a string that a caller controls in an audit
// event or a log line. Printable characters are kept; a backslash becomes \\, other characters (NUL, control
// characters, line breaks, invalid UTF-8) become Go escapes (\x00, \n, \u200b), so the stored value is printable
// UTF-8 and reads back unambiguously. A cut value ends with "...(N bytes)" naming the length of s.
func Bound(s string, max int) string {
	if max < 32 {
		max = 32
	}
	clean := len(s) <= max
	if clean {
		for _, c := range s {
			if c == '\\' || c == utf8.RuneError || !unicode.IsPrint(c) {
				clean = false
				break
			}
		}
	}
	if clean {
		return s
	}
	suffix := "...(" + strconv.Itoa(len(s)) + " bytes)"
	var b strings.Builder
	for i := 0; i < len(s); {
		c, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case c == utf8.RuneError && size == 1:
			piece = `\x` + hex2(s[i])
		case c == '\\':
			piece = `\\`
		case unicode.IsPrint(c):
			piece = s[i : i+size]
		default:
			q := strconv.QuoteRune(c) // '\x00', '\n', '\u200b'
			piece = q[1 : len(q)-1]
		}
		if b.Len()+len(piece) > max-len(suffix) && (b.Len()+len(piece) > max || i+size < len(s)) {
			b.WriteString(suffix)
			return b.String()
		}
		b.WriteString(piece)
		i += size
	}
	return b.String()
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}
