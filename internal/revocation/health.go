package revocation

import (
	"fmt"
	"time"
)

// round is the outcome of one publication round.
type round struct {
	at  time.Time
	err error
}

// Fresh reports nil while the publisher keeps up: its last round ended without error less than within ago
// (a round runs every interval and on every revocation, so three intervals is a generous bound). A round in
// which another node held the publisher lock counts: that node publishes. It says why otherwise.
func (p *Publisher) Fresh(now time.Time, within time.Duration) error {
	r := p.last.Load()
	switch {
	case r == nil:
		return fmt.Errorf("no publication round has run yet")
	case r.err != nil:
		return fmt.Errorf("last publication round at %s failed: %w", r.at.UTC().Format(time.RFC3339), r.err)
	case now.Sub(r.at) > within:
		return fmt.Errorf("last publication round ended at %s, %s ago (bound %s)", r.at.UTC().Format(time.RFC3339), now.Sub(r.at).Round(time.Second), within)
	}
	return nil
}
