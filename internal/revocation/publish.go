package revocation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// Publisher keeps every online CA's CRLs current: a complete CRL (with its empty delta) every FullInterval,
// and a delta CRL after every revocation change and every DeltaInterval. Only one node publishes at a time:
// each round runs under the store's publisher lock (a PostgreSQL advisory lock, or a lease row in SQLite);
// a node that does not get it skips the round and serves what the holder stored.
type Publisher struct {
	s      *Service
	cfg    CRLConfig
	holder string
	kick   chan struct{}
	// lastHead and nextDue let a round that has nothing to do return without reading any CRL.
	lastHead int64
	nextDue  time.Time
	// Published, if set, is called after a round that published something.
	Published func()
	// Observe, if set, is told of each CA's newest complete and delta CRL as a round finds or publishes it
	// (metrics). It must be quick.
	Observe func(c *store.PublishedCRL)
	// rootDirty asks for complete root CRLs (CAChanged).
	rootDirty atomic.Bool
	// last is the outcome of the last round (Fresh).
	last atomic.Pointer[round]
}

// NewPublisher returns a publisher with cfg.
func NewPublisher(s *Service, cfg CRLConfig) *Publisher {
	cfg.defaults()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Publisher{s: s, cfg: cfg, holder: "node-" + hex.EncodeToString(b), kick: make(chan struct{}, 1)}
}

// CAChanged asks for complete root CRLs in the next round, soon: a CA was revoked, and a root lists the CAs it
// revoked in its complete CRLs only.
func (p *Publisher) CAChanged() {
	p.rootDirty.Store(true)
	p.Kick()
}

// SignsStatus reports whether a CA in status publishes the status of what it issued: active, superseded and
// revoked CAs do, retired ones not.
func SignsStatus(status string) bool {
	return status == store.CAStatusActive || status == store.CAStatusSuperseded || status == store.CAStatusRevoked
}

// Kick asks for a publication round soon (after a revocation).
func (p *Publisher) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// PublishOnce runs one round: for each active root and issuing CA whose key this node holds, publish what is
// due. It reports whether this node held the lock.
func (p *Publisher) PublishOnce(ctx context.Context) (held bool, err error) {
	defer func() { p.last.Store(&round{at: p.s.now(), err: err}) }()
	rootDirty := p.rootDirty.Swap(false)
	if head, err := p.s.rs.RevocationHead(ctx); err == nil && head == p.lastHead && p.s.now().Before(p.nextDue) && !rootDirty {
		return true, nil
	}
	release, ok, err := p.s.lock.TryPublisherLock(ctx, p.holder)
	if err != nil || !ok {
		if rootDirty {
			p.rootDirty.Store(true) // for the round that gets the lock
		}
		return false, err
	}
	defer release()
	cas, err := p.s.rs.ListCAs(ctx)
	if err != nil {
		return true, err
	}
	head, err := p.s.rs.RevocationHead(ctx)
	if err != nil {
		return true, err
	}
	now := p.s.now()
	// After a change to a CA the responder and the served objects reload, whether or not a CRL was due.
	published := rootDirty
	var errs []error
	for _, ca := range cas {
		// A superseded generation and a revoked CA keep publishing for what they issued.
		if (ca.Kind != store.CAKindRoot && ca.Kind != store.CAKindIssuing) || !SignsStatus(ca.Status) || ca.KeyURI == "" {
			continue
		}
		// A revoked CA whose key was destroyed signs nothing any more: its last CRL is served until it expires.
		if k, err := p.s.rs.GetKey(ctx, ca.KeyURI); err == nil && k.State == store.KeyDestroyed {
			continue
		}
		full, err := p.s.rs.LatestCRL(ctx, ca.ID, false)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		if full == nil || now.Sub(full.ThisUpdate) >= p.cfg.FullInterval || (ca.Kind == store.CAKindRoot && rootDirty) {
			c, err := p.s.PublishCRLs(ctx, ca.ID, p.cfg)
			if err != nil {
				errs = append(errs, err)
			}
			p.observe(c)
			published = true
			continue
		}
		p.observe(full)
		delta, err := p.s.rs.LatestCRL(ctx, ca.ID, true)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		if delta == nil || delta.BaseNumber != full.Number || delta.MaxSeq < head || now.Sub(delta.ThisUpdate) >= p.cfg.DeltaInterval {
			c, err := p.s.PublishDelta(ctx, ca.ID, p.cfg)
			if err != nil {
				errs = append(errs, err)
			}
			p.observe(c)
			published = true
			continue
		}
		p.observe(delta)
	}
	if len(errs) == 0 {
		p.lastHead, p.nextDue = head, now.Add(p.cfg.DeltaInterval)
	}
	if published && p.Published != nil {
		p.Published()
	}
	return true, errors.Join(errs...)
}

func (p *Publisher) observe(c *store.PublishedCRL) {
	if c != nil && p.Observe != nil {
		p.Observe(c)
	}
}

// Run publishes every interval and on Kick until ctx ends. Failures are logged and retried next round.
func (p *Publisher) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := p.PublishOnce(ctx); err != nil && ctx.Err() == nil {
			p.s.log.WarnContext(ctx, "CRL publication", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
	}
}
