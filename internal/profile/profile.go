package profile

import (
	"bytes"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/pkg/certpolicy"
)

// Profile is a validated certificate profile. Obtain one from Parse, LoadDir or LoadDefaults; its fields are
// read-only after that.
type Profile struct {
	// Name identifies the profile ("implant-identity").
	Name string
	// Version increases with every change of the profile's rules.
	Version int
	// Description is free text for operators.
	Description string
	// Role is what the certificate's holder is to relying parties; certificates carry it as the certificate
	// policy Arc.Policy(Role) (pkg/certpolicy). Empty only for a profile written before roles existed: its
	// certificates carry no policy, and relying parties that check roles refuse them.
	Role certpolicy.Role
	// Arc is the policy arc of keyward.yaml (policy_arc); the zero Arc means certpolicy.DefaultArc. The node
	// sets it when it loads the profiles.
	Arc certpolicy.Arc
	// KeyAlgorithms lists the CSR key types allowed, in the order written.
	KeyAlgorithms []keystore.Algorithm
	// Validity is the certificate lifetime: NotAfter is NotBefore + Validity - 1s, since RFC 5280 4.1.2.5
	// counts both ends of the period.
	Validity time.Duration
	// Backdate is subtracted from the issuance time to give NotBefore, for relying parties with slow clocks.
	Backdate time.Duration
	// Subject holds the subject name rules.
	Subject SubjectRule
	// SANs holds the subject alternative name rules.
	SANs SANRule
	// KeyUsage is the key usage extension, always marked critical (RFC 5280 4.2.1.3).
	KeyUsage x509.KeyUsage
	// ExtKeyUsage is the extended key usage extension (RFC 5280 4.2.1.12).
	ExtKeyUsage []x509.ExtKeyUsage
	// IncludeSKI includes a subject key identifier (RFC 5280 4.2.1.2) computed with RFC 7093 method 1.
	IncludeSKI bool
	// CRLDistributionPoints, OCSPServers and IssuingCertificateURLs are http URLs in which "{issuer}" is
	// replaced with IssuerID of the issuing CA.
	CRLDistributionPoints  []string
	OCSPServers            []string
	IssuingCertificateURLs []string
	// MaxDERSize is the largest encoded certificate, in bytes, the profile allows.
	MaxDERSize int
	// AllowedPrincipals lists the roles that may request this profile.
	AllowedPrincipals []string
	// RenewalWindow is the fraction of the validity, counted back from NotAfter, in which renewal is due.
	RenewalWindow float64
	// ShortLived marks certificates short enough (at most MaxShortLivedValidity) to go without revocation:
	// the profile names no CRL distribution point or OCSP responder, and its certificates carry the RFC 9608
	// noRevAvail extension instead.
	ShortLived bool
}

// SubjectRule constrains the subject distinguished name. A certificate's subject has at most a CN, and the
// fixed O and OU below; nothing else from a CSR is copied.
type SubjectRule struct {
	// CommonName is the anchored pattern a CN must match; nil means no CN is allowed.
	CommonName *regexp.Regexp
	// CommonNameRequired refuses a CSR without a CN.
	CommonNameRequired bool
	// Organization, if not empty, is the O attribute the CA puts in every subject.
	Organization string
	// OrganizationalUnit, if not empty, is the OU attribute the CA puts in every subject.
	OrganizationalUnit string
}

// SANRule constrains subject alternative names (RFC 5280 4.2.1.6).
type SANRule struct {
	// DNS and URI bound dNSName and uniformResourceIdentifier SANs; a zero NameRule allows none.
	DNS NameRule
	URI NameRule
	// IP allows iPAddress SANs.
	IP bool
}

// NameRule bounds one kind of SAN: at most Max names, each matching Pattern.
type NameRule struct {
	Pattern *regexp.Regexp
	Max     int
}

// MaxProfileSize bounds a profile file; real profiles are a few KiB.
const MaxProfileSize = 256 << 10

// RSA sizes below this are not allowed in a profile (NIST SP 800-57 Part 1 Rev. 5 table 2: 3072 bits for the
// 128-bit security level the EC curves give; certificates here live for years).
const minProfileRSABits = 3072

