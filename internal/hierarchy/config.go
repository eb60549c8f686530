package hierarchy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/pkg/certpolicy"
)

// Environments Keyward knows, in promotion order.
var Environments = []string{"dev", "staging", "production"}

//go:embed defaults/keyward.yaml
var defaultConfig []byte

// DefaultConfig returns the embedded default hierarchy: the dev environment with product line demo-implant.
func DefaultConfig() []byte { return append([]byte(nil), defaultConfig...) }

// Config is the parsed keyward.yaml.
type Config struct {
	Organization string `yaml:"organization"`
	// PolicyArc is the object identifier arc under which certificates carry their role's policy
	// (<arc>.<role number>, pkg/certpolicy). Empty means certpolicy.DefaultArc, which is for demonstrations only.
	PolicyArc    string                  `yaml:"policy_arc"`
	Environments map[string]*Environment `yaml:"environments"`
	// Store and Serve are the sections that say how Keyward runs rather than what it certifies (the store the
	// data directory keeps its state in, the settings of 'keyward serve'): internal/config reads them, the
	// hierarchy keeps them as they are.
	Store yaml.Node `yaml:"store,omitempty"`
	Serve yaml.Node `yaml:"serve,omitempty"`
}

// Environment is one isolated trust domain.
type Environment struct {
	Root         RootSpec                    `yaml:"root"`
	ProductLines map[string]*ProductLineSpec `yaml:"product_lines"`
}

// RootSpec describes an environment's root CA.
type RootSpec struct {
	Algorithm string   `yaml:"algorithm"`
	Validity  Duration `yaml:"validity"`
	Offline   bool     `yaml:"offline"`
}

// ProductLineSpec describes a product line's issuing CA.
type ProductLineSpec struct {
	Algorithm string   `yaml:"algorithm"`
	Validity  Duration `yaml:"validity"`
	Profiles  []string `yaml:"profiles"`
	// Firmware is the product line's firmware release policy; nil means its firmware cannot be released.
	Firmware *FirmwarePolicy `yaml:"firmware"`
}

// FirmwarePolicy says who releases a product line's firmware: Threshold distinct release signers out of
// Signers must approve a release before it is signed (m-of-n), and Hybrid requires ECDSA P-256 and ML-DSA-65
// signatures on every manifest.
type FirmwarePolicy struct {
	Threshold int      `yaml:"threshold"`
	Signers   []string `yaml:"signers"`
	Hybrid    bool     `yaml:"hybrid"`
	// Validity is how long a signed manifest may be installed (default 365d).
	Validity Duration `yaml:"validity"`
}

// Duration is a YAML duration that also accepts days ("90d") and years ("15y", 365 days each).
type Duration time.Duration

// UnmarshalYAML parses "15y", "90d" or any time.ParseDuration form.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses "15y" (365-day years), "90d" or a time.ParseDuration string.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"y": 365 * 24 * time.Hour, "d": 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.Atoi(n)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("%q is not a duration (use 720h, 90d or 15y)", s)
			}
			return time.Duration(v) * unit, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a duration (use 720h, 90d or 15y)", s)
	}
	return v, nil
}

var nameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ParseConfig parses and validates keyward.yaml. Unknown fields are errors.
func ParseConfig(data []byte) (*Config, error) { return ParseConfigFile("keyward.yaml", data) }

