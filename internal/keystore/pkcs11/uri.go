package pkcs11

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// URI is a parsed RFC 7512 PKCS#11 URI, reduced to the attributes Keyward acts on. A configuration URI selects a
// token and says how to reach it (module-path, PIN); a key URI selects a token and an object on it.
//
// The parser is strict: attributes RFC 7512 defines but Keyward does not act on (manufacturer, model,
// library-*, slot-description, slot-manufacturer, module-name) and unknown or vendor ("x-") attributes are
// refused, so a URI never selects something broader than its author meant.
type URI struct {
	// Path attributes (RFC 7512 section 2.3), percent-decoded.

	// Token is the token label (CK_TOKEN_INFO.label), attribute "token".
	Token string
	// Serial is the token serial number (CK_TOKEN_INFO.serialNumber), attribute "serial".
	Serial string
	// SlotID is the slot (CK_SLOT_ID), attribute "slot-id"; nil when absent.
	SlotID *uint64
	// Object is the object label (CKA_LABEL), attribute "object".
	Object string
	// ID is the object identifier (CKA_ID), attribute "id"; nil when absent.
	ID []byte
	// Type is the object class, attribute "type": "public", "private", "cert", "secret-key" or "data".
	Type string

	// Query attributes (RFC 7512 section 2.3), percent-decoded.

	// ModulePath is the file name of the PKCS#11 module, attribute "module-path".
	ModulePath string
	// PINValue is the user PIN, attribute "pin-value". It is a secret: never log a URI that holds one.
	PINValue string
	// PINSource says where to read the user PIN from, attribute "pin-source": a "file:" URI or an absolute path.
	PINSource string
}

// attribute kinds.
const (
	inPath = iota
	inQuery
)

// attributes lists every RFC 7512 attribute (section 2.3) with its component and whether Keyward acts on it.
var attributes = map[string]struct {
	component int
	supported bool
}{
	"token":                {inPath, true},
	"manufacturer":         {inPath, false},
	"serial":               {inPath, true},
	"model":                {inPath, false},
	"library-manufacturer": {inPath, false},
	"library-version":      {inPath, false},
	"library-description":  {inPath, false},
	"object":               {inPath, true},
	"type":                 {inPath, true},
	"id":                   {inPath, true},
	"slot-description":     {inPath, false},
	"slot-manufacturer":    {inPath, false},
	"slot-id":              {inPath, true},
	"pin-source":           {inQuery, true},
	"pin-value":            {inQuery, true},
	"module-name":          {inQuery, false},
	"module-path":          {inQuery, true},
}

const supportedAttributes = "token, serial, slot-id, object, id, type (path); module-path, pin-value, pin-source (query)"

// ParseURI parses an RFC 7512 PKCS#11 URI such as
// "pkcs11:token=keyward;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/keyward/pin".
// Path attributes are separated by ";", query attributes by "&"; values are percent-decoded. An attribute may
// appear only once. Errors name the offending attribute but never repeat a value, since a value may be a PIN.
func ParseURI(s string) (*URI, error) {
	const scheme = "pkcs11:"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return nil, errors.New(`PKCS#11 URI must start with "pkcs11:"`)
	}
	rest := s[len(scheme):]
	path, query, hasQuery := strings.Cut(rest, "?")

	u := &URI{}
	seen := map[string]bool{}
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			if err := u.set(attr, inPath, seen); err != nil {
				return nil, err
			}
		}
	}
	if hasQuery && query != "" {
		for _, attr := range strings.Split(query, "&") {
			if err := u.set(attr, inQuery, seen); err != nil {
				return nil, err
			}
		}
	}
	return u, nil
}