// The YAML schema. Scalars decode into strings so that every conversion error is ours and precise.
type spec struct {
	Name                   string      `yaml:"name"`
	Version                *int        `yaml:"version"`
	Description            string      `yaml:"description"`
	Role                   string      `yaml:"role"`
	KeyAlgorithms          []string    `yaml:"key_algorithms"`
	Validity               string      `yaml:"validity"`
	Backdate               string      `yaml:"backdate"`
	Subject                subjectSpec `yaml:"subject"`
	SANs                   sansSpec    `yaml:"sans"`
	KeyUsage               []string    `yaml:"key_usage"`
	ExtKeyUsage            []string    `yaml:"ext_key_usage"`
	IncludeSKI             *bool       `yaml:"include_ski"`
	CRLDistributionPoints  []string    `yaml:"crl_distribution_points"`
	OCSPServers            []string    `yaml:"ocsp_servers"`
	IssuingCertificateURLs []string    `yaml:"issuing_certificate_urls"`
	MaxDERSize             *int        `yaml:"max_der_size"`
	AllowedPrincipals      []string    `yaml:"allowed_principals"`
	RenewalWindow          *float64    `yaml:"renewal_window"`
	ShortLived             bool        `yaml:"short_lived"`
}

type subjectSpec struct {
	CommonName         *cnSpec `yaml:"common_name"`
	Organization       string  `yaml:"organization"`
	OrganizationalUnit string  `yaml:"organizational_unit"`
}

type cnSpec struct {
	Regex    string `yaml:"regex"`
	Required bool   `yaml:"required"`
}

type sansSpec struct {
	DNS *nameSpec `yaml:"dns"`
	URI *nameSpec `yaml:"uri"`
	IP  bool      `yaml:"ip"`
}

type nameSpec struct {
	Regex string `yaml:"regex"`
	Max   *int   `yaml:"max"`
}

//go:embed defaults/*.yaml
var defaultFS embed.FS

// Defaults returns the embedded default profiles, keyed by name, as YAML. Each call returns fresh copies.
func Defaults() map[string][]byte {
	out := map[string][]byte{}
	entries, err := defaultFS.ReadDir("defaults")
	if err != nil {
		panic("profile: embedded defaults missing: " + err.Error()) // a build defect, not a runtime condition
	}
	for _, e := range entries {
		b, err := defaultFS.ReadFile("defaults/" + e.Name())
		if err != nil {
			panic("profile: embedded defaults unreadable: " + err.Error())
		}
		out[strings.TrimSuffix(e.Name(), ".yaml")] = b
	}
	return out
}

// LoadDefaults parses the embedded default profiles.
func LoadDefaults() (map[string]*Profile, error) {
	out := map[string]*Profile{}
	for name, data := range Defaults() {
		p, err := Parse(name, data)
		if err != nil {
			return nil, err
		}
		out[name] = p
	}
	return out, nil
}

// LoadDir parses every *.yaml and *.yml file in dir (not its subdirectories). A file's name without the
// extension must equal the profile's name field. An error in any file fails the whole load, so a server never
// runs with half its profiles.
func LoadDir(dir string) (map[string]*Profile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load profiles from %s: %w", dir, err)
	}
	out := map[string]*Profile{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ext)
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("load profiles from %s: profile %q is defined by both %s.yaml and %s.yml", dir, name, name, name)
		}
		path := filepath.Join(dir, e.Name())
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("load profile %s: %w", path, err)
		}
		if info.Size() > MaxProfileSize {
			return nil, fmt.Errorf("load profile %s: file is %d bytes; the limit is %d", path, info.Size(), MaxProfileSize)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("load profile %s: %w", path, err)
		}
		p, err := Parse(name, data)
		if err != nil {
			return nil, fmt.Errorf("load profile %s: %w", path, err)
		}
		out[name] = p
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load profiles from %s: no *.yaml files", dir)
	}
	return out, nil
}

// Parse decodes and validates one profile. name is the name the profile is expected to have (its file name
// without extension); if empty, the name field alone decides. Unknown fields, type mismatches and every rule
// violation are errors of kind ErrInvalidProfile that name the field and its line.
func Parse(name string, data []byte) (*Profile, error) {
	v := &validator{profile: name}
	if v.profile == "" {
		v.profile = "(unnamed)"
	}
	if len(data) > MaxProfileSize {
		return nil, v.errf("", "profile is %d bytes; the limit is %d", len(data), MaxProfileSize)
	}
	// First pass: the node tree, for syntax errors and the line of every key.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, v.yamlErr(err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, v.errf("", "profile is empty")
	}
	if root.Content[0].Kind != yaml.MappingNode {
		return nil, &Error{Kind: ErrInvalidProfile, Profile: v.profile, Line: root.Content[0].Line, Msg: "profile must be a YAML mapping of fields"}
	}
	v.lines = map[string]int{}
	v.values = map[string]valuePos{}
	recordLines(root.Content[0], "", v.lines, v.values)
	if v.profile == "(unnamed)" {
		if n := root.Content[0]; len(n.Content) > 0 {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
					v.profile = n.Content[i+1].Value
				}
			}
		}
	}

	// Second pass: strict decoding, which refuses unknown fields.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s spec
	if err := dec.Decode(&s); err != nil {
		return nil, v.yamlErr(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{Kind: ErrInvalidProfile, Profile: v.profile, Line: extra.Line, Msg: "profile file holds more than one YAML document"}
	}
	p := v.validate(name, &s)
	if v.err != nil {
		return nil, v.err
	}
	return p, nil
}

