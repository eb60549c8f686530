package ra

import (
	"sync/atomic"
	"time"
)

// Observer is told what the RA decided, for metrics (internal/metrics implements it). Its methods must be
// quick and must not call back into the RA.
type Observer interface {
	// Issued: a certificate was issued under profile by CA ca and its record committed (action: ActionIssue,
	// ActionEnroll, ActionReenroll, ...).
	Issued(action, profile, ca string)
	// Refused: a request was refused and the refusal audited; reason is the error kind (bad-request, ...).
	Refused(action, reason string)
	// Committed: a group-commit transaction of n requests took d, commit included.
	Committed(n int, d time.Duration)
}

// observer holds the RA's Observer, if any.
type observer struct{ p atomic.Pointer[Observer] }

func (o *observer) get() Observer {
	if p := o.p.Load(); p != nil {
		return *p
	}
	return nil
}

// SetObserver makes o the RA's observer (nil: none).
func (r *RA) SetObserver(o Observer) {
	if o == nil {
		r.obs.p.Store(nil)
		return
	}
	r.obs.p.Store(&o)
}

// issuance is a certificate recorded in a transaction, reported to the observer once the transaction commits.
type issuance struct{ action, profile, ca string }

func (r *RA) observeIssued(list []issuance) {
	o := r.obs.get()
	if o == nil {
		return
	}
	for _, i := range list {
		o.Issued(i.action, i.profile, i.ca)
	}
}
