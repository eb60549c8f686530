package kbkdf

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/kbkdf/kbkdftest"
)

func TestCounterCAVP(t *testing.T) {
	vs, err := kbkdftest.Vectors()
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) < 8 {
		t.Fatalf("only %d vectors in testdata", len(vs))
	}
	lengths := map[int]bool{}
	for _, v := range vs {
		if v.LBits%8 != 0 || v.LBits/8 != len(v.KO) {
			t.Fatalf("COUNT=%d: L=%d does not match KO of %d bytes", v.Count, v.LBits, len(v.KO))
		}
		lengths[v.LBits] = true
		got, err := Counter(HMACSHA256(v.KI), v.FixedInput, v.LBits/8)
		if err != nil {
			t.Fatalf("COUNT=%d: %v", v.Count, err)
		}
		if !bytes.Equal(got, v.KO) {
			t.Errorf("COUNT=%d L=%d: got %x, want %x", v.Count, v.LBits, got, v.KO)
		}
	}
	// One block cut short, exactly one block, one and a bit, two blocks cut short.
	for _, l := range []int{128, 160, 256, 320} {
		if !lengths[l] {
			t.Errorf("no vector with L=%d", l)
		}
	}
}

func TestCounterRefusals(t *testing.T) {
	prf := HMACSHA256(make([]byte, 32))
	for _, n := range []int{0, -1, MaxLength + 1} {
		if _, err := Counter(prf, nil, n); err == nil || !strings.Contains(err.Error(), "outside 1..") {
			t.Errorf("length %d: err = %v", n, err)
		}
	}
	boom := errors.New("token gone")
	if _, err := Counter(func([]byte) ([]byte, error) { return nil, boom }, nil, 32); !errors.Is(err, boom) {
		t.Errorf("PRF error: %v", err)
	}
	if _, err := Counter(func([]byte) ([]byte, error) { return nil, nil }, nil, 32); err == nil || !strings.Contains(err.Error(), "empty block") {
		t.Errorf("empty PRF block: %v", err)
	}
	calls := 0
	uneven := func([]byte) ([]byte, error) { calls++; return make([]byte, 16+calls), nil }
	if _, err := Counter(uneven, nil, 64); err == nil || !strings.Contains(err.Error(), "block of 18 bytes after one of 17") {
		t.Errorf("uneven PRF blocks: %v", err)
	}
}

func TestFixedInputLayout(t *testing.T) {
	got, err := FixedInput("device-link", []byte{1, 2}, 32)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("device-link\x00\x01\x02"), 0, 0, 1, 0) // [256]_32
	if !bytes.Equal(got, want) {
		t.Fatalf("FixedInput = %x, want %x", got, want)
	}
	if _, err := FixedInput("a\x00b", nil, 32); err == nil || !strings.Contains(err.Error(), "zero byte") {
		t.Fatalf("label with NUL: %v", err)
	}
}

// TestDeviceDerive recomputes a device key by hand from its documented layout.
func TestDeviceDerive(t *testing.T) {
	kdk := bytes.Repeat([]byte{0x42}, 32)
	d := Device{Purpose: "device-link", Environment: "dev", ProductLine: "demo-implant", Serial: "DEMO-00000001", KDKVersion: 2, Length: 32}
	got, err := d.Derive(HMACSHA256(kdk))
	if err != nil {
		t.Fatal(err)
	}
	var ctx []byte
	for _, s := range []string{"keyward device key v1", "dev", "demo-implant", "DEMO-00000001"} {
		ctx = binary.BigEndian.AppendUint16(ctx, uint16(len(s)))
		ctx = append(ctx, s...)
	}
	ctx = binary.BigEndian.AppendUint32(ctx, 2)
	ctx = binary.BigEndian.AppendUint32(ctx, 32)
	in := append([]byte{0, 0, 0, 1}, "device-link\x00"...)
	in = append(in, ctx...)
	in = binary.BigEndian.AppendUint32(in, 256)
	m := hmac.New(sha256.New, kdk)
	m.Write(in)
	if want := m.Sum(nil); !bytes.Equal(got, want) {
		t.Fatalf("Derive = %x, want %x", got, want)
	}
	// Every input changes the key.
	for name, e := range map[string]func(*Device){
		"purpose": func(d *Device) { d.Purpose = "device-storage" }, "environment": func(d *Device) { d.Environment = "staging" },
		"product": func(d *Device) { d.ProductLine = "demo-implanT" }, "serial": func(d *Device) { d.Serial = "DEMO-00000002" },
		"version": func(d *Device) { d.KDKVersion = 3 },
	} {
		o := d
		e(&o)
		k, err := o.Derive(HMACSHA256(kdk))
		if err != nil || bytes.Equal(k, got) {
			t.Errorf("changing the %s: key %x, err %v", name, k, err)
		}
	}
	for name, bad := range map[string]Device{
		"empty purpose": {Environment: "dev", ProductLine: "p", Serial: "s", KDKVersion: 1, Length: 32},
		"empty serial":  {Purpose: "x", Environment: "dev", ProductLine: "p", KDKVersion: 1, Length: 32},
		"version 0":     {Purpose: "x", Environment: "dev", ProductLine: "p", Serial: "s", Length: 32},
		"length 0":      {Purpose: "x", Environment: "dev", ProductLine: "p", Serial: "s", KDKVersion: 1},
		"long serial":   {Purpose: "x", Environment: "dev", ProductLine: "p", Serial: strings.Repeat("s", 1<<16), KDKVersion: 1, Length: 32},
	} {
		if _, err := bad.Derive(HMACSHA256(kdk)); err == nil {
			t.Errorf("%s: derived", name)
		}
	}
}

// FuzzDeviceContext checks that the context encoding is unambiguous: two different devices never share one.
func FuzzDeviceContext(f *testing.F) {
	f.Add("dev", "demo-implant", "DEMO-1", "dev", "demo-implan", "tDEMO-1", 1, 1)
	f.Add("dev", "a", "b", "dev", "a", "b", 1, 2)
	f.Add("de", "va", "b", "d", "eva", "b", 7, 7)
	f.Fuzz(func(t *testing.T, e1, p1, s1, e2, p2, s2 string, v1, v2 int) {
		a := Device{Purpose: "x", Environment: e1, ProductLine: p1, Serial: s1, KDKVersion: v1, Length: 32}
		b := Device{Purpose: "x", Environment: e2, ProductLine: p2, Serial: s2, KDKVersion: v2, Length: 32}
		ca, erra := a.Context()
		cb, errb := b.Context()
		if erra != nil || errb != nil {
			return
		}
		if (a == b) != bytes.Equal(ca, cb) {
			t.Fatalf("devices %+v and %+v: contexts %x and %x", a, b, ca, cb)
		}
	})
}
