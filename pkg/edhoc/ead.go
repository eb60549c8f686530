package edhoc

import "fmt"

// EAD is one external authorization data item (RFC 9528 section 3.8): ead_label and an optional value.
// A negative label marks the item critical: a receiver that does not understand it aborts the session.
type EAD struct {
	Label int64
	// Value is ead_value; nil when the item has none.
	Value []byte
}

// Critical reports whether the item must be understood.
func (e EAD) Critical() bool { return e.Label < 0 }

// EADHooks let an application carry its own authorization data (a voucher, a remote attestation token)
// in EDHOC messages. Both are optional. A Responder calls them with its lock held: they must not call
// back into the Responder.
type EADHooks struct {
	// Send returns the items to put in message n (1 to 4), or nil.
	Send func(message int) []EAD
	// Receive is called with every item of message n but padding (label 0), in order, before the
	// message's authentication is complete for messages 1 and 2 and after it for 3 and 4; the
	// application must act on an item only once the session completes. It returns whether it understood
	// the item; an error aborts the session. A critical item it does not understand aborts the session
	// with ErrCriticalEAD; a non-critical one is ignored.
	Receive func(message int, item EAD) (understood bool, err error)
}

const eadPadding = 0

func appendEAD(b []byte, items []EAD) []byte {
	for _, e := range items {
		b = appendInt(b, e.Label)
		if e.Value != nil {
			b = appendBstr(b, e.Value)
		}
	}
	return b
}

// ead reads the EAD items that end a message, returning them and their encoding.
func (d *decoder) ead(what string) ([]EAD, []byte) {
	start := d.off
	var items []EAD
	for !d.done() {
		if p := d.peek(); p != majorUint && p != majorNeg {
			d.fail("%s: ead_label must be an integer", what)
			break
		}
		e := EAD{Label: d.integer(what + " ead_label")}
		if d.peek() == majorBytes {
			e.Value = d.bytes(what + " ead_value")
		}
		items = append(items, e)
		if len(items) > 64 {
			d.fail("%s: more than 64 EAD items", what)
		}
	}
	return items, d.b[start:d.off]
}

// receiveEAD hands items to the hook and enforces criticality.
func (h *EADHooks) receive(message int, items []EAD) error {
	for _, e := range items {
		if e.Label == eadPadding {
			continue
		}
		understood := false
		if h.Receive != nil {
			var err error
			if understood, err = h.Receive(message, e); err != nil {
				return fmt.Errorf("EAD_%d item %d: %w", message, e.Label, err)
			}
		}
		if !understood && e.Critical() {
			return fmt.Errorf("%w: EAD_%d carries critical item %d", ErrCriticalEAD, message, e.Label)
		}
	}
	return nil
}

func (h *EADHooks) send(message int) []EAD {
	if h.Send == nil {
		return nil
	}
	return h.Send(message)
}
