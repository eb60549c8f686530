package audit

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Each successful event commits to the state changes its transaction made, so that the current state of the
// certificates, CAs, keys, devices, stations and tokens tables can be recomputed from the log alone and
// compared with the tables. A change is one detail per record changed:
//
//	state:<kind>:<id> = <field>=<value>&<field>=<value>...   (URL query encoding, fields sorted)
//
// A field set to the empty value is cleared (a certificate released from hold has no reason any more). The
// registration authority adds these details to the event of every transaction it runs, from the store writes
// themselves, so no decision can forget them.
const statePrefix = "state:"

// Kinds of recorded state, and the fields each records.
const (
	StateCert    = "cert"    // serial: issuer, subject, der_sha256, status, reason, revoked_at
	StateCA      = "ca"      // CA id: status
	StateKey     = "key"     // key URI: state
	StateDevice  = "device"  // env/product/serial: state, cert
	StateStation = "station" // station id: state
	StateToken   = "token"   // token id: role, revoked
)

// StateKinds lists the kinds in the order verification compares them.
var StateKinds = []string{StateCA, StateKey, StateCert, StateDevice, StateStation, StateToken}

// StateDetail returns the detail key and value that record fields of record id of kind.
func StateDetail(kind, id string, fields map[string]string) (string, string) {
	return statePrefix + kind + ":" + id, EncodeFields(fields)
}

// EncodeFields encodes fields canonically (sorted URL query encoding).
func EncodeFields(fields map[string]string) string {
	v := make(url.Values, len(fields))
	for k, x := range fields {
		v.Set(k, x)
	}
	return v.Encode()
}

// DecodeFields decodes EncodeFields.
func DecodeFields(s string) (map[string]string, error) {
	v, err := url.ParseQuery(s)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(v))
	for k, x := range v {
		if len(x) != 1 {
			return nil, fmt.Errorf("field %q given %d times", k, len(x))
		}
		m[k] = x[0]
	}
	return m, nil
}

// StateRecord is a record's state as the log says it is: its fields and the event that last changed it.
type StateRecord struct {
	Fields map[string]string
	Seq    int64
}

// Replay recomputes the recorded state from successful events in sequence order.
type Replay struct {
	recs map[string]map[string]*StateRecord
}

// NewReplay returns an empty replay.
func NewReplay() *Replay {
	r := &Replay{recs: map[string]map[string]*StateRecord{}}
	for _, k := range StateKinds {
		r.recs[k] = map[string]*StateRecord{}
	}
	return r
}

// Next applies the state changes e records. A detail that is not well formed is an error naming e: the log
// itself is then not what Keyward writes.
func (r *Replay) Next(e *Event) error {
	if e.Outcome != OutcomeSuccess {
		return nil
	}
	for k, v := range e.Details {
		if !strings.HasPrefix(k, statePrefix) {
			continue
		}
		kind, id, ok := strings.Cut(k[len(statePrefix):], ":")
		recs := r.recs[kind]
		if !ok || recs == nil || id == "" {
			return fmt.Errorf("event %d: state detail %q names no known record", e.Seq, k)
		}
		fields, err := DecodeFields(v)
		if err != nil {
			return fmt.Errorf("event %d: state detail %q: %w", e.Seq, k, err)
		}
		rec := recs[id]
		if rec == nil {
			rec = &StateRecord{Fields: make(map[string]string, len(fields))}
			recs[id] = rec
		}
		for f, x := range fields {
			if x == "" {
				delete(rec.Fields, f)
			} else {
				rec.Fields[f] = x
			}
		}
		rec.Seq = e.Seq
	}
	return nil
}

// Records returns the records of kind, by id.
func (r *Replay) Records(kind string) map[string]*StateRecord { return r.recs[kind] }

// Describe renders fields for a message: "revoked (keyCompromise)"-like summaries are the caller's; this lists
// field=value pairs in order.
func Describe(fields map[string]string) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + fields[k]
	}
	return strings.Join(parts, " ")
}
