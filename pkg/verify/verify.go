package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/revocation/filter"
	"github.com/keyward/keyward/pkg/trust"
)

// RevocationPolicy says what to do when no revocation source can answer. There is no default: the zero value
// is refused by New, so every caller decides.
type RevocationPolicy int

const (
	// FailClosed refuses a certificate whose revocation status is unknown (ErrRevocationUnknown): for
	// relying parties that can wait for a fresh filter or a reachable responder.
	FailClosed RevocationPolicy = iota + 1
	// FailOpen accepts it and reports the reason in Result.RevocationUnknown: for a programmer at an
	// implant's side, where refusing a device over a stale filter could harm the patient.
	FailOpen
)

func (p RevocationPolicy) String() string {
	switch p {
	case FailClosed:
		return "fail-closed"
	case FailOpen:
		return "fail-open"
	}
	return fmt.Sprintf("RevocationPolicy(%d)", int(p))
}

// Revocation names the sources of revocation status and the policy for when none answers.
type Revocation struct {
	// Policy is FailClosed or FailOpen; required.
	Policy RevocationPolicy
	// Filter is a verified signed revocation filter of the environment (filter.Verify), held offline. It
	// answers exactly only for certificates of the CAs it covers: use the environment's filter (built without
	// --product) or the product line's of the peers checked. A filter past its next update (plus the clock
	// skew) answers nothing.
	Filter *filter.Filter
	// Online enables the leaf's OCSP responder, then its CRL distribution points, over HTTP.
	Online bool
	// HTTPClient fetches OCSP responses and CRLs; nil means a client with a 10-second timeout.
	HTTPClient *http.Client
}

// Options configure a Verifier.
type Options struct {
	// Anchors are the environment's root certificates: the trust anchors to pin (docs/trust-anchors.md).
	Anchors []*x509.Certificate
	// TrustStore, if set, supplies the anchors instead: the pkg/trust store the device or gateway keeps
	// current through trust-anchor updates.
	TrustStore *trust.Anchors
	// Intermediates are CA certificates that may complete a chain the peer sends incomplete (an implant
	// sends its certificate alone; its programmer holds the issuing CA).
	Intermediates []*x509.Certificate
	// Arc is the policy arc of the environment's keyward.yaml (policy_arc); empty means
	// certpolicy.DefaultArc, the demonstration arc.
	Arc string
	// Roles are the roles accepted; at least one.
	Roles []certpolicy.Role
	// Usage is the TLS side the peer plays: x509.ExtKeyUsageServerAuth when it is the server,
	// x509.ExtKeyUsageClientAuth when it is the client; x509.ExtKeyUsageAny checks no extended key usage.
	Usage x509.ExtKeyUsage
	// ClockSkew is how far the verifier's clock and the peer's may disagree: a certificate is accepted from
	// NotBefore - ClockSkew to NotAfter + ClockSkew, and a revocation filter until NextUpdate + ClockSkew.
	// 0 checks validity exactly; at most 24h.
	ClockSkew time.Duration
	// Now is the verifier's clock; nil means time.Now.
	Now func() time.Time
	// Revocation says how revocation is checked; its Policy is required.
	Revocation Revocation
	// AllowCAsWithoutPolicies accepts CA certificates that carry no certificate policies at all: those of a
	// hierarchy created before Keyward's role policies. The leaf must still carry its role's policy. A CA
	// that carries policies must always carry the leaf role's.
	AllowCAsWithoutPolicies bool
}

// MaxClockSkew bounds Options.ClockSkew: beyond a day, validity periods stop meaning anything.
const MaxClockSkew = 24 * time.Hour

// Verifier checks peer certificates; it is safe for concurrent use.
type Verifier struct {
	o        Options
	arc      certpolicy.Arc
	anchors  []*x509.Certificate
	roots    *x509.CertPool
	interCAs []*x509.Certificate
	client   *http.Client
}

