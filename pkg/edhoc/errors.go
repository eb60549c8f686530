package edhoc

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Errors a caller decides on with errors.Is. Each returned error names the input and the rule it broke.
var (
	// ErrMalformed: a message is not the CBOR sequence RFC 9528 section 5 defines, or not deterministically
	// encoded (RFC 9528 section 3.1).
	ErrMalformed = errors.New("edhoc: malformed message")
	// ErrUnsupportedSuite: a cipher suite or method this package or the configuration does not offer.
	ErrUnsupportedSuite = errors.New("edhoc: unsupported cipher suite or method")
	// ErrWrongSuite: the Responder refuses the Initiator's selected cipher suite (RFC 9528 section 6.3),
	// or the Initiator received error code 2. The error is a *SuiteError carrying SUITES_R.
	ErrWrongSuite = errors.New("edhoc: wrong selected cipher suite")
	// ErrInvalidKey: an ephemeral or static public key is not a valid point, or the ECDH output is all zero.
	ErrInvalidKey = errors.New("edhoc: invalid public key")
	// ErrUnknownCredential: ID_CRED_x references a credential the verifier does not know (error code 3).
	ErrUnknownCredential = errors.New("edhoc: unknown credential referenced")
	// ErrCredential: the peer's credential is known but refused (chain, role, validity, revocation); the
	// error wraps a *CredentialError.
	ErrCredential = errors.New("edhoc: peer credential refused")
	// ErrAuthentication: Signature_or_MAC_2 or Signature_or_MAC_3 does not verify.
	ErrAuthentication = errors.New("edhoc: authentication failed")
	// ErrDecrypt: CIPHERTEXT_3 or CIPHERTEXT_4 does not decrypt under this session's keys, as for a
	// message from another session.
	ErrDecrypt = errors.New("edhoc: message does not decrypt under this session's keys")
	// ErrReplay: a message_1 the Responder has processed before, outside a retransmission of the same
	// session, or a message for a session that is finished.
	ErrReplay = errors.New("edhoc: replayed message")
	// ErrUnknownConnection: a message names a connection identifier with no session.
	ErrUnknownConnection = errors.New("edhoc: unknown connection identifier")
	// ErrState: a method was called out of the protocol's order.
	ErrState = errors.New("edhoc: call out of protocol order")
	// ErrCriticalEAD: a critical EAD item (negative label) that no hook understands (RFC 9528 section 3.8).
	ErrCriticalEAD = errors.New("edhoc: critical external authorization data not understood")
	// ErrPeer: the peer sent an EDHOC error message; the error is a *PeerError.
	ErrPeer = errors.New("edhoc: peer sent an error")
	// ErrConfig: the configuration cannot work (a key that does not fit the suite or method, a missing
	// credential).
	ErrConfig = errors.New("edhoc: invalid configuration")
)

// EDHOC error codes (RFC 9528 section 6, Figure 9).
const (
	ErrCodeUnspecified       = 1
	ErrCodeWrongSuite        = 2
	ErrCodeUnknownCredential = 3
)

// maxDiag bounds the ERR_INFO diagnostic this package sends or keeps.
const maxDiag = 128

// ErrorMessage is an EDHOC error message (RFC 9528 section 6): (ERR_CODE: int, ERR_INFO: any).
type ErrorMessage struct {
	Code int
	// Diagnostic is ERR_INFO for code 1, a text for people; it must never carry a secret.
	Diagnostic string
	// Suites is SUITES_R for code 2.
	Suites []Suite
}

// Marshal encodes the error message.
func (e *ErrorMessage) Marshal() ([]byte, error) {
	b := appendInt(nil, int64(e.Code))
	switch e.Code {
	case ErrCodeUnspecified:
		if len(e.Diagnostic) > maxDiag || !utf8.ValidString(e.Diagnostic) {
			return nil, fmt.Errorf("%w: error diagnostic must be valid UTF-8 of at most %d bytes", ErrConfig, maxDiag)
		}
		b = appendTstr(b, e.Diagnostic)
	case ErrCodeWrongSuite:
		if len(e.Suites) == 0 {
			return nil, fmt.Errorf("%w: error code 2 needs SUITES_R", ErrConfig)
		}
		b = appendSuites(b, e.Suites)
	case ErrCodeUnknownCredential:
		b = append(b, cborTrue)
	default:
		return nil, fmt.Errorf("%w: error code %d is not defined by RFC 9528", ErrConfig, e.Code)
	}
	return b, nil
}

// appendSuites encodes suites: a single suite as an int, several as an array (RFC 9528 section 5.2.2).
func appendSuites(b []byte, s []Suite) []byte {
	if len(s) == 1 {
		return appendInt(b, int64(s[0]))
	}
	b = appendHead(b, majorArray, uint64(len(s)))
	for _, x := range s {
		b = appendInt(b, int64(x))
	}
	return b
}

// readSuites decodes suites: an int, or an array of at least two ints.
func (d *decoder) suites(what string) []Suite {
	if d.peek() == majorArray {
		_, n := d.head(what)
		if d.err == nil && (n < 2 || n > 16) {
			d.fail("%s: an array of %d cipher suites (2 to 16; a single suite is encoded as an int)", what, n)
		}
		var s []Suite
		for i := uint64(0); i < n && d.err == nil; i++ {
			s = append(s, Suite(d.suiteInt(what)))
		}
		return s
	}
	return []Suite{Suite(d.suiteInt(what))}
}