// valuePos is where a key's value starts and what kind of node it is.
type valuePos struct {
	line int
	kind yaml.Kind
}

// recordLines maps every key path ("sans.dns.max", "key_algorithms[1]") to the line of its key and to the
// position of its value. Aliases are not followed: they add no keys of their own.
func recordLines(n *yaml.Node, path string, lines map[string]int, values map[string]valuePos) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			if _, seen := lines[p]; !seen {
				lines[p] = n.Content[i].Line
				values[p] = valuePos{n.Content[i+1].Line, n.Content[i+1].Kind}
			}
			recordLines(n.Content[i+1], p, lines, values)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			values[p] = valuePos{c.Line, c.Kind}
			recordLines(c, p, lines, values)
		}
	}
}

type validator struct {
	profile string
	lines   map[string]int
	values  map[string]valuePos
	err     *Error // the first error; validation stops reporting after it
}

func (v *validator) errf(field, format string, args ...any) *Error {
	e := &Error{Kind: ErrInvalidProfile, Profile: v.profile, Field: field, Line: v.lines[field], Msg: fmt.Sprintf(format, args...)}
	if e.Line == 0 && field != "" {
		// A list element's error names the list; point at the element if we know it.
		e.Line = v.lines[strings.SplitN(field, "[", 2)[0]]
	}
	return e
}

// fail records the first error.
func (v *validator) fail(field, format string, args ...any) {
	if v.err == nil {
		v.err = v.errf(field, format, args...)
	}
}

