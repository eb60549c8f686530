package revocation

import (
	"context"
	"log/slog"
	"time"

	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// Locker elects the one node that publishes CRLs among all nodes sharing the database (store.Store).
type Locker interface {
	TryPublisherLock(ctx context.Context, holder string) (release func(), ok bool, err error)
}

// Service publishes the revocation data of one node. It is safe for concurrent use.
type Service struct {
	ra   *ra.RA
	ca   *ca.Custodian
	rs   store.Reader
	lock Locker
	log  *slog.Logger
}

// New returns the revocation publisher over r (decisions, records, the store reader), c (signatures) and lock.
func New(r *ra.RA, c *ca.Custodian, lock Locker) *Service {
	return &Service{ra: r, ca: c, rs: r.Reader(), lock: lock, log: r.Logger()}
}

// Reader returns the store reader the service publishes from.
func (s *Service) Reader() store.Reader { return s.rs }

func (s *Service) now() time.Time { return s.ra.Now() }
