package audit

import (
	"errors"
	"testing"
	"time"
)

func chain(n int) []*Event {
	var evs []*Event
	prevSeq, prev := int64(0), GenesisHash
	for i := 0; i < n; i++ {
		e := &Event{Time: time.Unix(1700000000+int64(i), 123456789), Actor: "admin", Action: "cert.issue", Subject: "s", Outcome: OutcomeSuccess, Details: map[string]string{"b": "2", "a": "1"}}
		Seal(e, prevSeq, prev)
		prevSeq, prev = e.Seq, e.Hash
		evs = append(evs, e)
	}
	return evs
}

func verify(evs []*Event) error {
	v := NewVerifier()
	for _, e := range evs {
		if err := v.Next(e); err != nil {
			return err
		}
	}
	return nil
}

func TestChain(t *testing.T) {
	if err := verify(chain(5)); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	tests := []struct {
		name   string
		mutate func([]*Event) []*Event
	}{
		{"altered detail", func(e []*Event) []*Event { e[2].Details["a"] = "x"; return e }},
		{"altered actor", func(e []*Event) []*Event { e[1].Actor = "mallory"; return e }},
		{"removed", func(e []*Event) []*Event { return append(e[:2], e[3:]...) }},
		{"reordered", func(e []*Event) []*Event { e[1], e[2] = e[2], e[1]; return e }},
		{"rehashed after alteration", func(e []*Event) []*Event { e[2].Subject = "x"; e[2].Hash = ComputeHash(e[2]); return e }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verify(tt.mutate(chain(5)))
			if !errors.Is(err, ErrChainBroken) {
				t.Fatalf("got %v, want ErrChainBroken", err)
			}
		})
	}
}

func TestHashDistinguishesFieldBoundaries(t *testing.T) {
	a := &Event{Actor: "ab", Action: "c"}
	b := &Event{Actor: "a", Action: "bc"}
	Seal(a, 0, GenesisHash)
	Seal(b, 0, GenesisHash)
	if string(a.Hash) == string(b.Hash) {
		t.Fatal("field boundaries not encoded")
	}
}
