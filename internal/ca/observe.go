package ca

import (
	"sync/atomic"
	"time"
)

// SignObserver is told of every signature a guarded key makes (or fails to make), for metrics: the keystore
// backend (the key URI's scheme: soft, pkcs11), the key's purpose and how long the backend took.
type SignObserver func(backend, purpose string, d time.Duration, err error)

type signObserver struct{ p atomic.Pointer[SignObserver] }

func (o *signObserver) get() SignObserver {
	if p := o.p.Load(); p != nil {
		return *p
	}
	return nil
}

// SetSignObserver makes o the custodian's signature observer (nil: none).
func (c *Custodian) SetSignObserver(o SignObserver) {
	if o == nil {
		c.signObs.p.Store(nil)
		return
	}
	c.signObs.p.Store(&o)
}
