package pkcs11

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func u64(n uint64) *uint64 { return &n }

func TestParseURI(t *testing.T) {
	tests := []struct {
		in   string
		want URI
	}{
		{"pkcs11:", URI{}},
		{"PKCS11:token=a", URI{Token: "a"}}, // the scheme is case-insensitive (RFC 3986 section 3.1)
		{"pkcs11:token=keyward-test?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path/pin",
			URI{Token: "keyward-test", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "file:/path/pin"}},
		{"pkcs11:token=keyward-test?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
			URI{Token: "keyward-test", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINValue: "1234"}},
		{"pkcs11:slot-id=806712778", URI{SlotID: u64(806712778)}},
		{"pkcs11:serial=DECC0401648;id=%01%02%aB", URI{Serial: "DECC0401648", ID: []byte{1, 2, 0xab}}},
		{"pkcs11:token=My%20token%25%3B;object=keyward:ca-signing:00ff;type=private",
			URI{Token: "My token%;", Object: "keyward:ca-signing:00ff", Type: "private"}},
		// RFC 7512 section 2.3: "&" may stand unencoded in the path, "/", "?" and "|" in the query.
		{"pkcs11:object=a&b=c?pin-value=x/y?z|w", URI{Object: "a&b=c", PINValue: "x/y?z|w"}},
		{"pkcs11:id=", URI{ID: []byte{}}},
		{"pkcs11:token=a?", URI{Token: "a"}},
	}
	for _, tt := range tests {
		got, err := ParseURI(tt.in)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("ParseURI(%q) = %+v; want %+v", tt.in, *got, tt.want)
		}
	}
}

func TestParseURIErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `must start with "pkcs11:"`},
		{"soft:0011", `must start with "pkcs11:"`},
		{"pkcs11", `must start with "pkcs11:"`},
		{"pkcs11:token=a;;object=b", "empty attribute in its path"},
		{"pkcs11:token=a;", "empty attribute in its path"},
		{"pkcs11:token=a?pin-value=1&&module-path=/x", "empty attribute in its query"},
		{"pkcs11:token", `without "="`},
		{"pkcs11:token=a?1234", `without "="`},
		{"pkcs11:tokn=a", `unknown PKCS#11 URI attribute "tokn"`},
		{"pkcs11:x-vendor=a", `unknown PKCS#11 URI attribute "x-vendor"`},
		{"pkcs11:Token=a", `unknown PKCS#11 URI attribute "Token"`},
		{"pkcs11:model=SoftHSM", `"model" is defined by RFC 7512 but not supported`},
		{"pkcs11:token=a?module-name=softhsm2", `"module-name" is defined by RFC 7512 but not supported`},
		{"pkcs11:module-path=/x.so", `"module-path" belongs in the query`},
		{"pkcs11:pin-value=1234", `"pin-value" belongs in the query`},
		{"pkcs11:?token=a", `"token" belongs in the path`},
		{"pkcs11:token=a;token=b", `"token" appears more than once`},
		{"pkcs11:?pin-value=1&pin-value=2", `"pin-value" appears more than once`},
		{"pkcs11:id=%0", "truncated percent-encoding"},
		{"pkcs11:id=%", "truncated percent-encoding"},
		{"pkcs11:id=%zz", "invalid percent-encoding"},
		{"pkcs11:token=a b", `character ' ' at offset 1 must be percent-encoded`},
		{"pkcs11:token=a/b", `character '/' at offset 1 must be percent-encoded`},
		{"pkcs11:token=a?pin-value=x;y", `character ';' at offset 1 must be percent-encoded`},
		{"pkcs11:token=\xff", `must be percent-encoded`},
		{"pkcs11:token=%ff", "not valid UTF-8"},
		{"pkcs11:slot-id=", `"slot-id" must be a decimal number`},
		{"pkcs11:slot-id=-1", `"slot-id" must be a decimal number`},
		{"pkcs11:slot-id=%31", `"slot-id" must be a decimal number`},
		{"pkcs11:slot-id=99999999999999999999999", `"slot-id" is out of range`},
		{"pkcs11:type=key", `"type" is "key"`},
	}
	for _, tt := range tests {
		_, err := ParseURI(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseURI(%q) = %v; want an error containing %q", tt.in, err, tt.want)
		}
	}
}

// TestParseURIErrorsHidePIN: a PIN must not reach an error message, wherever the mistake is.
func TestParseURIErrorsHidePIN(t *testing.T) {
	const pin = "S3CR3T-PIN-4711"
	for _, in := range []string{
		"pkcs11:token=a?pin-value=" + pin + "&pin-value=" + pin,
		"pkcs11:token=a?" + pin,
		"pkcs11:token=a?pin-value=" + pin + "%zz",
		"pkcs11:token=a?pin-value=" + pin + " x",
		"pkcs11:token=a?pin-value=" + pin + ";",
		"pkcs11:pin-value=" + pin,
		"pkcs11:token=a?pin-source=" + pin + "%",
	} {
		_, err := ParseURI(in)
		if err == nil {
			t.Errorf("ParseURI(%q) succeeded", in)
		} else if strings.Contains(err.Error(), pin) || strings.Contains(err.Error(), "S3CR3T") {
			t.Errorf("ParseURI(%q) error shows the PIN: %v", in, err)
		}
	}
}

func TestURIString(t *testing.T) {
	u := URI{Token: "keyward test", ID: []byte{0x8f, 0x00, 'a'}, Object: "keyward:ca-signing:8f0061"}
	want := "pkcs11:token=keyward%20test;id=%8F%00%61;object=keyward:ca-signing:8f0061"
	if got := u.String(); got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
	back, err := ParseURI(want)
	if err != nil || !reflect.DeepEqual(*back, u) {
		t.Errorf("ParseURI(String()) = %+v, %v; want %+v", back, err, u)
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:",
		"pkcs11:token=keyward-test?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path/pin",
		"pkcs11:token=keyward-test?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
		"pkcs11:token=t;id=%01%02;object=keyward:ca-signing:0102;type=private",
		"pkcs11:slot-id=7;serial=abc%20def",
		"pkcs11:object=a&b?pin-value=x/y?z|w",
		"pkcs11:id=%zz",
		"pkcs11:token=a;;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if u != nil {
				t.Fatalf("ParseURI(%q) returned a URI and an error", s)
			}
			return
		}
		// Whatever parses must format to a URI that parses back to the same value.
		out := u.String()
		back, err := ParseURI(out)
		if err != nil {
			t.Fatalf("ParseURI(%q) ok, but its String() %q does not parse: %v", s, out, err)
		}
		if !reflect.DeepEqual(u, back) {
			t.Fatalf("round trip of %q via %q: %+v != %+v", s, out, u, back)
		}
		if again := back.String(); again != out {
			t.Fatalf("String() is not stable: %q then %q", out, again)
		}
		if u.ID != nil && !bytes.Equal(u.ID, back.ID) {
			t.Fatalf("id changed in round trip")
		}
	})
}
