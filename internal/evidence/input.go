package evidence

import (
	"crypto/tls"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/auditproof"
)

// Input is what a pack is made of, read from the installation by the caller. Build changes none of it.
type Input struct {
	// Env is the environment the pack is about; Product, when set, narrows it to one product line.
	Env, Product string
	// Now is when the pack is generated (a clock tests set).
	Now time.Time
	// Version is Keyward's version, named as the tool in the CBOM.
	Version  string
	Config   *hierarchy.Config
	Profiles map[string]*profile.Profile
	CAs      []*store.CA
	Keys     []*store.Key
	// CertIssuers maps a certificate serial to the CA that issued it, for the certificates of the in-scope CAs:
	// a device's key is recorded with the serial of its certificate as its owner.
	CertIssuers map[string]string
	// StationEnvs maps a factory station to its environment.
	StationEnvs map[string]string
	// TLS is the server listener's configuration (internal/server.TLSConfig), probed for the TLS statement.
	TLS *tls.Config
	// Checkpoint is the audit log's signed checkpoint (note text) and VerifierKey the log's note verifier key.
	Checkpoint  []byte
	VerifierKey string
	// Consistency, when a previous pack's checkpoint is known, proves that the log extends it.
	Consistency *auditproof.ConsistencyProof
	// ReportsDir is DATA/reports, where probe and fleet-scan reports are saved.
	ReportsDir string
}

// scope is where a record belongs: an environment and a product line; "" env means the installation as a
// whole (the audit key, the server's TLS key, the service CA), which every pack covers.
type scope struct{ env, product string }

// in reports whether s is covered by a pack for in.Env and in.Product.
func (in *Input) in(s scope) bool {
	if s.env == "" {
		return true
	}
	if s.env != in.Env {
		return false
	}
	return in.Product == "" || s.product == "" || s.product == in.Product
}

// caScope is the scope of CA c: a root belongs to its environment, an issuing or site CA to its product line.
func caScope(c *store.CA) scope {
	if c.Kind == store.CAKindService {
		return scope{}
	}
	return scope{c.Environment, c.ProductLine}
}

// cas returns the CAs in scope, by id.
func (in *Input) cas() []*store.CA {
	var out []*store.CA
	for _, c := range in.CAs {
		if in.in(caScope(c)) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// keyScope says where key k belongs, from what owns it: a CA (or a CA's delegate, "<ca> <purpose>"), a KDK
// ("kdk:<env>/<product>"), a derived device key ("derived:<env>/<product>/..."), a station, or a certificate
// (a device's key). Anything else is the installation's own.
func (in *Input) keyScope(k *store.Key, cas map[string]*store.CA) scope {
	owner := k.Owner
	if id, _, ok := strings.Cut(owner, " "); ok {
		owner = id
	}
	if c := cas[owner]; c != nil {
		return caScope(c)
	}
	if rest, ok := strings.CutPrefix(k.Owner, "kdk:"); ok {
		env, product, _ := strings.Cut(rest, "/")
		return scope{env, product}
	}
	if rest, ok := strings.CutPrefix(k.URI, "derived:"); ok {
		parts := strings.SplitN(rest, "/", 3)
		if len(parts) >= 2 {
			return scope{parts[0], parts[1]}
		}
	}
	if id, ok := strings.CutPrefix(k.Owner, "station:"); ok {
		if env, ok := in.StationEnvs[id]; ok {
			return scope{env: env}
		}
	}
	if caID, ok := in.CertIssuers[k.Owner]; ok {
		if c := cas[caID]; c != nil {
			return caScope(c)
		}
	}
	if k.Location == "device" {
		// A device's key whose certificate is not among the in-scope CAs' belongs to another environment or
		// product line.
		return scope{env: "?"}
	}
	return scope{}
}

// profiles returns the names of the profiles the in-scope product lines issue under, sorted, and for each the
// product lines ("env/product") that use it.
func (in *Input) profiles() ([]string, map[string][]string) {
	used := map[string][]string{}
	env := in.Config.Environments[in.Env]
	if env == nil {
		return nil, used
	}
	for _, pl := range in.Config.ProductLineNames(in.Env) {
		if in.Product != "" && pl != in.Product {
			continue
		}
		for _, name := range env.ProductLines[pl].Profiles {
			used[name] = append(used[name], in.Env+"/"+pl)
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		if in.Profiles[n] != nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, used
}

// validate refuses an input that names an environment or product line keyward.yaml does not have.
func (in *Input) validate() error {
	if in.Config == nil || in.Config.Environments[in.Env] == nil {
		var names []string
		if in.Config != nil {
			names = in.Config.EnvironmentNames()
		}
		return &InputError{Field: "env", Err: fmt.Errorf("environment %q is not in keyward.yaml (it has: %s)", in.Env, strings.Join(names, ", "))}
	}
	if in.Product != "" && in.Config.Environments[in.Env].ProductLines[in.Product] == nil {
		return &InputError{Field: "product", Err: fmt.Errorf("product line %q is not in environment %s of keyward.yaml (it has: %s)", in.Product, in.Env,
			strings.Join(in.Config.ProductLineNames(in.Env), ", "))}
	}
	if in.Now.IsZero() {
		return fmt.Errorf("evidence: no generation time")
	}
	return nil
}

// InputError is a request the pack cannot be made for: Field names the request field ("env", "product").
type InputError struct {
	Field string
	Err   error
}

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