func (d *decoder) suiteInt(what string) int64 {
	v := d.integer(what)
	if d.err == nil && (v < -65536 || v > 65535) {
		d.fail("%s: cipher suite %d out of range", what, v)
	}
	return v
}

// ParseError decodes an EDHOC error message. ERR_INFO of an unknown code is skipped, not interpreted.
func ParseError(msg []byte) (*ErrorMessage, error) {
	if len(msg) > maxMessage {
		return nil, fmt.Errorf("%w: error message of %d bytes exceeds %d", ErrMalformed, len(msg), maxMessage)
	}
	d := newDecoder(msg)
	e := &ErrorMessage{Code: int(d.integer("ERR_CODE"))}
	switch {
	case d.err != nil:
	case e.Code == ErrCodeUnspecified:
		if d.peek() != majorText {
			d.fail("ERR_INFO of error code 1 must be a text string")
			break
		}
		_, n := d.head("ERR_INFO")
		t := d.take(n, "ERR_INFO")
		if d.err == nil && !utf8.Valid(t) {
			d.fail("ERR_INFO is not valid UTF-8")
		}
		if len(t) > maxDiag {
			t = t[:maxDiag]
		}
		e.Diagnostic = string(t)
	case e.Code == ErrCodeWrongSuite:
		e.Suites = d.suites("SUITES_R")
	case e.Code == ErrCodeUnknownCredential:
		if d.done() || d.b[d.off] != cborTrue {
			d.fail("ERR_INFO of error code 3 must be true")
		}
		d.off++
	case e.Code == 0:
		d.fail("ERR_CODE 0 is reserved")
	default:
		d.skip("ERR_INFO", 0)
	}
	d.end("error message")
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}

// PeerError is an error message received from the peer.
type PeerError struct{ Message *ErrorMessage }

func (e *PeerError) Error() string {
	switch e.Message.Code {
	case ErrCodeWrongSuite:
		return fmt.Sprintf("edhoc: peer refused the selected cipher suite; it supports %v", e.Message.Suites)
	case ErrCodeUnknownCredential:
		return "edhoc: peer does not know the credential ID_CRED_I referenced"
	}
	return fmt.Sprintf("edhoc: peer sent error code %d: %q", e.Message.Code, e.Message.Diagnostic)
}

// Unwrap makes errors.Is(err, ErrPeer) true, and ErrWrongSuite for code 2.
func (e *PeerError) Unwrap() []error {
	if e.Message.Code == ErrCodeWrongSuite {
		return []error{ErrPeer, ErrWrongSuite}
	}
	return []error{ErrPeer}
}

// SuiteError is the Responder's refusal of SUITES_I; Reply is the error message to send.
type SuiteError struct {
	Selected  Suite
	Supported []Suite
}

func (e *SuiteError) Error() string {
	return fmt.Sprintf("edhoc: selected cipher suite %d refused: it is not the Initiator's most preferred suite the Responder supports (Responder supports %v)", int(e.Selected), e.Supported)
}

// Unwrap makes errors.Is(err, ErrWrongSuite) true.
func (e *SuiteError) Unwrap() error { return ErrWrongSuite }

// CredentialError says why a verifier refused a peer's credential.
type CredentialError struct {
	// Subject names the credential (certificate subject and serial, or kid).
	Subject string
	// Reason is one of ErrUntrusted, ErrRole, ErrRevoked, ErrExpired, ErrKeyUsage.
	Reason error
	// Detail says which rule, for people.
	Detail string
}

// Reasons a CredentialError carries.
var (
	ErrUntrusted = errors.New("does not chain to a trust anchor")
	ErrRole      = errors.New("role not accepted here")
	ErrRevoked   = errors.New("revoked")
	ErrKeyUsage  = errors.New("key not usable for this authentication method")
	ErrStale     = errors.New("revocation data is stale")
)

func (e *CredentialError) Error() string {
	return fmt.Sprintf("edhoc: peer credential %s refused: %v: %s", e.Subject, e.Reason, e.Detail)
}

// Unwrap makes errors.Is work for ErrCredential and the reason.
func (e *CredentialError) Unwrap() []error { return []error{ErrCredential, e.Reason} }

// errorReply returns the error message to send for err, with no secret and no detail an attacker could
// use to probe (RFC 9528 section 6: error messages are unprotected).
func errorReply(err error) []byte {
	var m ErrorMessage
	var se *SuiteError
	switch {
	case errors.As(err, &se):
		m = ErrorMessage{Code: ErrCodeWrongSuite, Suites: se.Supported}
	case errors.Is(err, ErrUnknownCredential):
		m = ErrorMessage{Code: ErrCodeUnknownCredential}
	case errors.Is(err, ErrMalformed):
		m = ErrorMessage{Code: ErrCodeUnspecified, Diagnostic: "malformed message"}
	case errors.Is(err, ErrReplay):
		m = ErrorMessage{Code: ErrCodeUnspecified, Diagnostic: "replayed message"}
	case errors.Is(err, ErrUnknownConnection):
		m = ErrorMessage{Code: ErrCodeUnspecified, Diagnostic: "unknown connection"}
	default:
		m = ErrorMessage{Code: ErrCodeUnspecified, Diagnostic: "authentication failed"}
	}
	b, _ := m.Marshal()
	return b
}
