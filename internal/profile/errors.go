package profile

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Kinds of error. Every error from this package is an *Error whose Kind is one of these, so a caller tells
// them apart with errors.Is and maps them to an HTTP status and CLI exit code:
//
//	ErrInvalidProfile  a profile file is wrong: operator configuration error (refuse to start; exit code 78)
//	ErrBadCSR          the CSR is malformed, too large or fails proof of possession (HTTP 400)
//	ErrBadKey          the CSR's key is weak or malformed (HTTP 400); also matches goodkey.ErrBadKey
//	ErrPolicy          the CSR is well formed but the profile does not allow what it asks for (HTTP 400)
//	ErrForbidden       the requesting principal's role may not use the profile (HTTP 403)
//	ErrIssuer          the issuer cannot issue under this profile, e.g. the certificate would outlive the
//	                   issuing CA: an operator must act, the requester cannot fix it (HTTP 500)
var (
	ErrInvalidProfile = errors.New("invalid profile")
	ErrBadCSR         = errors.New("bad CSR")
	ErrBadKey         = errors.New("bad CSR key")
	ErrPolicy         = errors.New("request not allowed by profile")
	ErrForbidden      = errors.New("principal may not use profile")
	ErrIssuer         = errors.New("issuer cannot issue under profile")
)

// Error is the error type of this package. Its message is written for the person who must fix the input:
// it names the input, the rule and, where it helps, the fix.
type Error struct {
	// Kind is one of the Err* values above; errors.Is(err, Kind) holds.
	Kind error
	// Profile names the profile concerned, if any.
	Profile string
	// Field is the YAML path of the offending field ("sans.dns.max") for ErrInvalidProfile, else empty.
	Field string
	// Line is the 1-based YAML line of Field, or 0 if unknown.
	Line int
	// Msg describes the problem.
	Msg string
	// Err is the underlying cause, if any (for example a goodkey refusal).
	Err error
}

// Error returns the message. For a profile error it reads
// `profile "implant-identity" field validity: "15x" is not a duration (use 720h, 90d or 15y) (line 7)`.
func (e *Error) Error() string {
	if !errors.Is(e.Kind, ErrInvalidProfile) {
		return e.Msg
	}
	s := fmt.Sprintf("profile %q", e.Profile)
	if e.Field != "" {
		s += " field " + e.Field
	}
	s += ": " + e.Msg
	if e.Line > 0 {
		s += fmt.Sprintf(" (line %d)", e.Line)
	}
	return s
}

// Is reports whether target is e's Kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

func newErr(kind error, profile string, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Profile: profile, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// clip shortens an echoed input so that an error message stays readable and bounded.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
