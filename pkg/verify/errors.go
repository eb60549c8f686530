package verify

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// Errors a caller tells apart with errors.Is; every refusal is an *Error wrapping one of them.
var (
	// ErrMalformed: no certificate, or one that does not parse.
	ErrMalformed = errors.New("malformed certificate")
	// ErrUntrusted: the chain does not verify to the trust anchors.
	ErrUntrusted = errors.New("certificate not trusted")
	// ErrExpired: a certificate of the chain expired before the verifier's time minus the clock skew.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: a certificate of the chain is not valid before the verifier's time plus the clock skew.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrEKU: the leaf's extended key usages do not allow the TLS side it plays.
	ErrEKU = errors.New("certificate not allowed for this use")
	// ErrWrongPolicy: the leaf carries no Keyward role policy (or several), or a CA of its chain does not
	// carry the policy of the leaf's role.
	ErrWrongPolicy = errors.New("certificate policy not acceptable")
	// ErrWrongRole: the leaf's role is not one the verifier accepts.
	ErrWrongRole = errors.New("certificate role not acceptable")
	// ErrName: the server's certificate does not name the server the caller asked for.
	ErrName = errors.New("certificate does not name the peer")
	// ErrRevoked: the leaf or a CA of its chain is revoked.
	ErrRevoked = errors.New("certificate revoked")
	// ErrRevocationUnknown: no revocation source answered and the policy is FailClosed.
	ErrRevocationUnknown = errors.New("revocation status unknown")
)

// Error is a refusal: which check failed (Err, one of the variables above), for which certificate, and why.
type Error struct {
	Err error
	// Certificate is the certificate the check refused, if one is to blame.
	Certificate *x509.Certificate
	// Detail says what was wrong and, where the caller can act, how to fix it.
	Detail string
	// Cause is the underlying error (crypto/x509's, a revocation source's), if any.
	Cause error
}

func (e *Error) Error() string {
	s := "verify: " + e.Err.Error()
	if e.Certificate != nil {
		s += fmt.Sprintf(": %s (serial %x)", name(e.Certificate), e.Certificate.SerialNumber)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns Err and Cause, so errors.Is matches both.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

func refuse(kind error, c *x509.Certificate, cause error, format string, args ...any) *Error {
	return &Error{Err: kind, Certificate: c, Detail: fmt.Sprintf(format, args...), Cause: cause}
}

func name(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return fmt.Sprintf("%q", c.Subject.CommonName)
	}
	if len(c.DNSNames) > 0 {
		return fmt.Sprintf("%q", c.DNSNames[0])
	}
	return fmt.Sprintf("%q", c.Subject.String())
}
