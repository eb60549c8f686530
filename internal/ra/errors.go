package ra

import (
	"errors"
	"fmt"
)

// Kind classifies an RA error so that front ends can map it: HTTP status, CLI exit code.
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
)

// Error is an RA error with a kind and a message meant for the caller: it names the input and the rule broken,
// and never carries a secret.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of err: the Kind of the first *Error in its chain, else KindInternal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

func errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Err: fmt.Errorf(format, args...)}
}

func wrap(k Kind, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Kind: k, Err: err}
}