func (u *URI) set(attr string, component int, seen map[string]bool) error {
	where := "path"
	if component == inQuery {
		where = "query"
	}
	if attr == "" {
		return fmt.Errorf("PKCS#11 URI has an empty attribute in its %s (doubled or trailing separator)", where)
	}
	name, raw, ok := strings.Cut(attr, "=")
	if !ok {
		// Not echoed: a mistyped attribute may be a bare PIN.
		return fmt.Errorf("PKCS#11 URI has a %s attribute without \"=\"", where)
	}
	def, known := attributes[name]
	switch {
	case !known:
		return fmt.Errorf("unknown PKCS#11 URI attribute %q; supported: %s", truncate(name), supportedAttributes)
	case !def.supported:
		return fmt.Errorf("PKCS#11 URI attribute %q is defined by RFC 7512 but not supported by Keyward; supported: %s", name, supportedAttributes)
	case def.component != component:
		want := "path (before \"?\", separated by \";\")"
		if def.component == inQuery {
			want = "query (after \"?\", separated by \"&\")"
		}
		return fmt.Errorf("PKCS#11 URI attribute %q belongs in the %s", name, want)
	case seen[name]:
		return fmt.Errorf("PKCS#11 URI attribute %q appears more than once", name)
	}
	seen[name] = true

	v, err := unescape(raw, component)
	if err != nil {
		return fmt.Errorf("PKCS#11 URI attribute %q: %w", name, err)
	}
	text := func() (string, error) {
		if !utf8.Valid(v) {
			return "", fmt.Errorf("PKCS#11 URI attribute %q is not valid UTF-8", name)
		}
		return string(v), nil
	}
	switch name {
	case "token":
		u.Token, err = text()
	case "serial":
		u.Serial, err = text()
	case "object":
		u.Object, err = text()
	case "id":
		u.ID = v
		if u.ID == nil {
			u.ID = []byte{}
		}
	case "type":
		switch t := string(v); t {
		case "public", "private", "cert", "secret-key", "data":
			u.Type = t
		default:
			err = fmt.Errorf("PKCS#11 URI attribute \"type\" is %q; want public, private, cert, secret-key or data", truncate(t))
		}
	case "slot-id":
		// pk11-slot-id = "slot-id" "=" 1*DIGIT: literal digits, not percent-encoded ones.
		if len(raw) == 0 || strings.Trim(raw, "0123456789") != "" {
			return errors.New(`PKCS#11 URI attribute "slot-id" must be a decimal number`)
		}
		n, perr := strconv.ParseUint(string(v), 10, 64)
		if perr != nil {
			var ne *strconv.NumError
			if errors.As(perr, &ne) {
				perr = ne.Err
			}
			return fmt.Errorf(`PKCS#11 URI attribute "slot-id" is out of range: %w`, perr)
		}
		u.SlotID = &n
	case "module-path":
		u.ModulePath = string(v)
	case "pin-value":
		u.PINValue = string(v)
	case "pin-source":
		u.PINSource = string(v)
	}
	return err
}

// unescape percent-decodes one attribute value, refusing characters RFC 7512 requires to be percent-encoded in
// that component.
func unescape(s string, component int) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return nil, fmt.Errorf("truncated percent-encoding at offset %d", i)
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("invalid percent-encoding at offset %d", i)
			}
			out = append(out, hi<<4|lo)
			i += 2
			continue
		}
		if !allowed(c, component) {
			return nil, fmt.Errorf("character %q at offset %d must be percent-encoded", c, i)
		}
		out = append(out, c)
	}
	return out, nil
}

// allowed reports whether c may appear unencoded in a value of the component: pk11-pchar or pk11-qchar of
// RFC 7512 section 2.3, minus pct-encoded. In the query "&" is the separator and so always encoded; in the path
// ";" is.
func allowed(c byte, component int) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case strings.IndexByte("-._~", c) >= 0: // unreserved
		return true
	case strings.IndexByte(":[]@!$'()*+,=", c) >= 0: // pk11-res-avail
		return true
	}
	if component == inPath {
		return c == '&' // pk11-path-res-avail
	}
	return c == '/' || c == '?' || c == '|' // pk11-query-res-avail
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// truncate shortens attacker-sized input before it goes into an error message.
func truncate(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// String formats u as an RFC 7512 URI, attributes in a fixed order, percent-encoding what must be. The id is
// percent-encoded byte by byte, as RFC 7512 section 2.3 recommends. String includes pin-value when set: use
// KeyURI-shaped values (no query) for anything stored or logged.
func (u *URI) String() string {
	var path, query []string
	add := func(list *[]string, name, v string, component int, all bool) {
		*list = append(*list, name+"="+escape(v, component, all))
	}
	if u.Token != "" {
		add(&path, "token", u.Token, inPath, false)
	}
	if u.Serial != "" {
		add(&path, "serial", u.Serial, inPath, false)
	}
	if u.SlotID != nil {
		path = append(path, "slot-id="+strconv.FormatUint(*u.SlotID, 10))
	}
	if u.ID != nil {
		add(&path, "id", string(u.ID), inPath, true)
	}
	if u.Object != "" {
		add(&path, "object", u.Object, inPath, false)
	}
	if u.Type != "" {
		add(&path, "type", u.Type, inPath, false)
	}
	if u.ModulePath != "" {
		add(&query, "module-path", u.ModulePath, inQuery, false)
	}
	if u.PINSource != "" {
		add(&query, "pin-source", u.PINSource, inQuery, false)
	}
	if u.PINValue != "" {
		add(&query, "pin-value", u.PINValue, inQuery, false)
	}
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

func escape(v string, component int, all bool) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		// "=" is allowed unencoded but encoding it keeps values readable by naive splitters too.
		if !all && c != '=' && allowed(c, component) {
			b.WriteByte(c)
			continue
		}
		const hexdigits = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
	return b.String()
}
