package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// Errors a caller must tell apart (with errors.Is).
var (
	// ErrRetired: the key was destroyed or is no longer active, or its CA is no longer active; nothing was
	// signed.
	ErrRetired = errors.New("signing key is no longer usable")
	// ErrOffline: the CA's key is not held here (an offline root, or a CA row copied without its key).
	ErrOffline = errors.New("CA key is not held here")
	// ErrUnknownCA: no CA with that id.
	ErrUnknownCA = errors.New("no such CA")
)

// Config wires a Custodian.
type Config struct {
	// Keys finds signers for every key URI (the node's keystore router) and destroys keys.
	Keys keystore.Keystore
	// Soft is the software keystore: delegate keys (OCSP responder, filter signer), the server's TLS key and
	// ML-DSA keys are generated there.
	Soft keystore.Keystore
	// Store is read for CA rows and key states.
	Store store.Reader
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Custodian holds the signing keys of one process. It is safe for concurrent use.
type Custodian struct {
	cfg Config

	mu sync.Mutex
	// cas caches the issuer of each CA id and signers every opened signer by key URI; an entry leaves the cache
	// when its key or CA changes state (Invalidate). guards holds every guard ever handed out for a key URI,
	// cached or not, so that destroying the key stops each of them, wherever it is held.
	cas     map[string]*Issuer
	signers map[string]*guard
	guards  map[string][]*guard
	// signObs is told of every signature (observe.go).
	signObs signObserver
}

// New returns a Custodian.
func New(cfg Config) (*Custodian, error) {
	if cfg.Keys == nil || cfg.Soft == nil || cfg.Store == nil {
		return nil, errors.New("ca: keystore, software keystore and store are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Custodian{cfg: cfg, cas: map[string]*Issuer{}, signers: map[string]*guard{}, guards: map[string][]*guard{}}, nil
}

func (c *Custodian) now() time.Time { return c.cfg.Now().UTC() }

// guard is the only form in which a keystore signer leaves the keystore: it signs while its key is usable and
// refuses from the moment it is marked dead.
type guard struct {
	uri     string
	purpose keystore.Purpose
	signer  crypto.Signer
	dead    atomic.Pointer[string] // why it may no longer sign
	obs     *signObserver          // the custodian's, for metrics (observe.go)
	backend string                 // the keystore backend, for metrics: the URI's scheme
}

func (g *guard) Public() crypto.PublicKey { return g.signer.Public() }

func (g *guard) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if why := g.dead.Load(); why != nil {
		return nil, fmt.Errorf("key %s: %w: %s", g.uri, ErrRetired, *why)
	}
	o := g.obs.get()
	if o == nil {
		return g.signer.Sign(rand, digest, opts)
	}
	start := time.Now()
	sig, err := g.signer.Sign(rand, digest, opts)
	o(g.backend, string(g.purpose), time.Since(start), err)
	return sig, err
}

func (g *guard) kill(why string) { g.dead.CompareAndSwap(nil, &why) }

// usable says why a recorded key may not sign for its owner, or "" if it may. A key is usable while active;
// pre-activation only for the request that activates it (a CSR), never for a signature on a certificate,
// CRL or response.
func usable(k *store.Key, allowPending bool) string {
	switch {
	case k.State == store.KeyActive:
		return ""
	case k.State == store.KeyPreActivation && allowPending:
		return ""
	}
	return "its state is " + k.State
}

// signer returns a guarded signer of the key at uri for purpose. A key the glossary records must be usable (see
// usable); a key it does not record yet is one generated for a change still being made (a new CA signing its
// own certificate), which may sign. Signers of usable keys are opened once and cached; one for a pending key
// (allowPending) is opened for its one request and not kept.
func (c *Custodian) signer(ctx context.Context, uri string, purpose keystore.Purpose, allowPending bool) (*guard, error) {
	k, err := c.cfg.Store.GetKey(ctx, uri)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("key %s: %w", uri, err)
	default:
		if why := usable(k, allowPending); why != "" {
			return nil, fmt.Errorf("key %s: %w: %s", uri, ErrRetired, why)
		}
	}
	if !allowPending {
		c.mu.Lock()
		g := c.signers[uri]
		c.mu.Unlock()
		if g != nil && g.purpose == purpose && g.dead.Load() == nil {
			return g, nil
		}
	}
	s, err := c.cfg.Keys.Signer(ctx, uri, purpose)
	if err != nil {
		return nil, err
	}
	g := c.newGuard(uri, purpose, s)
	if !allowPending {
		c.mu.Lock()
		c.signers[uri] = g
		c.mu.Unlock()
	}
	return g, nil
}

// newGuard wraps s and registers the guard under uri, so that kill(uri) reaches it.
func (c *Custodian) newGuard(uri string, purpose keystore.Purpose, s crypto.Signer) *guard {
	backend, _, _ := strings.Cut(uri, ":")
	g := &guard{uri: uri, purpose: purpose, signer: s, obs: &c.signObs, backend: backend}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.guards[uri] = append(c.guards[uri], g)
	return g
}

// GenerateKey generates a key of purpose p and algorithm alg in ks (nil: the software keystore). The key is not
// recorded: the caller records it in the key glossary with the change it is for, or destroys it with Destroy
// if that change fails, so no unrecorded key lingers.
func (c *Custodian) GenerateKey(ctx context.Context, ks keystore.Keystore, p keystore.Purpose, alg keystore.Algorithm, label string) (keystore.Key, keystore.Location, error) {
	if ks == nil {
		ks = c.cfg.Soft
	}
	k, err := ks.Generate(ctx, p, alg, label)
	if err != nil {
		return keystore.Key{}, "", fmt.Errorf("generate %s key %q: %w", alg, label, err)
	}
	return k, ks.Location(), nil
}

// Destroy erases the key at uri in its keystore; every signer of it stops at once, whoever holds it.
func (c *Custodian) Destroy(ctx context.Context, uri string) error {
	c.kill(uri, "destroyed")
	return c.cfg.Keys.Destroy(ctx, uri)
}

// Abandon destroys keys generated for a change that was not recorded and returns cause, with any failure to
// destroy added to it.
func (c *Custodian) Abandon(ctx context.Context, cause error, uris ...string) error {
	for _, uri := range uris {
		if uri == "" {
			continue
		}
		if err := c.Destroy(ctx, uri); err != nil {
			cause = fmt.Errorf("%w (and destroying the unused key %s failed: %v)", cause, uri, err)
		}
	}
	return cause
}

// kill marks every signer of uri dead, wherever it is held, and drops the cached ones and the CA issuers
// signing with it.
func (c *Custodian) kill(uri, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.guards[uri] {
		g.kill(why)
	}
	delete(c.guards, uri)
	delete(c.signers, uri)
	for id, iss := range c.cas {
		if iss.ca.KeyURI == uri {
			delete(c.cas, id)
		}
	}
}

// Invalidate re-reads the state of subject (a CA id or a key URI) after a change to it: a CA no longer active
// or a key no longer usable stops signing at once, in every handle; anything else is reloaded at its next use.
// The change feed calls it for changes made by other processes; the registration authority for its own.
func (c *Custodian) Invalidate(ctx context.Context, subject string) {
	c.mu.Lock()
	iss := c.cas[subject]
	status := c.cas[statusKey(subject)]
	g := c.signers[subject]
	var byKey []*Issuer
	for _, i := range c.cas {
		if i.ca.KeyURI == subject {
			byKey = append(byKey, i)
		}
	}
	c.mu.Unlock()
	if iss != nil || status != nil {
		row, why := c.caUnusable(ctx, subject)
		if iss != nil {
			if why != "" {
				c.retire(iss, why)
			} else {
				c.drop(iss, subject)
			}
		}
		if status != nil {
			// A status handle outlives the CA's issuing (superseded, revoked), not its retirement or its key.
			switch {
			case row == nil && why == "": // unreadable: keep what was checked when it was opened
			case row != nil && signsStatus(row.Status) && !strings.HasPrefix(why, "its key"):
				c.drop(status, statusKey(subject)) // reopened, with the new state, at its next use
			default:
				status.guard.kill(why)
				c.drop(status, statusKey(subject))
			}
		}
	}
	if g != nil || len(byKey) > 0 {
		k, err := c.cfg.Store.GetKey(ctx, subject)
		why := ""
		switch {
		case errors.Is(err, store.ErrNotFound):
			why = "it is no longer in the key glossary"
		case err != nil:
			// Cannot tell: keep signing with what was checked when it was opened, and retry at the next change.
			c.cfg.Logger.WarnContext(ctx, "custodian: key state unreadable", "key", subject, "err", err)
		default:
			why = usable(k, false)
		}
		if why != "" {
			c.kill(subject, why)
		}
	}
}

// caUnusable reads CA id and its key and says why it may not issue, or "" if it may (or cannot be read). It
// returns the row it read, nil if none.
func (c *Custodian) caUnusable(ctx context.Context, id string) (*store.CA, string) {
	row, err := c.cfg.Store.GetCA(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, "it no longer exists"
	case err != nil:
		c.cfg.Logger.WarnContext(ctx, "custodian: CA state unreadable", "ca", id, "err", err)
		return nil, ""
	}
	if row.KeyURI == "" {
		return row, "its key is not held here"
	}
	k, err := c.cfg.Store.GetKey(ctx, row.KeyURI)
	if err == nil {
		if why := usable(k, false); why != "" {
			return row, "its key: " + why
		}
	}
	if row.Status != store.CAStatusActive {
		return row, stateOf(row)
	}
	return row, ""
}

// stateOf says why a CA that is not active does not issue, with the reason of a revocation.
func stateOf(row *store.CA) string {
	if row.Status == store.CAStatusRevoked {
		return fmt.Sprintf("it is revoked (%s)", store.ReasonName(row.RevocationReason))
	}
	return "it is " + row.Status
}

func (c *Custodian) retire(iss *Issuer, why string) {
	iss.guard.kill(why)
	c.drop(iss, iss.ca.ID)
}

func (c *Custodian) drop(iss *Issuer, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cas[key] == iss {
		delete(c.cas, key)
	}
}

// Changed applies changes reported by the change feed: every subject of a change to a key or a CA is
// re-checked (Invalidate).
func (c *Custodian) Changed(ctx context.Context, changes []store.Change) {
	seen := map[string]bool{}
	for _, ch := range changes {
		if !seen[ch.Subject] {
			seen[ch.Subject] = true
			c.Invalidate(ctx, ch.Subject)
		}
	}
}

// Issuer returns the signing handle of CA id, which must be active and hold its key here: a root's key has
// purpose root-signing, every other CA's ca-signing. Handles are cached with the CA's state.
func (c *Custodian) Issuer(ctx context.Context, id string) (*Issuer, error) {
	c.mu.Lock()
	iss := c.cas[id]
	c.mu.Unlock()
	if iss != nil {
		return iss, nil
	}
	row, err := c.cfg.Store.GetCA(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("CA %s: %w", id, ErrUnknownCA)
	} else if err != nil {
		return nil, fmt.Errorf("CA %s: %w", id, err)
	}
	if row.Status != store.CAStatusActive {
		return nil, fmt.Errorf("CA %s: %w: %s", id, ErrRetired, stateOf(row))
	}
	if row.KeyURI == "" {
		return nil, fmt.Errorf("CA %s: %w (an offline root signs only in a ceremony)", id, ErrOffline)
	}
	iss, err = c.open(ctx, row)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if cur := c.cas[id]; cur != nil {
		iss = cur // opened concurrently: keep one
	} else {
		c.cas[id] = iss
	}
	c.mu.Unlock()
	return iss, nil
}

// statusKey is the cache key of a CA's status-only handle.
func statusKey(id string) string { return "status " + id }

// signsStatus reports whether a CA in status still signs the status of what it issued: an active CA, a
// superseded generation and a revoked CA do; a retired one does not.
func signsStatus(status string) bool {
	return status == store.CAStatusActive || status == store.CAStatusSuperseded || status == store.CAStatusRevoked
}

// StatusIssuer returns a handle of CA id that signs its CRLs and certifies its OCSP responders and filter
// signers, and nothing else: it serves a CA that is active, superseded by its next generation or revoked, for
// as long as its key is usable, so that what it issued keeps an answer. Handles are cached with the CA's state.
func (c *Custodian) StatusIssuer(ctx context.Context, id string) (*Issuer, error) {
	c.mu.Lock()
	iss := c.cas[statusKey(id)]
	c.mu.Unlock()
	if iss != nil {
		return iss, nil
	}
	row, err := c.cfg.Store.GetCA(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("CA %s: %w", id, ErrUnknownCA)
	} else if err != nil {
		return nil, fmt.Errorf("CA %s: %w", id, err)
	}
	if !signsStatus(row.Status) {
		return nil, fmt.Errorf("CA %s: %w: it is %s", id, ErrRetired, row.Status)
	}
	if row.KeyURI == "" {
		return nil, fmt.Errorf("CA %s: %w (an offline root signs only in a ceremony)", id, ErrOffline)
	}
	iss, err = c.open(ctx, row)
	if err != nil {
		return nil, err
	}
	iss.statusOnly = true
	c.mu.Lock()
	if cur := c.cas[statusKey(id)]; cur != nil {
		iss = cur
	} else {
		c.cas[statusKey(id)] = iss
	}
	c.mu.Unlock()
	return iss, nil
}

// open opens a handle of CA row with a guard of its own, so that retiring the CA stops it without stopping
// other users of the key, and destroying the key stops both.
func (c *Custodian) open(ctx context.Context, row *store.CA) (*Issuer, error) {
	cert, err := x509.ParseCertificate(row.CertDER)
	if err != nil {
		return nil, fmt.Errorf("CA %s certificate: %w", row.ID, err)
	}
	g, err := c.signer(ctx, row.KeyURI, PurposeOf(row), false)
	if err != nil {
		return nil, fmt.Errorf("CA %s key: %w", row.ID, err)
	}
	cg := c.newGuard(g.uri, g.purpose, g.signer)
	is, err := issuer.New(cert, cg)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", row.ID, err)
	}
	return &Issuer{c: c, ca: row, cert: cert, guard: cg, iss: is}, nil
}

// PurposeOf is the purpose of a CA's key: root-signing for a root, ocsp-signing for a root's OCSP responder,
// ca-signing for every other CA.
func PurposeOf(ca *store.CA) keystore.Purpose {
	switch ca.Kind {
	case store.CAKindRoot:
		return keystore.PurposeRootSigning
	case store.CAKindOCSPSigner:
		return keystore.PurposeOCSPSigning
	}
	return keystore.PurposeCASigning
}

// KeystoreOf returns the keystore that holds the key at uri, to generate another key beside it (a site CA's
// export signer in the site's HSM).
func (c *Custodian) KeystoreOf(uri string) (keystore.Keystore, error) {
	if b, ok := c.cfg.Keys.(interface {
		Backend(string) (keystore.Keystore, error)
	}); ok {
		return b.Backend(uri)
	}
	if c.cfg.Keys.Handles(uri) {
		return c.cfg.Keys, nil
	}
	return nil, fmt.Errorf("no keystore holds %s", uri)
}
