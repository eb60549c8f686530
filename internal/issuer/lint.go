package issuer

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3/lint"
	_ "github.com/zmap/zlint/v3/lints/rfc" // registers the RFC 5280 lints (all of them live in this package)
)

// Finding is one lint result worth reporting: a warning on an issued certificate, or a reason for refusal.
type Finding struct {
	// Lint is the zlint lint name, e.g. "w_ext_subject_key_identifier_missing_sub_cert".
	Lint string
	// Status is "warn", "error" or "fatal".
	Status string
	// Details is the lint's explanation, if it gave one.
	Details string
	// Citation is the rule the lint checks, e.g. "RFC 5280: 4.2.1.2".
	Citation string
}

// String formats the finding as "lint_name (details)".
func (f Finding) String() string {
	s := f.Lint
	if f.Details != "" {
		s += " (" + f.Details + ")"
	}
	return s
}

// ErrLint is matched by a *LintError: the certificate breaks an RFC 5280 rule and was not signed.
var ErrLint = errors.New("certificate fails lint")

// LintError lists the Error and Fatal lint results that stopped an issuance.
type LintError struct {
	Findings []Finding
}

// Error lists the failing lints by name with their details.
func (e *LintError) Error() string {
	parts := make([]string, len(e.Findings))
	for i, f := range e.Findings {
		parts[i] = f.String()
	}
	return "certificate refused by RFC 5280 lint: " + strings.Join(parts, "; ")
}

// Is matches ErrLint.
func (e *LintError) Is(target error) bool { return target == ErrLint }

// linter runs a fixed list of zlint certificate lints. zlint.LintCertificateEx looks the lints up and sorts
// every registered name on each call (about a tenth of its time); the list is resolved once here and each
// lint's Execute is called directly, with the same semantics as zlint's ResultSet.executeCertificate:
// Execute applies CheckApplies, CheckEffective and the per-lint configuration, and turns a panicking lint into
// a Fatal result.
type linter struct {
	lints  []*lint.CertificateLint
	config lint.Configuration
}

// rfc5280Linter is resolved once per process: the registry is filled by init functions and never changes
// afterwards, so the result is immutable.
var rfc5280Linter = sync.OnceValues(func() (*linter, error) {
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{lint.RFC5280}})
	if err != nil {
		return nil, fmt.Errorf("select RFC 5280 lints: %w", err)
	}
	l := &linter{config: reg.GetConfiguration()}
	lookup := reg.CertificateLints()
	for _, name := range reg.Names() { // sorted: findings come out in a stable order
		if cl := lookup.ByName(name); cl != nil { // CRL and OCSP lints are not certificate lints
			l.lints = append(l.lints, cl)
		}
	}
	if len(l.lints) == 0 {
		return nil, errors.New("no RFC 5280 certificate lints are registered")
	}
	return l, nil
})

// without returns a linter that skips the named lints; every name must be one of the RFC 5280 lints.
func (l *linter) without(names []string) (*linter, error) {
	if len(names) == 0 {
		return l, nil
	}
	for _, n := range names {
		if !slices.ContainsFunc(l.lints, func(cl *lint.CertificateLint) bool { return cl.Name == n }) {
			return nil, fmt.Errorf("ignore lint %q: not an RFC 5280 certificate lint", n)
		}
	}
	out := &linter{config: l.config}
	for _, cl := range l.lints {
		if !slices.Contains(names, cl.Name) {
			out.lints = append(out.lints, cl)
		}
	}
	return out, nil
}

// check parses der with zcrypto and runs every lint. Error and Fatal results make a *LintError; Warn
// results are returned for the caller to audit. Notice, Pass, NA and NE results are dropped.
//
// selfSigned tells the lints that der is a self-signed certificate: zcrypto decides that by verifying the
// signature with the certificate's own key, which a throwaway signature cannot pass. (The real self-signature
// is verified after signing.)
func (l *linter) check(der []byte, selfSigned bool) ([]Finding, error) {
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		return nil, &LintError{Findings: []Finding{{Lint: "zcrypto_parse", Status: "fatal", Details: err.Error()}}}
	}
	if selfSigned && bytes.Equal(c.RawSubject, c.RawIssuer) {
		c.SelfSigned = true
	}
	var warnings, failures []Finding
	for _, cl := range l.lints {
		res := cl.Execute(c, l.config)
		if res == nil {
			continue
		}
		var status string
		switch res.Status {
		case lint.Warn:
			status = "warn"
		case lint.Error:
			status = "error"
		case lint.Fatal:
			status = "fatal"
		default:
			continue
		}
		f := Finding{Lint: cl.Name, Status: status, Details: res.Details, Citation: cl.Citation}
		if res.Status == lint.Warn {
			warnings = append(warnings, f)
		} else {
			failures = append(failures, f)
		}
	}
	if len(failures) > 0 {
		return warnings, &LintError{Findings: failures}
	}
	return warnings, nil
}
