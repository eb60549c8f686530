package server

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/keyward/keyward/internal/ra"
)

// FuzzDecodeBody feeds arbitrary bytes to the strict body decoder for two request types: it must never panic;
// a refusal is a bad request with a message; a body it accepts must be one the OpenAPI document's schema
// accepts too, with every field it names known, and must decode to the same value again.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"environment":"dev","site":"s","product_lines":["demo-implant"],"quota":3,"valid_until":"2030-01-02T03:04:05Z"}`,
		`{"environment":"dev","site":"s","product_lines":null}`,
		`{"environment":"dev","site":"s","product_lines":["a"],"quota":1.5}`,
		`{"reason":"superseded","issued_from":"2026-01-01T00:00:00Z","dry_run":true,"device":"D","issuers":["dev/x"]}`,
		`{"reason":"x"} {}`, `[]`, `null`, `"s"`, `{"reason":"x","reason":1}`, "{\"reason\":\"\xff\"}", `{}`,
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	d, err := openAPI()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		var v any
		schema := "StationRequest"
		if which%2 == 0 {
			v = &StationRequest{}
		} else {
			v, schema = &BulkRevokeByRegistryRequest{}, "BulkRevokeRequest"
		}
		err := decodeBody(data, v)
		if err != nil {
			if ra.KindOf(err) != ra.KindBadRequest || err.Error() == "" {
				t.Fatalf("refusal of %q: %v (kind %v)", data, err, ra.KindOf(err))
			}
			return
		}
		var doc any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("accepted %q, which is not JSON: %v", data, err)
		}
		if err := d.doc.Components.Schemas[schema].Value.VisitJSON(doc, openapi3.EnableJSONSchema2020()); err != nil {
			t.Fatalf("accepted %q, which schema %s refuses: %v", data, schema, err)
		}
		again := reflect.New(reflect.TypeOf(v).Elem()).Interface()
		b, _ := json.Marshal(v)
		if err := decodeBody(b, again); err != nil {
			t.Fatalf("re-encoded %s refused: %v", b, err)
		}
	})
}
