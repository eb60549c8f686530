package certpolicy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Role is what a certificate holder is to a relying party.
type Role string

// The roles, with the policy sub-arc number each gets (the table in the package documentation).
const (
	Device   Role = "device"
	Gateway  Role = "gateway"
	Service  Role = "service"
	Station  Role = "station"
	Operator Role = "operator"
)

// roles lists every role with its number; numbers are never reused.
var roles = []struct {
	role Role
	n    uint64
}{{Device, 1}, {Gateway, 2}, {Service, 3}, {Station, 4}, {Operator, 5}}

// DefaultArc is the policy arc used when keyward.yaml names none: the private enterprise number IANA reserves
// for documentation (RFC 5612, 1.3.6.1.4.1.32473). It is for demonstrations only: a deployment names its own
// enterprise arc, so that its certificates never carry another organisation's policies. It is short on
// purpose (8 octets): the policy identifier is repeated in every implant certificate, whose budget is 400
// bytes. An operator whose enterprise arc serves other identifiers too names a dedicated sub-arc of it
// (1.3.6.1.4.1.<PEN>.1): each octet of the arc is an octet of every certificate.
const DefaultArc = "1.3.6.1.4.1.32473"

// AnyPolicy is anyPolicy (RFC 5280 4.2.1.4, 2.5.29.32.0). Keyward never issues it; a relying party accepts
// it in a CA certificate as covering every role.
var AnyPolicy = mustOID(2, 5, 29, 32, 0)

func mustOID(ints ...uint64) x509.OID {
	oid, err := x509.OIDFromInts(ints)
	if err != nil {
		panic(err)
	}
	return oid
}

// Roles returns every role, in the order of their numbers.
func Roles() []Role {
	out := make([]Role, len(roles))
	for i, r := range roles {
		out[i] = r.role
	}
	return out
}

// ParseRole returns the role named s, or an error that lists the roles.
func ParseRole(s string) (Role, error) {
	for _, r := range roles {
		if string(r.role) == s {
			return r.role, nil
		}
	}
	return "", fmt.Errorf("%q is not a role (use %s)", s, roleList())
}

func roleList() string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r.role)
	}
	return strings.Join(names, ", ")
}

// Arc is a validated policy arc: the operator's object identifier prefix.
type Arc struct {
	ints []uint64
}

// maxArcComponents bounds an arc; real enterprise arcs have 7 to 10 components.
const maxArcComponents = 20

// ErrBadArc is matched by every error ParseArc returns.
var ErrBadArc = errors.New("invalid policy arc")

// ParseArc parses a dotted object identifier ("1.3.6.1.4.1.32473") as a policy arc (X.660: the first
// component is 0, 1 or 2; under 0 and 1 the second is below 40).
func ParseArc(s string) (Arc, error) {
	fail := func(why string) (Arc, error) { return Arc{}, fmt.Errorf("%w %q: %s", ErrBadArc, s, why) }
	if s == "" {
		return fail("empty (write a dotted object identifier such as " + DefaultArc + ")")
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return fail("an arc has at least two components")
	}
	if len(parts) > maxArcComponents {
		return fail(fmt.Sprintf("more than %d components", maxArcComponents))
	}
	ints := make([]uint64, len(parts))
	for i, p := range parts {
		// Decimal without sign or leading zeros (X.660 6.2): "01" would name the same arc as "1".
		if p == "" || (len(p) > 1 && p[0] == '0') || strings.TrimLeft(p, "0123456789") != "" {
			return fail(fmt.Sprintf("component %d (%q) is not a decimal number without leading zeros", i+1, p))
		}
		n, err := strconv.ParseUint(p, 10, 63)
		if err != nil {
			return fail(fmt.Sprintf("component %d is too large", i+1))
		}
		ints[i] = n
	}
	if ints[0] > 2 {
		return fail("the first component must be 0, 1 or 2 (X.660)")
	}
	if ints[0] < 2 && ints[1] >= 40 {
		return fail("under 0 and 1 the second component must be below 40 (X.660)")
	}
	return Arc{ints: ints}, nil
}

// MustParseArc is ParseArc for constants; it panics on an invalid arc.
func MustParseArc(s string) Arc {
	a, err := ParseArc(s)
	if err != nil {
		panic(err)
	}
	return a
}

// IsZero reports whether a is the zero Arc (none parsed).
func (a Arc) IsZero() bool { return len(a.ints) == 0 }

// String returns the arc in dotted form.
func (a Arc) String() string {
	s := make([]string, len(a.ints))
	for i, n := range a.ints {
		s[i] = strconv.FormatUint(n, 10)
	}
	return strings.Join(s, ".")
}

// Policy returns the policy identifier of role under a: <arc>.<role number>. It panics on an unknown role
// (a programming error: roles come from ParseRole or the constants).
func (a Arc) Policy(role Role) x509.OID {
	for _, r := range roles {
		if r.role == role {
			oid, err := x509.OIDFromInts(append(slices.Clone(a.ints), r.n))
			if err != nil {
				panic(fmt.Sprintf("certpolicy: policy of %s under %s: %v", role, a, err))
			}
			return oid
		}
	}
	panic(fmt.Sprintf("certpolicy: unknown role %q", role))
}

// Policies returns the policy identifiers of rs under a, in the order given.
func (a Arc) Policies(rs ...Role) []x509.OID {
	out := make([]x509.OID, len(rs))
	for i, r := range rs {
		out[i] = a.Policy(r)
	}
	return out
}

// RoleOf returns the role whose policy under a is oid.
func (a Arc) RoleOf(oid x509.OID) (Role, bool) {
	for _, r := range roles {
		if a.Policy(r.role).Equal(oid) {
			return r.role, true
		}
	}
	return "", false
}

// Roles returns the roles whose policies under a cert carries, in the order the certificate lists them.
func (a Arc) Roles(cert *x509.Certificate) []Role {
	var out []Role
	for _, p := range cert.Policies {
		if r, ok := a.RoleOf(p); ok && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// Allows reports whether CA certificate ca may vouch for role under a: it carries role's policy or anyPolicy
// (RFC 5280 6.1.3 (d)).
func (a Arc) Allows(ca *x509.Certificate, role Role) bool {
	want := a.Policy(role)
	for _, p := range ca.Policies {
		if p.Equal(want) || p.Equal(AnyPolicy) {
			return true
		}
	}
	return false
}

// IssuerRoles are the roles a CA of the given kind may issue under: a station CA only station, every other
// CA below a root (issuing, site) device, gateway, service and operator.
func IssuerRoles(stationCA bool) []Role {
	if stationCA {
		return []Role{Station}
	}
	return []Role{Device, Gateway, Service, Operator}
}
