package siem

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
)

// hostile is an event whose every string tries to break a line format.
func hostile() *audit.Event {
	return &audit.Event{
		Seq: 42, Time: time.Date(2026, 12, 5, 10, 0, 0, 123_000_000, time.UTC),
		Actor:   "station:a|b\\c=d",
		Action:  "est.enroll",
		Subject: "DEMO\x00-1\nCEF:0|Evil|Evil|1|x|injected|10|src=1.2.3.4",
		Outcome: audit.OutcomeRefused,
		Details: map[string]string{"reason": "CN a=b\\c\r\nd", "path": "/x|y", "bad": "\xff\x1b[31m"},
		Hash:    []byte{0xab, 0xcd},
	}
}

// parseCEF splits a CEF line by its escaping rules: seven header fields on unescaped pipes, then extension keys
// at unescaped '=' preceded by a space-separated key.
func parseCEF(t *testing.T, line string) ([]string, map[string]string) {
	t.Helper()
	var header []string
	var cur strings.Builder
	i := 0
	for ; i < len(line) && len(header) < 7; i++ {
		switch c := line[i]; c {
		case '\\':
			i++
			cur.WriteByte(line[i])
		case '|':
			header = append(header, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if len(header) != 7 {
		t.Fatalf("CEF header has %d fields: %q", len(header), line)
	}
	ext := map[string]string{}
	rest := line[i:]
	// Extension: key=value pairs; a value runs to the next " key=" with an unescaped '='.
	var key string
	var val strings.Builder
	start := 0
	flush := func() {
		if key != "" {
			ext[key] = strings.TrimRight(val.String(), " ")
		}
		val.Reset()
	}
	for j := 0; j < len(rest); j++ {
		c := rest[j]
		switch {
		case c == '\\' && j+1 < len(rest):
			j++
			switch rest[j] {
			case 'n':
				val.WriteByte('\n')
			case 'r':
				val.WriteByte('\r')
			default:
				val.WriteByte(rest[j])
			}
		case c == '=':
			// The key is the last word written to val (or the whole of it at the start).
			s := val.String()
			k := s
			if sp := strings.LastIndexByte(s, ' '); sp >= 0 {
				k = s[sp+1:]
				val.Reset()
				val.WriteString(s[:sp])
			} else {
				val.Reset()
			}
			flush()
			key = k
			_ = start
		default:
			val.WriteByte(c)
		}
	}
	flush()
	return header, ext
}

func TestCEFHostile(t *testing.T) {
	var buf bytes.Buffer
	enc, err := NewEncoder(FormatCEF, &buf, "1.2|3")
	if err != nil {
		t.Fatal(err)
	}
	e := hostile()
	if err := enc.Encode(e); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("one event is not one line: %q", out)
	}
	if strings.ContainsAny(out, "\x00\x1b\r") || !utf8.ValidString(out) {
		t.Fatalf("control characters or invalid UTF-8 reached the output: %q", out)
	}
	header, ext := parseCEF(t, strings.TrimSuffix(out, "\n"))
	want := []string{"CEF:0", "Keyward", "Keyward", "1.2|3", "est.enroll", "est.enroll refused", "6"}
	for i := range want {
		if header[i] != want[i] {
			t.Fatalf("header %d = %q, want %q (%q)", i, header[i], want[i], out)
		}
	}
	if ext["externalId"] != "42" || ext["rt"] != "1796464800123" || ext["suser"] != e.Actor || ext["act"] != "est.enroll" || ext["outcome"] != "refused" {
		t.Fatalf("extensions %q", ext)
	}
	if ext["cs1"] != "DEMO\uFFFD-1\nCEF:0|Evil|Evil|1|x|injected|10|src=1.2.3.4" {
		t.Fatalf("subject %q", ext["cs1"])
	}
	if _, injected := ext["src"]; injected {
		t.Fatal("a subject injected an extension key")
	}
	if !strings.Contains(ext["cs2"], "reason=CN a=b\\c\r\nd") || !strings.Contains(ext["cs2"], "path=/x|y") || ext["cs3"] != "abcd" {
		t.Fatalf("details %q", ext["cs2"])
	}
}

func TestCEFEscaping(t *testing.T) {
	for in, want := range map[string]string{`a|b`: `a\|b`, `a\b`: `a\\b`, "a\nb": "a\uFFFDb", "a=b": "a=b", "a\x00": "a\uFFFD"} {
		if got := CEFHeader(in); got != want {
			t.Errorf("CEFHeader(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{`a|b`: `a|b`, `a\b`: `a\\b`, "a\nb\r": `a\nb\r`, "a=b": `a\=b`, "\xff": "\uFFFD"} {
		if got := CEFValue(in); got != want {
			t.Errorf("CEFValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCEF(f *testing.F) {
	f.Add("a|b", "c=d\\", "e\nf")
	f.Fuzz(func(t *testing.T, actor, subject, detail string) {
		var buf bytes.Buffer
		enc, _ := NewEncoder(FormatCEF, &buf, "v")
		e := &audit.Event{Seq: 1, Actor: actor, Action: "a.b", Subject: subject, Outcome: "success", Details: map[string]string{"k": detail}}
		if err := enc.Encode(e); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if strings.Count(out, "\n") != 1 || strings.ContainsAny(out, "\r\x00") || !utf8.ValidString(out) {
			t.Fatalf("not one clean line: %q", out)
		}
		header, ext := parseCEF(t, strings.TrimSuffix(out, "\n"))
		// A value's trailing spaces cannot be told from the separator before the next key (CEF has no escape
		// for a space); consumers trim them.
		trim := func(s string) string { return strings.TrimRight(sanitize(s), " ") }
		if header[4] != "a.b" || ext["externalId"] != "1" || ext["suser"] != trim(actor) || ext["cs1"] != trim(subject) {
			t.Fatalf("round trip: header %q ext %q", header, ext)
		}
	})
}

func TestJSONLHostile(t *testing.T) {
	var buf bytes.Buffer
	enc, _ := NewEncoder(FormatJSONL, &buf, "v")
	if err := enc.Encode(hostile()); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("one event is not one line: %q", buf.String())
	}
	var got api.Event
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Seq != 42 || got.Subject != hostile().Subject || got.Hash != "abcd" {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestUnknownFormat(t *testing.T) {
	if _, err := NewEncoder("xml", &bytes.Buffer{}, "v"); err == nil || !strings.Contains(err.Error(), "jsonl or cef") {
		t.Fatalf("unknown format: %v", err)
	}
}
