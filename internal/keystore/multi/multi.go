package multi

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/keyward/keyward/internal/keystore"
)

var _ keystore.Keystore = (*Router)(nil)

// Router is a keystore.Keystore over several backends. Signer and Destroy go to the first backend whose Handles
// accepts the URI; Generate goes to the first (default) backend. A Router is safe for concurrent use if its
// backends are.
type Router struct {
	mu       sync.RWMutex
	backends []keystore.Keystore
}

// New returns a Router over backends; the first is the default for Generate.
func New(backends ...keystore.Keystore) *Router {
	return &Router{backends: append([]keystore.Keystore(nil), backends...)}
}

// Add appends a backend, e.g. a PKCS#11 token an operator names with --keystore after the router was built.
func (r *Router) Add(b keystore.Keystore) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backends = append(r.backends, b)
}

// list returns the current backends.
func (r *Router) list() []keystore.Keystore {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.backends
}

// Backend returns the backend for uriOrSpec: the first backend whose Location equals it ("software", "pkcs11"),
// else the first whose Handles accepts it (a key URI, or a backend's configuration URI such as
// "pkcs11:token=keyward-prod"). Use it to generate a key somewhere other than the default. It returns an error
// wrapping keystore.ErrBackend when no backend matches.
func (r *Router) Backend(uriOrSpec string) (keystore.Keystore, error) {
	backends := r.list()
	for _, b := range backends {
		if string(b.Location()) == uriOrSpec {
			return b, nil
		}
	}
	for _, b := range backends {
		if b.Handles(uriOrSpec) {
			return b, nil
		}
	}
	return nil, fmt.Errorf("no configured keystore backend for %q (have %v): %w", redact(uriOrSpec), r.locations(), keystore.ErrBackend)
}

// Generate creates a key in the default backend.
func (r *Router) Generate(ctx context.Context, purpose keystore.Purpose, alg keystore.Algorithm, label string) (keystore.Key, error) {
	backends := r.list()
	if len(backends) == 0 {
		return keystore.Key{}, fmt.Errorf("generate key: no keystore backend configured: %w", keystore.ErrBackend)
	}
	return backends[0].Generate(ctx, purpose, alg, label)
}

// Signer returns a signer from the backend that handles uri; a URI no backend handles is keystore.ErrNotFound.
func (r *Router) Signer(ctx context.Context, uri string, purpose keystore.Purpose) (crypto.Signer, error) {
	b, err := r.route(uri)
	if err != nil {
		return nil, err
	}
	return b.Signer(ctx, uri, purpose)
}

// Destroy destroys the key in the backend that handles uri; a URI no backend handles is keystore.ErrNotFound.
func (r *Router) Destroy(ctx context.Context, uri string) error {
	b, err := r.route(uri)
	if err != nil {
		return err
	}
	return b.Destroy(ctx, uri)
}

// Handles reports whether any backend handles uri.
func (r *Router) Handles(uri string) bool {
	_, err := r.route(uri)
	return err == nil
}

// Location names where the default backend keeps keys.
func (r *Router) Location() keystore.Location {
	backends := r.list()
	if len(backends) == 0 {
		return ""
	}
	return backends[0].Location()
}

// Close closes every backend and returns their errors joined.
func (r *Router) Close() error {
	var errs []error
	for _, b := range r.list() {
		if err := b.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s keystore: %w", b.Location(), err))
		}
	}
	return errors.Join(errs...)
}

func (r *Router) route(uri string) (keystore.Keystore, error) {
	for _, b := range r.list() {
		if b.Handles(uri) {
			return b, nil
		}
	}
	return nil, fmt.Errorf("key %q: no configured keystore backend handles it (have %v): %w", redact(uri), r.locations(), keystore.ErrNotFound)
}

func (r *Router) locations() []keystore.Location {
	backends := r.list()
	locs := make([]keystore.Location, len(backends))
	for i, b := range backends {
		locs[i] = b.Location()
	}
	return locs
}

// redact drops the query of a URI before it goes into an error: a PKCS#11 configuration URI may carry pin-value.
func redact(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		return uri[:i] + "?…"
	}
	return uri
}

// PRF computes HMAC-SHA-256 under the KDK at uri in the backend that handles it; a backend without
// key-derivation keys refuses with keystore.ErrWrongPurpose.
func (r *Router) PRF(ctx context.Context, uri string, purpose keystore.Purpose, data []byte) ([]byte, error) {
	b, err := r.route(uri)
	if err != nil {
		return nil, err
	}
	k, ok := b.(keystore.KDKStore)
	if !ok {
		return nil, fmt.Errorf("key %s: the %s keystore holds no key-derivation keys: %w", redact(uri), b.Location(), keystore.ErrWrongPurpose)
	}
	return k.PRF(ctx, uri, purpose, data)
}

// GenerateKDK creates a key-derivation key in the default backend, which must hold them.
func (r *Router) GenerateKDK(ctx context.Context, purpose keystore.Purpose, label string) (keystore.Key, error) {
	backends := r.list()
	if len(backends) == 0 {
		return keystore.Key{}, fmt.Errorf("generate key-derivation key: no keystore backend configured: %w", keystore.ErrBackend)
	}
	k, ok := backends[0].(keystore.KDKStore)
	if !ok {
		return keystore.Key{}, fmt.Errorf("generate key-derivation key: the %s keystore holds none: %w", backends[0].Location(), errors.ErrUnsupported)
	}
	return k.GenerateKDK(ctx, purpose, label)
}

var _ keystore.KDKStore = (*Router)(nil)