// ParseConfigFile is ParseConfig for the file at path, which its errors name with the line of the field at
// fault: "kw/keyward.yaml:12: environments.dev.root.validity is required".
func ParseConfigFile(path string, data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(path, err)
	}
	if err := c.validate(); err != nil {
		if line := lineOf(data, err.Error()); line > 0 {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

var typeName = regexp.MustCompile(` in type [\w.*\[\]]+`)

// decodeError turns a YAML error into one line per mistake, each "path:LINE: what; fix: how".
func decodeError(path string, err error) error {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := make([]string, len(msgs))
	for i, m := range msgs {
		var line int
		if _, err := fmt.Sscanf(m, "line %d:", &line); err == nil {
			m = fmt.Sprintf("%s:%d:%s", path, line, strings.SplitN(m, ":", 2)[1])
		} else {
			m = path + ": " + m
		}
		if strings.Contains(m, "not found in type") {
			m = typeName.ReplaceAllString(m, "") + "; fix: check the key's spelling and indentation (see the field list at the top of the default keyward.yaml)"
		}
		out[i] = m
	}
	return errors.New(strings.Join(out, "\n"))
}

// lineOf finds the line of the field a validation message starts with ("environments.dev.root.validity is
// required"): the deepest part of that dotted path present in the document.
func lineOf(data []byte, msg string) int {
	path, _, _ := strings.Cut(msg, " ")
	path = strings.TrimSuffix(path, ":")
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return 0
	}
	n, line := doc.Content[0], 0
	for _, part := range strings.Split(path, ".") {
		if n.Kind != yaml.MappingNode {
			break
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line, next = n.Content[i].Line, n.Content[i+1]
				break
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}

func (c *Config) validate() error {
	if c.Organization == "" {
		return fmt.Errorf("organization is required")
	}
	if c.PolicyArc != "" {
		if _, err := certpolicy.ParseArc(c.PolicyArc); err != nil {
			return fmt.Errorf("policy_arc: %w (use your organisation's private enterprise arc, e.g. 1.3.6.1.4.1.<PEN>)", err)
		}
	}
	if len(c.Environments) == 0 {
		return fmt.Errorf("environments: at least one environment is required")
	}
	for name, env := range c.Environments {
		if !isEnvironment(name) {
			return fmt.Errorf("environments: %q is not an environment (use one of %s)", name, strings.Join(Environments, ", "))
		}
		if env == nil {
			return fmt.Errorf("environments.%s: empty", name)
		}
		if _, err := keystore.ParseAlgorithm(env.Root.Algorithm); err != nil {
			return fmt.Errorf("environments.%s.root.algorithm: %w", name, err)
		}
		if env.Root.Validity <= 0 {
			return fmt.Errorf("environments.%s.root.validity is required", name)
		}
		// The production root is offline: its key exists only in a ceremony, never in a running server.
		if name == "production" && !env.Root.Offline {
			return fmt.Errorf("environments.production.root.offline must be true: the production root key is created only by 'keyward ca ceremony root'")
		}
		for pl, spec := range env.ProductLines {
			where := fmt.Sprintf("environments.%s.product_lines.%s", name, pl)
			if !nameRule.MatchString(pl) {
				return fmt.Errorf("%s: product line names are lower-case letters, digits and '-' (rule %s)", where, nameRule)
			}
			if spec == nil {
				return fmt.Errorf("%s: empty", where)
			}
			if _, err := keystore.ParseAlgorithm(spec.Algorithm); err != nil {
				return fmt.Errorf("%s.algorithm: %w", where, err)
			}
			if spec.Validity <= 0 {
				return fmt.Errorf("%s.validity is required", where)
			}
			if spec.Validity >= env.Root.Validity {
				return fmt.Errorf("%s.validity (%s) must be shorter than the root's (%s)", where, time.Duration(spec.Validity), time.Duration(env.Root.Validity))
			}
			if len(spec.Profiles) == 0 {
				return fmt.Errorf("%s.profiles: at least one profile is required", where)
			}
			if err := spec.Firmware.validate(where + ".firmware"); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *FirmwarePolicy) validate(where string) error {
	if p == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, s := range p.Signers {
		if !nameRule.MatchString(s) {
			return fmt.Errorf("%s.signers: %q: signer names are lower-case letters, digits and '-' (rule %s)", where, s, nameRule)
		}
		if seen[s] {
			return fmt.Errorf("%s.signers: %q is listed twice; m-of-n needs n distinct signers", where, s)
		}
		seen[s] = true
	}
	// One signer alone must never release firmware: the point of the policy is that no single person can.
	if p.Threshold < 2 || p.Threshold > len(p.Signers) {
		return fmt.Errorf("%s.threshold is %d; it must be at least 2 and at most the %d signers listed", where, p.Threshold, len(p.Signers))
	}
	return nil
}

// Arc returns the policy arc: PolicyArc, or certpolicy.DefaultArc when it is empty. ParseConfig has checked
// it; a Config built by hand with an invalid arc panics here.
func (c *Config) Arc() certpolicy.Arc {
	if c.PolicyArc == "" {
		return certpolicy.MustParseArc(certpolicy.DefaultArc)
	}
	return certpolicy.MustParseArc(c.PolicyArc)
}

func isEnvironment(s string) bool {
	for _, e := range Environments {
		if s == e {
			return true
		}
	}
	return false
}

// EnvironmentNames returns the configured environments in promotion order.
func (c *Config) EnvironmentNames() []string {
	var out []string
	for _, e := range Environments {
		if _, ok := c.Environments[e]; ok {
			out = append(out, e)
		}
	}
	return out
}

// ProductLineNames returns env's product lines, sorted.
func (c *Config) ProductLineNames(env string) []string {
	e := c.Environments[env]
	if e == nil {
		return nil
	}
	out := make([]string, 0, len(e.ProductLines))
	for pl := range e.ProductLines {
		out = append(out, pl)
	}
	sort.Strings(out)
	return out
}

// RootID is the CA id of env's root.
func RootID(env string) string { return env + "/root" }

// IssuingID is the CA id of the issuing CA of (env, product line).
func IssuingID(env, product string) string { return env + "/" + product }