// New checks opts and returns a Verifier.
func New(opts Options) (*Verifier, error) {
	v := &Verifier{o: opts}
	arc := opts.Arc
	if arc == "" {
		arc = certpolicy.DefaultArc
	}
	var err error
	if v.arc, err = certpolicy.ParseArc(arc); err != nil {
		return nil, fmt.Errorf("verify options: Arc: %w", err)
	}
	v.anchors = slices.Clone(opts.Anchors)
	if opts.TrustStore != nil {
		if len(opts.Anchors) > 0 {
			return nil, errors.New("verify options: give Anchors or TrustStore, not both")
		}
		v.anchors = opts.TrustStore.Certificates()
	}
	if len(v.anchors) == 0 {
		return nil, errors.New("verify options: no trust anchors (Anchors or TrustStore): pin the environment's root certificate")
	}
	v.roots = x509.NewCertPool()
	for _, a := range v.anchors {
		if a == nil || !a.IsCA {
			return nil, errors.New("verify options: an anchor is not a CA certificate")
		}
		v.roots.AddCert(a)
	}
	v.interCAs = slices.Clone(opts.Intermediates)
	if len(opts.Roles) == 0 {
		return nil, fmt.Errorf("verify options: Roles is empty: name the roles to accept (%v)", certpolicy.Roles())
	}
	for _, r := range opts.Roles {
		if _, err := certpolicy.ParseRole(string(r)); err != nil {
			return nil, fmt.Errorf("verify options: Roles: %w", err)
		}
	}
	switch opts.Usage {
	case x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageAny:
	default:
		return nil, fmt.Errorf("verify options: Usage %d: use x509.ExtKeyUsageServerAuth, ExtKeyUsageClientAuth or ExtKeyUsageAny", opts.Usage)
	}
	if opts.ClockSkew < 0 || opts.ClockSkew > MaxClockSkew {
		return nil, fmt.Errorf("verify options: ClockSkew %s: use 0 to %s", opts.ClockSkew, MaxClockSkew)
	}
	if opts.Revocation.Policy != FailClosed && opts.Revocation.Policy != FailOpen {
		return nil, errors.New("verify options: Revocation.Policy is not set: choose verify.FailClosed or verify.FailOpen for when no revocation source answers")
	}
	v.client = opts.Revocation.HTTPClient
	if v.client == nil {
		v.client = &http.Client{Timeout: 10 * time.Second}
	}
	return v, nil
}

// Result is what an accepted certificate proved.
type Result struct {
	// Chain is the verified chain, leaf first, anchor last.
	Chain []*x509.Certificate
	// Role is the leaf's role.
	Role certpolicy.Role
	// Revocation says which source cleared the leaf: "filter", "ocsp", "crl", or "none" for a short-lived
	// certificate that carries noRevAvail (RFC 9608); empty when RevocationUnknown is set.
	Revocation string
	// RevocationUnknown, under FailOpen, says why no source answered; the certificate was accepted anyway.
	RevocationUnknown string
}

func (v *Verifier) now() time.Time {
	if v.o.Now != nil {
		return v.o.Now()
	}
	return time.Now()
}

// Verify checks the peer's certificates: chain[0] is its certificate, the rest are the CA certificates it
// sent (any order, possibly none). Every refusal is an *Error wrapping one of the package's Err values.
func (v *Verifier) Verify(ctx context.Context, chain []*x509.Certificate) (*Result, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, refuse(ErrMalformed, nil, nil, "no certificate")
	}
	leaf := chain[0]
	now := v.now()
	chains, err := v.verifyChain(leaf, chain[1:], now)
	if err != nil {
		return nil, err
	}
	// A leaf that is itself a CA certificate plays no role (it would carry the policies of every role it
	// may issue).
	if leaf.IsCA {
		return nil, refuse(ErrWrongRole, leaf, nil, "a CA certificate is not a peer identity")
	}
	roles := v.arc.Roles(leaf)
	switch {
	case len(roles) == 0:
		return nil, refuse(ErrWrongPolicy, leaf, nil, "it carries no Keyward role policy under %s (policies: %v); a certificate issued before role policies must be renewed", v.arc, leaf.Policies)
	case len(roles) > 1:
		return nil, refuse(ErrWrongPolicy, leaf, nil, "it carries the policies of several roles (%v)", roles)
	case !slices.Contains(v.o.Roles, roles[0]):
		return nil, refuse(ErrWrongRole, leaf, nil, "its role is %s; this verifier accepts %v", roles[0], v.o.Roles)
	}
	role := roles[0]
	var first error
	var good []*x509.Certificate
	for _, c := range chains {
		if err := v.checkCAPolicies(c, role); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		good = c
		break
	}
	if good == nil {
		return nil, first
	}
	res := &Result{Chain: good, Role: role}
	if err := v.checkRevocation(ctx, good, now, res); err != nil {
		return nil, err
	}
	return res, nil
}

