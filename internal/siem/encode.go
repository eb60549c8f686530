package siem

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// Export formats.
const (
	FormatJSONL = "jsonl"
	FormatCEF   = "cef"
)

// Formats lists the export formats.
var Formats = []string{FormatJSONL, FormatCEF}

// Encoder writes audit events one line each.
type Encoder interface {
	Encode(e *audit.Event) error
}

// NewEncoder returns the encoder of format writing to w: JSON lines (the API's event view, one compact object
// per line) or CEF. version is Keyward's version, the CEF header's device version.
func NewEncoder(format string, w io.Writer, version string) (Encoder, error) {
	switch format {
	case FormatJSONL:
		return jsonEncoder{newJSON(w)}, nil
	case FormatCEF:
		return &cefEncoder{w: w, version: version}, nil
	}
	return nil, fmt.Errorf("format %.40q: use %s", format, strings.Join(Formats, " or "))
}

type jsonEncoder struct{ enc *json.Encoder }

func newJSON(w io.Writer) *json.Encoder { return json.NewEncoder(w) }

// Encode writes e as one line; encoding/json escapes control characters and invalid UTF-8, so a line never
// breaks inside an event.
func (j jsonEncoder) Encode(e *audit.Event) error { return j.enc.Encode(api.NewEvent(e)) }

// CEF (ArcSight Common Event Format, revision 25): a header of seven pipe-separated fields after "CEF:0", then
// space-separated key=value extensions. In the header a pipe and a backslash are escaped with a backslash; in an
// extension value a backslash and an equals sign are, and line breaks are written \n and \r; line breaks are
// allowed only in extension values.
type cefEncoder struct {
	w       io.Writer
	version string
	buf     strings.Builder
}

// Severities of CEF events (0 to 10).
const (
	sevSuccess     = 3
	sevDestructive = 5 // a success that takes something away: revocations, destruction, decommissioning
	sevRefused     = 6
	sevAuthRefused = 7 // the aggregated refusals of unauthenticated traffic
)

func severity(e *audit.Event) int {
	switch {
	case e.Action == audit.ActionAuthRefusals:
		return sevAuthRefused
	case e.Outcome == audit.OutcomeRefused:
		return sevRefused
	case strings.Contains(e.Action, "revoke"), strings.Contains(e.Action, "destroy"), strings.Contains(e.Action, "decommission"),
		strings.HasSuffix(e.Action, ".cancel"), strings.HasSuffix(e.Action, ".retire"):
		return sevDestructive
	}
	return sevSuccess
}

// Encode writes e as one CEF line. Standard keys carry what they name: rt (milliseconds since the epoch),
// externalId (the sequence number, the same in every delivery of the event), act, outcome, suser (the actor);
// cs1 the subject, cs2 the details (sorted key=value pairs), cs3 the event's hash.
func (c *cefEncoder) Encode(e *audit.Event) error {
	b := &c.buf
	b.Reset()
	b.WriteString("CEF:0|Keyward|Keyward|")
	b.WriteString(CEFHeader(c.version))
	b.WriteByte('|')
	b.WriteString(CEFHeader(e.Action))
	b.WriteByte('|')
	b.WriteString(CEFHeader(e.Action + " " + e.Outcome))
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(severity(e)))
	b.WriteByte('|')
	first := true
	ext := func(k, v string) {
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(CEFValue(v))
	}
	ext("rt", strconv.FormatInt(e.Time.UnixMilli(), 10))
	ext("externalId", strconv.FormatInt(e.Seq, 10))
	ext("act", e.Action)
	ext("outcome", e.Outcome)
	ext("suser", e.Actor)
	ext("cs1Label", "subject")
	ext("cs1", e.Subject)
	if len(e.Details) > 0 {
		keys := make([]string, 0, len(e.Details))
		for k := range e.Details {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + e.Details[k]
		}
		ext("cs2Label", "details")
		ext("cs2", strings.Join(parts, " "))
	}
	ext("cs3Label", "hash")
	ext("cs3", fmt.Sprintf("%x", e.Hash))
	b.WriteByte('\n')
	_, err := io.WriteString(c.w, b.String())
	return err
}

// CEFHeader escapes s for a CEF header field: backslash and pipe get a backslash; a line break, which the
// header may not hold, and any other control character or invalid byte become U+FFFD.
func CEFHeader(s string) string {
	var b strings.Builder
	for _, r := range sanitize(s) {
		switch r {
		case '\\', '|':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n', '\r':
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// CEFValue escapes s for a CEF extension value: backslash and equals sign get a backslash, line breaks are
// written \n and \r, and other control characters and invalid bytes become U+FFFD.
func CEFValue(s string) string {
	var b strings.Builder
	for _, r := range sanitize(s) {
		switch r {
		case '\\', '=':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// sanitize replaces invalid UTF-8 and control characters other than line breaks with U+FFFD: CEF has no escape
// for them, and a NUL or a terminal escape must not reach a SIEM's parser or an analyst's screen.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return r
		}
		if r == utf8.RuneError || unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
}

// errHead stops a walk at the head an export started with.
var errHead = errors.New("export reached the head")

// Export writes the events after sequence number since, up to the newest event when it starts, to w in format,
// reading them page by page (store.Reader.WalkAudit) through one buffered writer, so memory stays constant
// however long the trail. It returns the number of events written and the head it stopped at. A since past the
// head is an error of kind not-found: there is no such event, and a collector whose cursor is ahead of the log
// is reading another deployment's log, or this log lost its tail.
func Export(ctx context.Context, r store.Reader, since int64, format, version string, w io.Writer) (written, head int64, err error) {
	if since < 0 {
		return 0, 0, ra.FieldErrorf(ra.KindBadRequest, "since", "since %d: a sequence number is 0 (everything) or more", since)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc, err := NewEncoder(format, bw, version)
	if err != nil {
		return 0, 0, ra.FieldErrorf(ra.KindBadRequest, "format", "%w", err)
	}
	head, _, err = r.AuditHead(ctx)
	if err != nil {
		return 0, 0, ra.Wrap(ra.KindUnavailable, fmt.Errorf("read the audit head: %w", err))
	}
	if since > head {
		return 0, head, ra.FieldErrorf(ra.KindNotFound, "since", "since %d is past the newest audit event (%d): the log has no such event; "+
			"a collector whose cursor is ahead of the log reads another deployment's log, or this log lost its tail (check with 'keyward audit verify'); "+
			"export from %d or lower", since, head, head)
	}
	err = r.WalkAudit(ctx, since, func(e *audit.Event) error {
		if e.Seq > head {
			return errHead
		}
		if err := enc.Encode(e); err != nil {
			return err
		}
		written++
		return nil
	})
	if err != nil && !errors.Is(err, errHead) {
		return written, head, err
	}
	return written, head, bw.Flush()
}
