package server

// Strict decoding of JSON request bodies. The OpenAPI document (internal/api/openapi.yaml) declares every
// request body with additionalProperties false and its required fields; the request types here carry the same
// facts in their tags (json names, `required:"true"`), and TestRequestSchemasMatchTypes holds the two equal. A
// body that breaks its schema is refused with 400 and the field it is about: an unknown field, a missing
// required one, or a value of the wrong type.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/ra"
)

// errBody prefixes every refusal of a malformed body, so a caller can tell it from a refusal of the request's
// meaning.
const errBody = "request body is not valid JSON for this endpoint"

func decodeJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return ra.Errorf(ra.KindBadRequest, "request body is larger than %d bytes", mbe.Limit)
		}
		return ra.Errorf(ra.KindBadRequest, "reading the request body: %w", err)
	}
	return decodeBody(data, v)
}

// decodeBody decodes data, a JSON object, into v, a pointer to a request struct, refusing what v's schema
// refuses.
func decodeBody(data []byte, v any) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		if err == nil {
			err = errors.New("null is not an object")
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			err = fmt.Errorf("the body must be a JSON object, not %s", te.Value)
		}
		return ra.Errorf(ra.KindBadRequest, "%s: %w", errBody, err)
	}
	fields := bodyFields(reflect.TypeOf(v).Elem())
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if _, ok := fields[k]; !ok {
			return ra.FieldErrorf(ra.KindBadRequest, k, "%s: unknown field %.64q (fields: %s)", errBody, k, strings.Join(names, ", "))
		}
	}
	for _, name := range names {
		raw, ok := obj[name]
		if fields[name].required && (!ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))) {
			hint := ""
			if h := fields[name].hint; h != "" {
				hint = ": " + h
			}
			return ra.FieldErrorf(ra.KindBadRequest, name, "request body: %q is required%s", name, hint)
		}
	}
	// Each field on its own, so that a refusal names it.
	dst := reflect.ValueOf(v).Elem()
	for _, k := range keys {
		f := fields[k]
		if err := checkTime(dst.FieldByIndex(f.index).Type(), obj[k]); err != nil {
			return ra.FieldErrorf(ra.KindBadRequest, k, "request body: %q: %v", k, err)
		}
		if err := json.Unmarshal(obj[k], dst.FieldByIndex(f.index).Addr().Interface()); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return ra.FieldErrorf(ra.KindBadRequest, k, "request body: %q must be %s, not %s", k, jsonKind(dst.FieldByIndex(f.index).Type()), te.Value)
			}
			return ra.FieldErrorf(ra.KindBadRequest, k, "request body: %q: %w", k, err)
		}
	}
	return nil
}

// rfc3339 is the date-time of RFC 3339 section 5.6, as the document's format date-time has it. Go's time
// parser also takes a one-digit hour, which the document refuses; so do we.
var rfc3339 = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$`)

var timeType = reflect.TypeFor[time.Time]()

// checkTime refuses a time field whose value is a string but not an RFC 3339 date-time.
func checkTime(t reflect.Type, raw json.RawMessage) error {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != timeType {
		return nil
	}
	// A value that is not a string is left to the decoder, which names its type.
	var s string
	if json.Unmarshal(raw, &s) == nil && !rfc3339.MatchString(s) {
		return fmt.Errorf("%.40q is not an RFC 3339 date-time, e.g. 2031-03-14T15:09:26Z", s)
	}
	return nil
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		if t.PkgPath() == "time" {
			return "an RFC 3339 time string"
		}
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct:
		if t.PkgPath() == "time" && t.Name() == "Time" {
			return "an RFC 3339 time string"
		}
		return "an object"
	}
	return "a " + t.Kind().String()
}

// bodyField is a field of a request struct: where it is, and whether the body must have it.
type bodyField struct {
	index    []int
	required bool
	hint     string // what a missing required field should hold (tag `hint`)
}

// bodyFields returns the JSON fields of struct type t (embedded structs' fields included) and whether each is
// required (tag `required:"true"`).
func bodyFields(t reflect.Type) map[string]bodyField {
	out := map[string]bodyField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range bodyFields(f.Type) {
				out[k] = bodyField{index: append([]int{i}, v.index...), required: v.required, hint: v.hint}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = bodyField{index: []int{i}, required: f.Tag.Get("required") == "true", hint: f.Tag.Get("hint")}
	}
	return out
}