// verifyChain runs crypto/x509's path validation with the clock skew: when a certificate is outside its
// validity by no more than the skew, it validates again at the edge of that certificate's validity.
func (v *Verifier) verifyChain(leaf *x509.Certificate, sent []*x509.Certificate, now time.Time) ([][]*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range sent {
		if c != nil {
			inter.AddCert(c)
		}
	}
	for _, c := range v.interCAs {
		inter.AddCert(c)
	}
	at := now
	for range 4 {
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{v.o.Usage}})
		if err == nil {
			return chains, nil
		}
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) {
			switch inv.Reason {
			case x509.Expired:
				c := inv.Cert
				switch {
				case now.Before(c.NotBefore) && c.NotBefore.Sub(now) <= v.o.ClockSkew:
					at = c.NotBefore
					continue
				case now.After(c.NotAfter) && now.Sub(c.NotAfter) <= v.o.ClockSkew:
					at = c.NotAfter
					continue
				case now.Before(c.NotBefore):
					return nil, refuse(ErrNotYetValid, c, nil, "valid from %s; it is %s here (clock skew allowed %s)", c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.o.ClockSkew)
				default:
					return nil, refuse(ErrExpired, c, nil, "expired %s; it is %s here (clock skew allowed %s)", c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.o.ClockSkew)
				}
			case x509.IncompatibleUsage:
				return nil, refuse(ErrEKU, leaf, nil, "its extended key usages %s do not allow %s", ekuNames(leaf), ekuName(v.o.Usage))
			}
		}
		return nil, refuse(ErrUntrusted, leaf, err, "no chain to the pinned anchors (%s)", anchorNames(v.anchors))
	}
	return nil, refuse(ErrUntrusted, leaf, nil, "the chain's validity periods do not overlap within the clock skew %s", v.o.ClockSkew)
}

// checkCAPolicies: every CA below the anchor must carry the role's policy (or anyPolicy), so that a CA can
// vouch only for the roles it was made for: a station CA, which carries only the station policy, cannot make
// a device.
func (v *Verifier) checkCAPolicies(chain []*x509.Certificate, role certpolicy.Role) error {
	for _, ca := range chain[1 : len(chain)-1] {
		if len(ca.Policies) == 0 {
			if v.o.AllowCAsWithoutPolicies {
				continue
			}
			return refuse(ErrWrongPolicy, ca, nil, "this CA carries no certificate policies (made before Keyward's role policies): roll it over, or accept such CAs explicitly (AllowCAsWithoutPolicies)")
		}
		if !v.arc.Allows(ca, role) {
			return refuse(ErrWrongPolicy, ca, nil, "this CA may not vouch for the %s role: it carries %v, not %s", role, ca.Policies, v.arc.Policy(role))
		}
	}
	return nil
}

func anchorNames(cs []*x509.Certificate) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Subject.CommonName
	}
	return strings.Join(names, ", ")
}

func ekuName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth (a TLS server)"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth (a TLS client)"
	case x509.ExtKeyUsageAny:
		return "any use"
	}
	return fmt.Sprintf("extended key usage %d", u)
}

func ekuNames(c *x509.Certificate) string {
	var out []string
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "clientAuth")
		case x509.ExtKeyUsageOCSPSigning:
			out = append(out, "OCSPSigning")
		default:
			out = append(out, fmt.Sprint(u))
		}
	}
	for _, u := range c.UnknownExtKeyUsage {
		out = append(out, u.String())
	}
	return "[" + strings.Join(out, ", ") + "]"
}