var (
	reUnknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (\S+)$`)
	reTypeMismatch = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
	reLine         = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
)

// yamlErr turns a yaml.v3 decoding error into an Error naming the field: yaml.v3 names Go types, which mean
// nothing to the profile's author.
func (v *validator) yamlErr(err error) *Error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		// A syntax error: "yaml: line 3: did not find expected key".
		if m := reLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return &Error{Kind: ErrInvalidProfile, Profile: v.profile, Line: line, Msg: "YAML syntax: " + m[2], Err: err}
		}
		return &Error{Kind: ErrInvalidProfile, Profile: v.profile, Msg: "YAML syntax: " + strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
	}
	msg := te.Errors[0]
	if m := reUnknownField.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		field := v.pathAt(line, m[2])
		known := knownFields(m[3])
		return &Error{Kind: ErrInvalidProfile, Profile: v.profile, Field: field, Line: line,
			Msg: fmt.Sprintf("unknown field %q (known fields here: %s)", m[2], strings.Join(known, ", ")), Err: err}
	}
	if m := reTypeMismatch.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		got := yamlKind(m[2])
		if m[3] != "" {
			got += fmt.Sprintf(" %q", clip(m[3]))
		}
		return &Error{Kind: ErrInvalidProfile, Profile: v.profile, Field: v.valueAt(line, m[2]), Line: line,
			Msg: fmt.Sprintf("got %s, want %s", got, goTypeWord(m[4])), Err: err}
	}
	if m := reLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Kind: ErrInvalidProfile, Profile: v.profile, Field: v.pathAt(line, ""), Line: line, Msg: m[2], Err: err}
	}
	return &Error{Kind: ErrInvalidProfile, Profile: v.profile, Msg: msg, Err: err}
}

// pathAt finds the key path at line, preferring one whose last element is key. With several keys on one line
// (flow style) and no key given, it returns the deepest.
func (v *validator) pathAt(line int, key string) string {
	best := ""
	for p, l := range v.lines {
		if l != line {
			continue
		}
		if key != "" {
			if p == key || strings.HasSuffix(p, "."+key) {
				return p
			}
			continue
		}
		if len(p) > len(best) || (len(p) == len(best) && p < best) {
			best = p
		}
	}
	if key != "" {
		return key
	}
	return best
}

// valueAt finds the path whose value of YAML type tag ("str", "map", ...) starts at line; a block mapping or
// list starts on the line after its key, so the key's line alone would name the wrong field.
func (v *validator) valueAt(line int, tag string) string {
	want := yaml.ScalarNode
	switch tag {
	case "map":
		want = yaml.MappingNode
	case "seq":
		want = yaml.SequenceNode
	}
	best := ""
	for p, pos := range v.values {
		if pos.line == line && pos.kind == want && (len(p) > len(best) || (len(p) == len(best) && p < best)) {
			best = p
		}
	}
	if best == "" {
		return v.pathAt(line, "")
	}
	return best
}

func yamlKind(tag string) string {
	switch tag {
	case "str":
		return "the string"
	case "int":
		return "the integer"
	case "float":
		return "the number"
	case "bool":
		return "the boolean"
	case "map":
		return "a mapping"
	case "seq":
		return "a list"
	case "null":
		return "null"
	}
	return "a YAML " + tag
}

func goTypeWord(t string) string {
	t = strings.TrimPrefix(t, "*")
	switch {
	case t == "int":
		return "an integer"
	case t == "float64":
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "profile."):
		return "a mapping of fields"
	}
	return t
}

// knownFields lists the YAML keys of the spec type yaml.v3 named, e.g. "profile.sansSpec".
func knownFields(typeName string) []string {
	types := []any{spec{}, subjectSpec{}, cnSpec{}, sansSpec{}, nameSpec{}}
	for _, t := range types {
		rt := reflect.TypeOf(t)
		if rt.String() != typeName {
			continue
		}
		var keys []string
		for i := range rt.NumField() {
			keys = append(keys, strings.Split(rt.Field(i).Tag.Get("yaml"), ",")[0])
		}
		sort.Strings(keys)
		return keys
	}
	return nil
}

var (
	reName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	reRole = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
)

// knownRoles are the principal roles Keyward's server assigns (ARCHITECTURE.md, "Principal"). A role outside
// this list in allowed_principals is almost certainly a typo that would silently lock the role out.
var knownRoles = []string{"admin", "ca-officer", "release-signer", "auditor", "factory-station", "device"}

// PolicyArc returns the arc p's certificates carry their role's policy under: Arc, or the default.
func (p *Profile) PolicyArc() certpolicy.Arc {
	if p.Arc.IsZero() {
		return certpolicy.MustParseArc(certpolicy.DefaultArc)
	}
	return p.Arc
}

// SetPolicyArc sets the policy arc of every profile in ps (keyward.yaml's policy_arc).
func SetPolicyArc(ps map[string]*Profile, arc certpolicy.Arc) {
	for _, p := range ps {
		p.Arc = arc
	}
}

// Roles returns the role names a profile's allowed_principals may list.
func Roles() []string { return slices.Clone(knownRoles) }

func (v *validator) validate(fileName string, s *spec) *Profile {
	p := &Profile{}

	// name: required, a slug, equal to the file name so that "keyward profile show X" finds file X.
	switch {
	case s.Name == "":
		v.fail("name", "is required")
	case !reName.MatchString(s.Name):
		v.fail("name", "%q must be lower-case letters, digits and hyphens (at most 63)", clip(s.Name))
	case fileName != "" && s.Name != fileName:
		v.fail("name", "%q does not match the file name %q; rename one of them", clip(s.Name), fileName)
	}
	p.Name = s.Name

	// version: certificates record the profile version that made them, so it must be set and positive.
	if s.Version == nil {
		v.fail("version", "is required (an integer, 1 or more)")
	} else if *s.Version < 1 {
		v.fail("version", "%d must be 1 or more", *s.Version)
	} else {
		p.Version = *s.Version
	}
	p.Description = s.Description

	// role: the certificate policy relying parties check (pkg/certpolicy). Station certificates are made by
	// 'keyward station add' under the station CA, never from a profile: an issuing CA must not be able to
	// mint a station identity.
	if s.Role != "" {
		r, err := certpolicy.ParseRole(s.Role)
		switch {
		case err != nil:
			v.fail("role", "%v", err)
		case r == certpolicy.Station:
			v.fail("role", "%q certificates are made by 'keyward station add' under the station CA, not from a profile", s.Role)
		default:
			p.Role = r
		}
	}

	v.keyAlgorithms(p, s.KeyAlgorithms)
	v.durations(p, s)
	v.subject(p, &s.Subject)
	v.sans(p, &s.SANs)
	if p.Subject.CommonName == nil || !p.Subject.CommonNameRequired {
		// RFC 5280 4.1.2.6: a certificate with an empty subject must carry a SAN; if neither is guaranteed
		// the profile could produce an invalid certificate.
		if p.SANs.DNS.Max == 0 && p.SANs.URI.Max == 0 && !p.SANs.IP {
			v.fail("subject.common_name", "is not required and no SANs are allowed, so a certificate could have neither a subject nor a SAN (RFC 5280 4.1.2.6); set required: true or allow a SAN type")
		}
	}
	v.keyUsage(p, s.KeyUsage)
	v.extKeyUsage(p, s.ExtKeyUsage)

	// include_ski: RFC 5280 4.2.1.2 says end-entity certificates SHOULD carry one, so that is the default.
	p.IncludeSKI = s.IncludeSKI == nil || *s.IncludeSKI

	p.CRLDistributionPoints = v.urls("crl_distribution_points", s.CRLDistributionPoints)
	p.OCSPServers = v.urls("ocsp_servers", s.OCSPServers)
	p.IssuingCertificateURLs = v.urls("issuing_certificate_urls", s.IssuingCertificateURLs)

	// max_der_size: required so that every profile states its budget. Below 200 bytes no certificate fits
	// (a P-256 SPKI alone is 91 bytes, a signature up to 72); above 64 KiB something is wrong.
	switch {
	case s.MaxDERSize == nil:
		v.fail("max_der_size", "is required (bytes, 200 to 65536)")
	case *s.MaxDERSize < 200:
		v.fail("max_der_size", "%d is too small: no certificate fits in under 200 bytes", *s.MaxDERSize)
	case *s.MaxDERSize > 65536:
		v.fail("max_der_size", "%d is too large: the limit is 65536", *s.MaxDERSize)
	default:
		p.MaxDERSize = *s.MaxDERSize
	}

	// allowed_principals: a profile nobody may request is a mistake, and so is an unknown role.
	if len(s.AllowedPrincipals) == 0 {
		v.fail("allowed_principals", "is empty: list the roles that may request this profile (%s)", strings.Join(knownRoles, ", "))
	}
	for i, r := range s.AllowedPrincipals {
		f := fmt.Sprintf("allowed_principals[%d]", i)
		switch {
		case !reRole.MatchString(r) || !slices.Contains(knownRoles, r):
			v.fail(f, "%q is not a role (use %s)", clip(r), strings.Join(knownRoles, ", "))
		case slices.Contains(s.AllowedPrincipals[:i], r):
			v.fail(f, "%q is listed twice", r)
		}
	}
	p.AllowedPrincipals = slices.Clone(s.AllowedPrincipals)

	// renewal_window: fraction of the validity before NotAfter in which renewal is due (default 0.2, i.e.
	// the last fifth of the lifetime, as ACME ARI suggests for short-lived certificates).
	p.RenewalWindow = 0.2
	if s.RenewalWindow != nil {
		if w := *s.RenewalWindow; !(w > 0 && w < 1) {
			v.fail("renewal_window", "%v must be a fraction between 0 and 1 (e.g. 0.2)", w)
		} else {
			p.RenewalWindow = w
		}
	}

	// short_lived: CA/B BR 1.6.1 "Short-lived Subscriber Certificate": at most 7 days (from 2026-03-15).
	p.ShortLived = s.ShortLived
	if p.ShortLived && p.Validity > MaxShortLivedValidity {
		v.fail("short_lived", "is true but validity is %s; a short-lived certificate lasts at most 7d (CA/B BR 1.6.1)", formatDuration(p.Validity))
	}
	// A short-lived certificate carries no revocation pointer: the CA publishes no revocation information for
	// it, and says so with noRevAvail (RFC 9608 section 2), which a certificate naming a CRL distribution point
	// or an OCSP responder would contradict. Relying parties would otherwise fetch a CRL or ask a responder for
	// nothing, and fail closed when they cannot reach it.
	if p.ShortLived {
		for _, f := range []struct {
			field string
			urls  []string
		}{{"crl_distribution_points", s.CRLDistributionPoints}, {"ocsp_servers", s.OCSPServers}} {
			if len(f.urls) > 0 {
				v.fail(f.field, "lists %d URL(s) but short_lived is true: a short-lived certificate carries no revocation pointer (RFC 9608 section 2); remove %s or set short_lived: false",
					len(f.urls), f.field)
			}
		}
	}
	return p
}

// MaxShortLivedValidity is the longest validity of a short-lived profile (CA/B BR 1.6.1, "Short-lived
// Subscriber Certificate", from 2026-03-15).
const MaxShortLivedValidity = 7 * 24 * time.Hour

func (v *validator) keyAlgorithms(p *Profile, algs []string) {
	names := make([]string, len(keystore.Algorithms))
	for i, a := range keystore.Algorithms {
		names[i] = string(a)
	}
	if len(algs) == 0 {
		v.fail("key_algorithms", "is empty: list at least one of %s", strings.Join(names, ", "))
		return
	}
	for i, s := range algs {
		f := fmt.Sprintf("key_algorithms[%d]", i)
		a, err := keystore.ParseAlgorithm(s)
		if err != nil {
			if bits, ok := strings.CutPrefix(s, "rsa-"); ok {
				if n, err := strconv.Atoi(bits); err == nil && n < minProfileRSABits {
					v.fail(f, "%q is below the minimum RSA size %d (use rsa-3072 or rsa-4096)", s, minProfileRSABits)
					continue
				}
			}
			v.fail(f, "%q is not a key algorithm (use %s)", clip(s), strings.Join(names, ", "))
			continue
		}
		if slices.Contains(p.KeyAlgorithms, a) {
			v.fail(f, "%q is listed twice", s)
		}
		p.KeyAlgorithms = append(p.KeyAlgorithms, a)
	}
}

func (v *validator) durations(p *Profile, s *spec) {
	if s.Validity == "" {
		v.fail("validity", "is required (e.g. 720h, 90d or 15y)")
	} else if d, err := parseDuration(s.Validity); err != nil {
		v.fail("validity", "%v", err)
	} else if d <= 0 {
		v.fail("validity", "%q must be positive", s.Validity)
	} else if d%time.Second != 0 {
		// Certificate times have one-second resolution (RFC 5280 4.1.2.5.1, 4.1.2.5.2).
		v.fail("validity", "%q is not a whole number of seconds", s.Validity)
	} else {
		p.Validity = d
	}
	if s.Backdate != "" {
		// Backdating covers relying parties whose clocks run behind (Boulder backdates 1h). It costs no
		// bytes; more than a day would misstate when the certificate was made.
		d, err := parseDuration(s.Backdate)
		switch {
		case err != nil:
			v.fail("backdate", "%v", err)
		case d < 0:
			v.fail("backdate", "%q must not be negative", s.Backdate)
		case d > 24*time.Hour:
			v.fail("backdate", "%q is more than the 24h limit", s.Backdate)
		case d%time.Second != 0:
			v.fail("backdate", "%q is not a whole number of seconds", s.Backdate)
		case p.Validity > 0 && d >= p.Validity:
			v.fail("backdate", "%q is not shorter than validity %q", s.Backdate, s.Validity)
		default:
			p.Backdate = d
		}
	}
}

// ub-common-name and friends (RFC 5280 Appendix A.1).
const (
	ubCommonName         = 64
	ubOrganizationName   = 64
	ubOrganizationalUnit = 64
)

func (v *validator) subject(p *Profile, s *subjectSpec) {
	if cn := s.CommonName; cn != nil {
		if cn.Regex == "" {
			v.fail("subject.common_name.regex", "is required when subject.common_name is present (remove common_name to forbid a CN)")
		} else if re, err := compileAnchored(cn.Regex); err != nil {
			v.fail("subject.common_name.regex", "%v", err)
		} else {
			p.Subject.CommonName = re
		}
		p.Subject.CommonNameRequired = cn.Required
	}
	p.Subject.Organization = v.fixedAttr("subject.organization", s.Organization, ubOrganizationName)
	p.Subject.OrganizationalUnit = v.fixedAttr("subject.organizational_unit", s.OrganizationalUnit, ubOrganizationalUnit)
}

func (v *validator) fixedAttr(field, val string, max int) string {
	if val == "" {
		return ""
	}
	if utf8.RuneCountInString(val) > max {
		v.fail(field, "%q is longer than %d characters (RFC 5280 Appendix A upper bound)", clip(val), max)
	}
	for _, r := range val {
		if r < 0x20 || r == 0x7f || !utf8.ValidRune(r) {
			v.fail(field, "%q contains a control character", clip(val))
			break
		}
	}
	return val
}

func (v *validator) sans(p *Profile, s *sansSpec) {
	p.SANs.DNS = v.nameRule("sans.dns", s.DNS)
	p.SANs.URI = v.nameRule("sans.uri", s.URI)
	p.SANs.IP = s.IP
}

// maxSANsPerType bounds a SAN list; the size limit bounds it anyway, this catches typos like 1000.
const maxSANsPerType = 100

func (v *validator) nameRule(field string, s *nameSpec) NameRule {
	var r NameRule
	if s == nil {
		return r
	}
	if s.Max == nil {
		v.fail(field+".max", "is required when %s is present (0 forbids these SANs; then remove %s)", field, field)
		return r
	}
	switch max := *s.Max; {
	case max < 0:
		v.fail(field+".max", "%d must be 0 or more", max)
		return r
	case max > maxSANsPerType:
		v.fail(field+".max", "%d is more than the limit %d", max, maxSANsPerType)
		return r
	case max == 0 && s.Regex != "":
		v.fail(field+".max", "is 0, so %s.regex can never apply; remove %s to forbid these SANs or raise max", field, field)
		return r
	case max > 0 && s.Regex == "":
		v.fail(field+".regex", "is required when %s.max is above 0", field)
		return r
	}
	r.Max = *s.Max
	if s.Regex != "" {
		re, err := compileAnchored(s.Regex)
		if err != nil {
			v.fail(field+".regex", "%v", err)
			return NameRule{}
		}
		r.Pattern = re
	}
	return r
}

// Key usage names are those of RFC 5280 4.2.1.3's KeyUsage BIT STRING (contentCommitment is X.509's current
// name for nonRepudiation).
var keyUsageNames = []struct {
	name string
	ku   x509.KeyUsage
}{
	{"digitalSignature", x509.KeyUsageDigitalSignature},
	{"contentCommitment", x509.KeyUsageContentCommitment},
	{"nonRepudiation", x509.KeyUsageContentCommitment},
	{"keyEncipherment", x509.KeyUsageKeyEncipherment},
	{"dataEncipherment", x509.KeyUsageDataEncipherment},
	{"keyAgreement", x509.KeyUsageKeyAgreement},
	{"keyCertSign", x509.KeyUsageCertSign},
	{"cRLSign", x509.KeyUsageCRLSign},
	{"encipherOnly", x509.KeyUsageEncipherOnly},
	{"decipherOnly", x509.KeyUsageDecipherOnly},
}

func (v *validator) keyUsage(p *Profile, names []string) {
	all := make([]string, 0, len(keyUsageNames))
	for _, k := range keyUsageNames {
		if k.ku != x509.KeyUsageCertSign && k.ku != x509.KeyUsageCRLSign {
			all = append(all, k.name)
		}
	}
	if len(names) == 0 {
		v.fail("key_usage", "is empty: list at least one of %s", strings.Join(all, ", "))
		return
	}
	for i, n := range names {
		f := fmt.Sprintf("key_usage[%d]", i)
		var ku x509.KeyUsage
		for _, k := range keyUsageNames {
			if k.name == n {
				ku = k.ku
			}
		}
		switch {
		case n == "certSign" || ku == x509.KeyUsageCertSign || ku == x509.KeyUsageCRLSign:
			// RFC 5280 4.2.1.3 and 4.2.1.9: keyCertSign and cRLSign are for CA keys, and CA certificates are
			// made by "keyward ca" commands, never from a profile.
			v.fail(f, "%q is for CA certificates; profiles describe end-entity certificates (RFC 5280 4.2.1.3, 4.2.1.9)", n)
			continue
		case ku == 0:
			v.fail(f, "%q is not a key usage (use %s)", clip(n), strings.Join(all, ", "))
			continue
		case p.KeyUsage&ku != 0:
			v.fail(f, "%q is listed twice", n)
		}
		p.KeyUsage |= ku
	}
	// Key usages must suit every allowed key type (RFC 5480 3 for ECDSA, RFC 8410 5 for Ed25519): EC and
	// Ed25519 keys cannot encipher, Ed25519 keys cannot agree keys.
	for _, a := range p.KeyAlgorithms {
		isRSA := a == keystore.RSA3072 || a == keystore.RSA4096
		if !isRSA && p.KeyUsage&(x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment) != 0 {
			v.fail("key_usage", "keyEncipherment and dataEncipherment need RSA keys (RFC 5480 3, RFC 8410 5) but key_algorithms allows %s", a)
		}
		if a == keystore.Ed25519 && p.KeyUsage&(x509.KeyUsageKeyAgreement|x509.KeyUsageEncipherOnly|x509.KeyUsageDecipherOnly) != 0 {
			v.fail("key_usage", "keyAgreement is not allowed with ed25519 keys (RFC 8410 5)")
		}
	}
	// RFC 5280 4.2.1.3: encipherOnly and decipherOnly only make sense with keyAgreement.
	if p.KeyUsage&(x509.KeyUsageEncipherOnly|x509.KeyUsageDecipherOnly) != 0 && p.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
		v.fail("key_usage", "encipherOnly and decipherOnly require keyAgreement (RFC 5280 4.2.1.3)")
	}
}

// Extended key usage names follow RFC 5280 4.2.1.12 (id-kp-serverAuth is "serverAuth", and so on).
var extKeyUsageNames = []struct {
	name string
	eku  x509.ExtKeyUsage
}{
	{"serverAuth", x509.ExtKeyUsageServerAuth},
	{"clientAuth", x509.ExtKeyUsageClientAuth},
	{"codeSigning", x509.ExtKeyUsageCodeSigning},
	{"emailProtection", x509.ExtKeyUsageEmailProtection},
	{"timeStamping", x509.ExtKeyUsageTimeStamping},
	{"OCSPSigning", x509.ExtKeyUsageOCSPSigning},
}

func (v *validator) extKeyUsage(p *Profile, names []string) {
	all := make([]string, len(extKeyUsageNames))
	for i, e := range extKeyUsageNames {
		all[i] = e.name
	}
	for i, n := range names {
		f := fmt.Sprintf("ext_key_usage[%d]", i)
		idx := -1
		for j, e := range extKeyUsageNames {
			if e.name == n {
				idx = j
			}
		}
		if n == "anyExtendedKeyUsage" || n == "any" {
			// RFC 5280 4.2.1.12: anyExtendedKeyUsage lifts every restriction; a profile must say what it means.
			v.fail(f, "%q is not allowed: list the specific usages (%s)", n, strings.Join(all, ", "))
			continue
		}
		if idx < 0 {
			v.fail(f, "%q is not an extended key usage (use %s)", clip(n), strings.Join(all, ", "))
			continue
		}
		eku := extKeyUsageNames[idx].eku
		if slices.Contains(p.ExtKeyUsage, eku) {
			v.fail(f, "%q is listed twice", n)
		}
		p.ExtKeyUsage = append(p.ExtKeyUsage, eku)
	}
}

// compileAnchored compiles an RE2 pattern that must be anchored at both ends, so that "^DEMO-[0-9]{8}$"
// cannot be satisfied by "xDEMO-00000001" or by a value with a trailing newline.
func compileAnchored(pattern string) (*regexp.Regexp, error) {
	const maxLen = 1024
	if len(pattern) > maxLen {
		return nil, fmt.Errorf("regex is %d bytes; the limit is %d", len(pattern), maxLen)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%q does not compile: %v", clip(pattern), strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	if !anchored(pattern) {
		return nil, fmt.Errorf("%q is not anchored: start it with ^ and end it with $ (without the m flag), e.g. ^DEMO-[0-9]{8}$", clip(pattern))
	}
	return re, nil
}

// maxURLs bounds each URL list; more pointers only make the certificate bigger.
const maxURLs = 4

// urls validates a list of revocation or issuer URLs. They must be http: relying parties fetch them to
// validate TLS, so https would be circular (RFC 5280 4.2.1.13 and 4.2.2.1 name http; CA/B BR 7.1.2.11.2
// requires it). "{issuer}" is the only placeholder.
func (v *validator) urls(field string, list []string) []string {
	if len(list) > maxURLs {
		v.fail(field, "has %d URLs; the limit is %d", len(list), maxURLs)
	}
	for i, u := range list {
		f := fmt.Sprintf("%s[%d]", field, i)
		filled := strings.ReplaceAll(u, issuerPlaceholder, "x")
		if strings.ContainsAny(filled, "{}") {
			v.fail(f, "%q has an unknown placeholder; only %s is supported", clip(u), issuerPlaceholder)
			continue
		}
		pu, err := url.Parse(filled)
		switch {
		case err != nil:
			v.fail(f, "%q is not a URL", clip(u))
		case pu.Scheme != "http":
			v.fail(f, "%q must be an http:// URL (relying parties fetch it without TLS; RFC 5280 4.2.1.13, 4.2.2.1)", clip(u))
		case pu.Host == "":
			v.fail(f, "%q has no host", clip(u))
		case pu.User != nil:
			v.fail(f, "%q must not carry user information", clip(u))
		case pu.Fragment != "" || strings.Contains(u, "#"):
			v.fail(f, "%q must not have a fragment", clip(u))
		case slices.Contains(list[:i], u):
			v.fail(f, "%q is listed twice", clip(u))
		}
	}
	return slices.Clone(list)
}

// KeyUsageNames returns the RFC 5280 4.2.1.3 names of the bits of ku, in the order of the BIT STRING.
func KeyUsageNames(ku x509.KeyUsage) []string {
	var out []string
	for _, k := range keyUsageNames {
		if ku&k.ku != 0 && k.name != "nonRepudiation" {
			out = append(out, k.name)
		}
	}
	return out
}

// ExtKeyUsageNames returns the RFC 5280 4.2.1.12 names of ekus, as a profile writes them.
func ExtKeyUsageNames(ekus []x509.ExtKeyUsage) []string {
	out := make([]string, 0, len(ekus))
	for _, eku := range ekus {
		for _, e := range extKeyUsageNames {
			if e.eku == eku {
				out = append(out, e.name)
			}
		}
	}
	return out
}

// FormatDuration writes d in the profile's own units (15y, 90d) where it divides evenly.
func FormatDuration(d time.Duration) string { return formatDuration(d) }
