package ra

import (
	"errors"
	"fmt"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// Kind classifies an error so that each face maps it once: the HTTP layer to a status, the CLI to an exit
// code. Faces never parse error strings.
type Kind int

// Error kinds.
const (
	KindInternal     Kind = iota // a fault of ours or of a backend: HTTP 500, exit 1
	KindBadRequest               // the request is malformed or breaks a rule: HTTP 400, exit 3
	KindUnauthorized             // no or unknown credentials: HTTP 401, exit 4
	KindForbidden                // known caller without the right: HTTP 403, exit 4
	KindNotFound                 // no such object: HTTP 404, exit 5
	KindConflict                 // conflicts with existing state (duplicate key, exists already): HTTP 409, exit 6
	KindUnavailable              // a backend is unreachable (HSM, database): HTTP 503, exit 7
	KindIntegrity                // stored evidence fails verification (the audit chain): HTTP 500, exit 8
)

var kindNames = [...]string{"internal", "bad-request", "unauthorized", "forbidden", "not-found", "conflict", "unavailable", "integrity"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind-%d", int(k))
}

// Error is the one error type of decisions: a kind and a message meant for the caller, which names the input
// and the rule it breaks, in the request's own terms (field names, not command-line flags), and never carries a
// secret. Field, when set, names the request field at fault, as the API spells it; the CLI maps it to its flag.
type Error struct {
	Kind  Kind
	Field string
	Err   error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of kind k.
func Errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Err: fmt.Errorf(format, args...)}
}

// FieldErrorf returns an *Error of kind k about request field field.
func FieldErrorf(k Kind, field, format string, args ...any) error {
	return &Error{Kind: k, Field: field, Err: fmt.Errorf(format, args...)}
}

// Wrap gives err kind k unless it already has one (nil stays nil).
func Wrap(k Kind, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Kind: k, Err: err}
}

// Sentinel returns an error of kind k that callers test with errors.Is, for packages whose callers must tell one
// refusal from another (a tampered export from a replayed one) while the faces map only its kind.
func Sentinel(k Kind, msg string) *Error { return &Error{Kind: k, Err: errors.New(msg)} }

// KindOf returns the kind of err: that of the first *Error in its chain, else the kind the infrastructure error
// it wraps stands for (a keystore that cannot be unsealed is unavailable, a broken audit chain is an integrity
// failure), else KindInternal.
func KindOf(err error) Kind {
	var e *Error
	switch {
	case err == nil:
		return KindInternal
	case errors.As(err, &e):
		return e.Kind
	case errors.Is(err, audit.ErrChainBroken):
		return KindIntegrity
	case errors.Is(err, keystore.ErrUnseal), errors.Is(err, keystore.ErrBackend):
		return KindUnavailable
	case errors.Is(err, keystore.ErrWrongPurpose):
		return KindForbidden
	case errors.Is(err, keystore.ErrNotFound), errors.Is(err, store.ErrNotFound), errors.Is(err, ca.ErrUnknownCA):
		return KindNotFound
	case errors.Is(err, ca.ErrRetired), errors.Is(err, ca.ErrOffline):
		return KindConflict
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrDuplicateKey):
		return KindConflict
	}
	return KindInternal
}

// FieldOf returns the request field err is about, or "".
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

func errorf(k Kind, format string, args ...any) error { return Errorf(k, format, args...) }

func wrap(k Kind, err error) error { return Wrap(k, err) }
