package ra

// The ceremony flow, the one way a CA below an offline root is made (and a way to make one below an online
// root too):
//
//  1. On the server, RequestCA generates the CA's key in the keystore named (for a site CA, the site's HSM),
//     records it as pending activation with a CA request, and returns the request file: the PKCS #10 request
//     and a description of the CA to make (its kind, role, generation and constraints) bound to it by hash.
//  2. On the offline ceremony machine, PlanCeremony reads the request and builds the certificate the
//     hierarchy's rules give its kind; the operator sees it before SignCeremony has the root sign it in the
//     presence of the witnesses, and the workspace's transcript records it.
//  3. On the server, ImportCA finds the pending request whose key the certificate certifies, checks the
//     certificate against its root, its kind and its constraints, and activates the CA, in one transaction
//     that also supersedes the generation it replaces.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// CeremonyKinds are the kinds of CA a ceremony signs below a root.
var CeremonyKinds = []string{store.CAKindIssuing, store.CAKindStation, store.CAKindSite, store.CAKindOCSPSigner}

// CARequestBlock is the PEM type of the description that travels with a CA request's PKCS #10 block.
const CARequestBlock = "KEYWARD CA REQUEST"

// OCSPSignerValidity is the lifetime of a root's OCSP responder certificate: a root CRL's default span plus a
// month, so that the responder certified in one CRL ceremony outlives the CRL until the next.
const OCSPSignerValidity = 210 * 24 * time.Hour

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// CARequestSpec is what 'keyward ca csr' asks for.
type CARequestSpec struct {
	Environment string
	Kind        string // default issuing
	ProductLine string // issuing and site CAs
	Site        string // site CAs
	Quota       int64  // site CAs
	ValidFor    time.Duration
	// Keys is the keystore the key is generated in (nil: the software keystore).
	Keys keystore.Keystore
}

// CARequestInfo describes the CA a request asks for. It travels with the PKCS #10 request, bound to it by
// CSRSHA256, so the ceremony shows and applies it; the server keeps its own copy and checks the imported
// certificate against that, never against the file.
type CARequestInfo struct {
	Version            int    `json:"version"`
	CA                 string `json:"ca"`
	Environment        string `json:"environment"`
	Kind               string `json:"kind"`
	ProductLine        string `json:"product_line,omitempty"`
	Site               string `json:"site,omitempty"`
	Quota              int64  `json:"quota,omitempty"`
	IssueWindowSeconds int64  `json:"issue_window_seconds,omitempty"`
	ValiditySeconds    int64  `json:"validity_seconds"`
	Generation         int    `json:"generation"`
	Replaces           string `json:"replaces,omitempty"`
	Subject            string `json:"subject"`
	// Policies are the certificate policies (dotted) the CA's certificate carries: the server's policy arc,
	// which the ceremony workspace does not know. Absent in requests written before policies existed.
	Policies  []string `json:"policies,omitempty"`
	CSRSHA256 string   `json:"csr_sha256"`
}

// CARequestFile is a request as 'keyward ca csr' writes it.
type CARequestFile struct {
	Info *CARequestInfo
	CSR  []byte // DER
	PEM  []byte // the CSR block, then the description block
}

// kindSubject returns the subject of a CA of kind for role generation gen: the first generation keeps the
// name CAs have always had; later ones add " G<n>", so people and path builders tell them apart.
func (r *RA) kindSubject(kind, env, product, site string, gen int) pkix.Name {
	var n pkix.Name
	switch kind {
	case store.CAKindIssuing:
		n = hierarchy.IssuingSubject(env, product)
	case store.CAKindStation:
		n = pkix.Name{CommonName: fmt.Sprintf("%s factory stations CA", env)}
	case store.CAKindSite:
		n = SiteSubject(env, product, site)
	case store.CAKindOCSPSigner:
		n = pkix.Name{CommonName: fmt.Sprintf("%s root OCSP responder", env)}
	}
	if gen > 1 {
		n.CommonName = fmt.Sprintf("%s G%d", n.CommonName, gen)
	}
	return n
}

// RequestCA generates the key of the CA spec asks for, records it pending activation with its request, and
// returns the request file for the ceremony. A role that is filled gets its next generation (a rollover); a
// role with a request pending refuses a second one.
func (r *RA) RequestCA(ctx context.Context, p Principal, spec CARequestSpec) (*CARequestFile, error) {
	if spec.Kind == "" {
		spec.Kind = store.CAKindIssuing
	}
	subject := spec.Environment + "/" + spec.Kind
	if err := r.authorize(ctx, p, audit.ActionCARequest, subject, "request CAs", RoleAdmin); err != nil {
		return nil, err
	}
	refuse := func(err error) (*CARequestFile, error) {
		r.refuse(ctx, p, audit.ActionCARequest, subject, map[string]string{"kind": spec.Kind, "product_line": spec.ProductLine, "site": spec.Site}, err)
		return nil, err
	}
	env := r.Hierarchy().Environments[spec.Environment]
	if env == nil {
		return refuse(FieldErrorf(KindBadRequest, "environment", "environment %q is not declared in keyward.yaml (declared: %v)", spec.Environment, r.Hierarchy().EnvironmentNames()))
	}
	if !slices.Contains(CeremonyKinds, spec.Kind) {
		return refuse(FieldErrorf(KindBadRequest, "kind", "kind %q is not a kind of CA the hierarchy declares below a root (use %s)", spec.Kind, strings.Join(CeremonyKinds, ", ")))
	}
	info := &CARequestInfo{Version: 1, Environment: spec.Environment, Kind: spec.Kind}
	alg, purpose := keystore.ECDSAP256, keystore.PurposeCASigning
	switch spec.Kind {
	case store.CAKindIssuing:
		pl, err := r.productSpec(spec.Environment, spec.ProductLine)
		if err != nil {
			return refuse(err)
		}
		if spec.Site != "" || spec.Quota != 0 || spec.ValidFor != 0 {
			return refuse(FieldErrorf(KindBadRequest, "site", "--site, --quota and --valid-for apply to site CAs only"))
		}
		if alg, err = keystore.ParseAlgorithm(pl.Algorithm); err != nil {
			return refuse(wrap(KindBadRequest, err))
		}
		info.ProductLine, info.ValiditySeconds = spec.ProductLine, int64(time.Duration(pl.Validity)/time.Second)
	case store.CAKindSite:
		sr := SiteCARequest{Environment: spec.Environment, ProductLine: spec.ProductLine, Site: spec.Site, Quota: spec.Quota, ValidFor: spec.ValidFor}
		prof, a, err := r.checkSiteRequest(&sr)
		if err != nil {
			return refuse(err)
		}
		alg = a
		info.ProductLine, info.Site, info.Quota = spec.ProductLine, spec.Site, spec.Quota
		info.IssueWindowSeconds = int64(spec.ValidFor / time.Second)
		info.ValiditySeconds = int64((spec.ValidFor + prof.Validity) / time.Second)
	default: // station, ocsp-signer: one per environment
		if spec.ProductLine != "" || spec.Site != "" || spec.Quota != 0 || spec.ValidFor != 0 {
			return refuse(FieldErrorf(KindBadRequest, "product_line", "a %s CA serves a whole environment: --product, --site, --quota and --valid-for do not apply", spec.Kind))
		}
		info.ValiditySeconds = int64(stationCAValidity / time.Second)
		if spec.Kind == store.CAKindOCSPSigner {
			purpose, info.ValiditySeconds = keystore.PurposeOCSPSigning, int64(OCSPSignerValidity/time.Second)
		}
	}
	role := RoleID(spec.Kind, spec.Environment, spec.ProductLine, spec.Site)
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	gens, top := generations(cas, role)
	for _, c := range gens {
		if c.Status == store.CAStatusActive {
			if spec.Kind == store.CAKindSite {
				return refuse(errorf(KindConflict, "site CA %s exists already: a site gets a new CA as a new site (another --site name), not as a rollover", c.ID))
			}
			info.Replaces = c.ID
		}
	}
	info.Generation = top + 1
	info.CA = GenerationID(role, info.Generation)
	reqs, err := r.cfg.Store.ListCARequests(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	for _, q := range reqs {
		if q.State == store.CARequestPending && inRole(q.CAID, role) {
			return refuse(errorf(KindConflict, "a request for %s is pending since %s (key %s): import its certificate with 'keyward ca import', or cancel it with 'keyward ca cancel %s' before requesting again",
				q.CAID, q.CreatedAt.Format(time.RFC3339), q.KeyURI, q.CAID))
		}
	}
	name := r.kindSubject(spec.Kind, spec.Environment, spec.ProductLine, spec.Site, info.Generation)
	info.Subject = name.CommonName
	for _, oid := range r.caPolicies(spec.Kind) {
		info.Policies = append(info.Policies, oid.String())
	}
	key, loc, err := r.cfg.CA.GenerateKey(ctx, spec.Keys, purpose, alg, info.CA)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	csr, err := r.cfg.CA.CreateCSR(ctx, key.URI, purpose, name)
	if err != nil {
		return nil, r.abandon(ctx, fmt.Errorf("CSR for %s: %w", info.CA, err), key.URI)
	}
	spki, err := goodkey.SPKIHash(key.Public)
	if err != nil {
		return nil, r.abandon(ctx, err, key.URI)
	}
	sum := sha256.Sum256(csr)
	info.CSRSHA256 = hex.EncodeToString(sum[:])
	now := r.now()
	row := &store.CARequest{CAID: info.CA, Environment: info.Environment, ProductLine: info.ProductLine, Kind: info.Kind, Site: info.Site,
		Quota: info.Quota, ValidFor: time.Duration(info.IssueWindowSeconds) * time.Second, Generation: info.Generation, Replaces: info.Replaces,
		KeyURI: key.URI, SPKISHA256: spki, CSRDER: csr, State: store.CARequestPending, CreatedAt: now}
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := r.recordKey(ctx, tx, p, key, loc, info.CA, store.KeyPreActivation, spki, now); err != nil {
			return err
		}
		if err := tx.InsertCARequest(ctx, row); err != nil {
			return err
		}
		d := map[string]string{"kind": info.Kind, "environment": info.Environment, "product_line": info.ProductLine, "site": info.Site,
			"generation": fmt.Sprint(info.Generation), "replaces": info.Replaces, "key": key.URI, "csr_sha256": info.CSRSHA256}
		if info.Kind == store.CAKindSite {
			d["quota"], d["issue_window"] = fmt.Sprint(info.Quota), spec.ValidFor.String()
		}
		return r.success(ctx, tx, p, audit.ActionCARequest, info.CA, now, d)
	})
	if errors.Is(err, store.ErrExists) {
		err = errorf(KindConflict, "a request for %s is pending already (made meanwhile): import or cancel it first", role)
	}
	if err != nil {
		return nil, r.abandon(ctx, fmt.Errorf("record the request for %s: %w", info.CA, err), key.URI)
	}
	out, err := EncodeCARequest(info, csr)
	if err != nil {
		return nil, err
	}
	return &CARequestFile{Info: info, CSR: csr, PEM: out}, nil
}

// EncodeCARequest writes a request file: the CSR block, then the description block (JSON).
func EncodeCARequest(info *CARequestInfo, csr []byte) ([]byte, error) {
	js, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: CARequestBlock, Bytes: js})...), nil
}

// maxRequestFile bounds a request file, which arrives from another machine.
const maxRequestFile = 64 << 10

// ParseCARequest reads a request file: exactly one CSR block and one description block that names it by
// hash. A bare CSR (from a version that wrote only the CSR) is read as an issuing CA request with no
// description: ParseCARequest then returns a nil info.
func ParseCARequest(data []byte) (*CARequestInfo, []byte, error) {
	if len(data) > maxRequestFile {
		return nil, nil, errorf(KindBadRequest, "request file is %d bytes, more than %d", len(data), maxRequestFile)
	}
	var csr, js []byte
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
			if csr != nil {
				return nil, nil, errorf(KindBadRequest, "request file holds more than one certificate request")
			}
			csr = b.Bytes
		case CARequestBlock:
			if js != nil {
				return nil, nil, errorf(KindBadRequest, "request file holds more than one %s block", CARequestBlock)
			}
			js = b.Bytes
		}
	}
	if csr == nil {
		if bytes.Contains(data, []byte("-----BEGIN")) {
			return nil, nil, errorf(KindBadRequest, "request file holds no CERTIFICATE REQUEST block")
		}
		csr = data // DER
	}
	if js == nil {
		return nil, csr, nil
	}
	var info CARequestInfo
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&info); err != nil {
		return nil, nil, errorf(KindBadRequest, "%s block: %w", CARequestBlock, err)
	}
	if info.Version != 1 {
		return nil, nil, errorf(KindBadRequest, "%s block version %d is not 1", CARequestBlock, info.Version)
	}
	sum := sha256.Sum256(csr)
	if info.CSRSHA256 != hex.EncodeToString(sum[:]) {
		return nil, nil, errorf(KindBadRequest, "the %s block describes another certificate request (csr_sha256 %s, the request's is %x): the file was altered or assembled from two requests",
			CARequestBlock, info.CSRSHA256, sum)
	}
	return &info, csr, nil
}

// CeremonyPlan is the certificate a ceremony is about to sign, for the witnesses to read first.
type CeremonyPlan struct {
	Info     *CARequestInfo
	CSR      *x509.CertificateRequest
	Template *x509.Certificate
	Root     *store.CA
	// KeySHA256 is the SHA-256 of the request's SubjectPublicKeyInfo.
	KeySHA256 []byte
	Algorithm keystore.Algorithm
}

// Describe returns the plan as lines "name: value", in the order the ceremony prints them.
func (pl *CeremonyPlan) Describe() [][2]string {
	t := pl.Template
	out := [][2]string{
		{"kind", pl.Info.Kind}, {"CA", pl.Info.CA}, {"environment", pl.Info.Environment},
		{"subject", t.Subject.String()}, {"issuer", pl.Root.Subject + " (" + pl.Root.ID + ")"},
		{"key", fmt.Sprintf("%s, SPKI SHA-256 %x", pl.Algorithm, pl.KeySHA256)},
		{"validity", t.NotBefore.Format(time.RFC3339) + " to " + t.NotAfter.Format(time.RFC3339)},
	}
	if pl.Info.ProductLine != "" {
		out = append(out, [2]string{"product line", pl.Info.ProductLine})
	}
	out = append(out, [2]string{"generation", fmt.Sprint(pl.Info.Generation)})
	if pl.Info.Replaces != "" {
		out = append(out, [2]string{"replaces", pl.Info.Replaces})
	}
	if t.IsCA {
		out = append(out, [2]string{"path length", fmt.Sprint(t.MaxPathLen)})
	} else {
		out = append(out, [2]string{"CA", "no (a delegated responder)"})
	}
	if len(t.ExtKeyUsage) > 0 {
		var names []string
		for _, u := range t.ExtKeyUsage {
			names = append(names, ekuName(u))
		}
		out = append(out, [2]string{"extended key usage", strings.Join(names, ", ")})
	}
	if t.PermittedDNSDomainsCritical {
		out = append(out, [2]string{"name constraints", "critical: every DNS name, e-mail address and IP address excluded; URIs only under keyward.invalid"})
	}
	if pl.Info.Kind == store.CAKindOCSPSigner {
		out = append(out, [2]string{"OCSP no-check", "yes (RFC 6960 4.2.2.2.1)"})
	}
	if pl.Info.Kind == store.CAKindSite {
		out = append(out, [2]string{"site", pl.Info.Site}, [2]string{"site quota", fmt.Sprint(pl.Info.Quota)},
			[2]string{"site issuing window", (time.Duration(pl.Info.IssueWindowSeconds) * time.Second).String()})
	}
	return out
}

func ekuName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageOCSPSigning:
		return "OCSPSigning"
	}
	return fmt.Sprint(int(u))
}

// PlanCeremony reads a request file in a ceremony workspace and builds the certificate the hierarchy's rules
// give its kind, under the workspace's current root of env. validity, if not zero, replaces the validity the
// request asks for (not for a site CA, whose validity is its window plus its certificates' lifetime).
func (r *RA) PlanCeremony(ctx context.Context, p Principal, env string, file []byte, validity time.Duration) (*CeremonyPlan, error) {
	plan, err := r.planCeremony(ctx, env, file, validity)
	if err != nil {
		sum := sha256.Sum256(file)
		r.refuse(ctx, p, audit.ActionCeremonySign, env, map[string]string{"command": "ca ceremony sign", "in:request": hex.EncodeToString(sum[:])}, err)
		return nil, err
	}
	return plan, nil
}

func (r *RA) planCeremony(ctx context.Context, env string, file []byte, validity time.Duration) (*CeremonyPlan, error) {
	info, csrDER, err := ParseCARequest(file)
	if err != nil {
		return nil, err
	}
	csr, err := profile.ParseCSR(csrDER)
	if err != nil {
		return nil, wrap(KindBadRequest, err)
	}
	if err := goodkey.Check(csr.PublicKey); err != nil {
		return nil, errorf(KindBadRequest, "CSR key: %w", err)
	}
	if info == nil {
		// A bare CSR: an issuing CA request of the kind every version has made.
		info = &CARequestInfo{Version: 1, Environment: env, Kind: store.CAKindIssuing, Subject: csr.Subject.CommonName, Generation: 1}
		if validity == 0 {
			validity = 20 * 365 * 24 * time.Hour
		}
	}
	if info.Environment != env {
		return nil, FieldErrorf(KindBadRequest, "environment", "the request is for environment %q, this ceremony is for %q", info.Environment, env)
	}
	if !slices.Contains(CeremonyKinds, info.Kind) {
		return nil, errorf(KindBadRequest, "the request asks for a CA of kind %q, which the hierarchy does not declare below a root (kinds: %s)", info.Kind, strings.Join(CeremonyKinds, ", "))
	}
	if csr.Subject.CommonName != info.Subject {
		return nil, errorf(KindBadRequest, "the CSR's subject %q is not the subject %q its description names", csr.Subject.CommonName, info.Subject)
	}
	if info.Kind == store.CAKindSite {
		if info.Quota <= 0 || info.IssueWindowSeconds <= 0 || time.Duration(info.IssueWindowSeconds)*time.Second > MaxSiteWindow {
			return nil, errorf(KindBadRequest, "a site CA request needs a positive quota and an issuing window of at most 366d (this one: quota %d, window %s)",
				info.Quota, time.Duration(info.IssueWindowSeconds)*time.Second)
		}
		if validity != 0 {
			return nil, FieldErrorf(KindBadRequest, "validity", "a site CA's validity is its issuing window plus its certificates' lifetime, as the request says: --validity does not apply")
		}
	}
	if validity == 0 {
		validity = time.Duration(info.ValiditySeconds) * time.Second
	}
	if validity <= 0 {
		return nil, errorf(KindBadRequest, "the request names no validity: give --validity")
	}
	rootRow, err := r.currentRoot(ctx, env)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(rootRow.CertDER)
	if err != nil {
		return nil, err
	}
	tmpl, err := r.kindTemplate(info, csr.Subject, csr.PublicKey, r.now(), validity, root)
	if err != nil {
		return nil, wrap(KindBadRequest, err)
	}
	spki := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	alg, err := keystore.AlgorithmOf(csr.PublicKey)
	if err != nil {
		return nil, wrap(KindBadRequest, err)
	}
	return &CeremonyPlan{Info: info, CSR: csr, Template: tmpl, Root: rootRow, KeySHA256: spki[:], Algorithm: alg}, nil
}

// currentRoot returns env's active root in this store (a ceremony workspace's or a server's).
func (r *RA) currentRoot(ctx context.Context, env string) (*store.CA, error) {
	id, err := r.currentID(ctx, hierarchy.RootID(env))
	if err != nil {
		return nil, err
	}
	row, err := r.cfg.Store.GetCA(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(KindNotFound, "no root for environment %q here (a ceremony workspace gets one with 'keyward ca ceremony root')", env)
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if row.Status != store.CAStatusActive {
		return nil, errorf(KindConflict, "root %s is %s", row.ID, row.Status)
	}
	return row, nil
}

// kindTemplate builds the certificate the hierarchy gives a CA of info.Kind: every CA kind path length 0 with
// keyCertSign and cRLSign; a station CA restricted to clientAuth (RFC 5280 4.2.1.12 in a CA certificate, as
// path validators apply it: its stations can only be TLS clients); a site CA name-constrained (constrain); an
// OCSP responder an end entity with id-kp-OCSPSigning and id-pkix-ocsp-nocheck.
func (r *RA) kindTemplate(info *CARequestInfo, subject pkix.Name, pub any, now time.Time, validity time.Duration, root *x509.Certificate) (*x509.Certificate, error) {
	t, err := hierarchy.IssuingTemplate(subject, pub, now, validity, root)
	if err != nil {
		return nil, err
	}
	// The policies the request names (the server's arc); a bare CSR or an older request gets this
	// workspace's.
	if len(info.Policies) > 0 {
		for _, s := range info.Policies {
			oid, err := x509.ParseOID(s)
			if err != nil {
				return nil, fmt.Errorf("the request's policy %q: %w", s, err)
			}
			t.Policies = append(t.Policies, oid)
		}
	} else {
		t.Policies = r.caPolicies(info.Kind)
	}
	switch info.Kind {
	case store.CAKindStation:
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case store.CAKindSite:
		constrain(t)
	case store.CAKindOCSPSigner:
		t.IsCA, t.BasicConstraintsValid, t.MaxPathLen, t.MaxPathLenZero = false, false, 0, false
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
		t.ExtraExtensions = []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}}
	}
	return t, nil
}

// Witnesses returns the distinct custodians named, refusing fewer than two in production: a production
// ceremony is never one person's act.
func Witnesses(env string, names []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" || seen[strings.ToLower(n)] {
			continue
		}
		seen[strings.ToLower(n)] = true
		out = append(out, n)
	}
	if env == "production" && len(out) < 2 {
		return nil, FieldErrorf(KindBadRequest, "witness", "a production ceremony needs at least two distinct witnesses (--witness NAME, repeated); %d named", len(out))
	}
	return out, nil
}

// RoleWitness is the role of a ceremony witness's credential: a token made in a ceremony workspace
// (EnrollWitness) by which a custodian names themselves at a ceremony. It is no operator role: it opens no API
// route, and 'keyward token create' cannot make one.
const RoleWitness = "witness"

// EnrollWitness makes the credential by which custodian name proves their presence at this workspace's
// ceremonies, and returns it (only its hash is kept). From the first enrolment on, every witness of a
// production ceremony in the workspace must present theirs (witnesses).
func (r *RA) EnrollWitness(ctx context.Context, p Principal, req TokenRequest) (string, error) {
	if err := r.authorize(ctx, p, audit.ActionTokenCreate, req.Name, "enrol ceremony witnesses", RoleAdmin); err != nil {
		return "", err
	}
	req.Role = RoleWitness
	return r.createToken(ctx, p, req, []string{RoleWitness})
}

// witnesses returns the distinct witnesses of t (Witnesses), after checking the credentials they presented.
// A credential must be a witness credential of this workspace, active, and in the witness's own name. Where
// the environment requires it, every witness must present one: a production ceremony in a workspace with
// enrolled witnesses, so that a production root signs only before people who proved themselves, and one
// custodian cannot stand for two. Dev and staging ceremonies, and workspaces with no witness enrolled, accept
// plain names as before.
func (r *RA) witnesses(ctx context.Context, env string, t *Transcript) ([]string, error) {
	ws, err := Witnesses(env, t.Witnesses)
	if err != nil {
		return nil, err
	}
	byName := map[string]string{}
	for name, tok := range t.WitnessTokens {
		byName[strings.ToLower(strings.TrimSpace(name))] = tok
	}
	required := false
	if env == "production" {
		toks, err := r.cfg.Store.ListTokens(ctx)
		if err != nil {
			return nil, wrap(KindUnavailable, err)
		}
		for _, tk := range toks {
			if tk.Role == RoleWitness && TokenState(tk, r.now()) == TokenActive {
				required = true
				break
			}
		}
	}
	t.authenticated = nil
	for _, name := range ws {
		tok, ok := byName[strings.ToLower(name)]
		if !ok {
			if required {
				return nil, FieldErrorf(KindUnauthorized, "witness", "witness %q named no credential: this workspace has enrolled witnesses, so each witness of a production ceremony proves their presence with their own (--witness %s:TOKENFILE)", name, name)
			}
			continue
		}
		at, err := r.AuthenticateToken(ctx, tok)
		if err != nil {
			return nil, FieldErrorf(KindUnauthorized, "witness", "witness %q: %w", name, err)
		}
		got := strings.TrimPrefix(at.Principal.ID, operatorPrefix)
		if at.Principal.Role != RoleWitness || !strings.EqualFold(got, name) {
			return nil, FieldErrorf(KindForbidden, "witness", "witness %q presented the credential of %s %q: each witness names themselves with their own witness credential", name, at.Principal.Role, got)
		}
		t.authenticated = append(t.authenticated, name)
	}
	return ws, nil
}

// Transcript is what a ceremony command records in its workspace's hash-chained log: the command, its inputs
// and outputs by SHA-256 and the custodians present.
type Transcript struct {
	Command   string
	Witnesses []string
	// WitnessTokens holds, by witness name, the credential a witness presented (EnrollWitness made it in this
	// workspace). The RA checks each against the workspace's store and records who proved themselves, never
	// the token.
	WitnessTokens map[string]string
	Inputs        map[string][]byte // name → content
	Outputs       map[string][]byte
	// authenticated are the witnesses whose credential was checked, set by the RA.
	authenticated []string
}

func (t *Transcript) details(d map[string]string) map[string]string {
	if d == nil {
		d = map[string]string{}
	}
	d["command"] = t.Command
	d["witnesses"] = strings.Join(t.Witnesses, ", ")
	if len(t.authenticated) > 0 {
		d["witnesses_authenticated"] = strings.Join(t.authenticated, ", ")
	}
	for name, data := range t.Inputs {
		sum := sha256.Sum256(data)
		d["in:"+name] = hex.EncodeToString(sum[:])
	}
	for name, data := range t.Outputs {
		sum := sha256.Sum256(data)
		d["out:"+name] = hex.EncodeToString(sum[:])
	}
	return d
}

// TranscriptHead names the newest event of a ceremony workspace's log.
type TranscriptHead struct {
	Seq  int64
	Hash []byte
}

// transcriptPrefix starts the line a ceremony writes before the PEM block of what it signed; PEM readers
// (OpenSSL's and Go's) skip text before a block.
const transcriptPrefix = "Keyward ceremony transcript: "

// Line returns the text line that carries the head in a ceremony's output.
func (h TranscriptHead) Line(env string) string {
	return fmt.Sprintf("%s%s event %d, head %x\n", transcriptPrefix, env, h.Seq, h.Hash)
}

// TranscriptOf returns the transcript line a ceremony wrote into a file, without its prefix, or "".
func TranscriptOf(file []byte) string {
	for _, line := range strings.Split(string(file), "\n") {
		if strings.HasPrefix(line, transcriptPrefix) {
			s := strings.TrimSpace(strings.TrimPrefix(line, transcriptPrefix))
			if len(s) > 200 {
				s = s[:200]
			}
			return s
		}
		if strings.HasPrefix(line, "-----BEGIN") {
			break
		}
	}
	return ""
}

// head returns the workspace log's newest event.
func (r *RA) head(ctx context.Context) (TranscriptHead, error) {
	seq, hash, err := r.cfg.Store.AuditHead(ctx)
	return TranscriptHead{Seq: seq, Hash: hash}, err
}

// SignCeremony has the workspace's root sign plan in the presence of the witnesses named in t, and records
// it in the workspace's log with t. It returns the certificate and the log's new head.
func (r *RA) SignCeremony(ctx context.Context, p Principal, plan *CeremonyPlan, t *Transcript) ([]byte, TranscriptHead, error) {
	ws, err := r.witnesses(ctx, plan.Info.Environment, t)
	if err != nil {
		r.refuse(ctx, p, audit.ActionCeremonySign, plan.Info.CA, map[string]string{"command": t.Command}, err)
		return nil, TranscriptHead{}, err
	}
	t.Witnesses = ws
	iss, err := r.issuer(ctx, plan.Root.ID)
	if err != nil {
		return nil, TranscriptHead{}, err
	}
	var der []byte
	if plan.Template.IsCA {
		der, _, err = iss.IssueCA(ctx, plan.Template, plan.CSR.PublicKey)
	} else {
		var prep *issuer.Prepared
		if prep, err = iss.Prepare(plan.Template, plan.CSR.PublicKey); err == nil {
			der, err = iss.Issue(ctx, prep)
		}
	}
	if err != nil {
		return nil, TranscriptHead{}, signError(plan.Root.ID, fmt.Errorf("sign %s: %w", plan.Info.CA, err))
	}
	if t.Outputs == nil {
		t.Outputs = map[string][]byte{}
	}
	t.Outputs["certificate"] = der
	now := r.now()
	err = r.tx(ctx, func(tx store.Tx) error {
		return r.success(ctx, tx, p, audit.ActionCeremonySign, plan.Info.CA, now, t.details(map[string]string{
			"kind": plan.Info.Kind, "root": plan.Root.ID, "subject": plan.Template.Subject.String(),
			"serial": fmt.Sprintf("%x", plan.Template.SerialNumber), "not_after": plan.Template.NotAfter.Format(time.RFC3339)}))
	})
	if err != nil {
		return nil, TranscriptHead{}, err
	}
	h, err := r.head(ctx)
	return der, h, err
}

// CeremonyEvent records a ceremony command that signs nothing through SignCeremony (a root made, a CRL
// signed) in the workspace's log, and returns the new head.
func (r *RA) CeremonyEvent(ctx context.Context, p Principal, action, subject string, t *Transcript, extra map[string]string) (TranscriptHead, error) {
	now := r.now()
	err := r.tx(ctx, func(tx store.Tx) error { return r.success(ctx, tx, p, action, subject, now, t.details(extra)) })
	if err != nil {
		return TranscriptHead{}, err
	}
	return r.head(ctx)
}

// ImportRequest is a ceremony-signed certificate to install.
type ImportRequest struct {
	Environment string
	// Kind and ProductLine, if given, must agree with the pending request the certificate matches.
	Kind, ProductLine string
	CertDER, RootDER  []byte
	// Links are the link certificates of a root rollover, needed when RootDER is a new root: the NewWithOld
	// certificate by which the recorded root certified it, and optionally OldWithNew.
	Links [][]byte
	// Transcript is the line the ceremony wrote with the certificate (TranscriptOf), recorded in the audit trail.
	Transcript string
}

// ImportCA installs a ceremony-signed certificate: it finds the pending request whose key the certificate
// certifies, checks the certificate against the given root (which must be the environment's recorded root, or
// becomes it if there is none yet), the request's kind and its constraints, and then, in one transaction,
// records the CA (and the root, the first time), activates its key, closes the request and supersedes the
// generation it replaces. Issuance switches to the new generation at once, in this process and, through the
// change feed, in every other.
func (r *RA) ImportCA(ctx context.Context, p Principal, req ImportRequest) (*store.CA, error) {
	if err := r.authorize(ctx, p, audit.ActionCAImport, req.Environment, "import CAs", RoleAdmin); err != nil {
		return nil, err
	}
	row, err := r.importCA(ctx, p, req)
	if err != nil {
		r.refuse(ctx, p, audit.ActionCAImport, req.Environment, map[string]string{"kind": req.Kind, "product_line": req.ProductLine, "transcript": req.Transcript}, err)
		return nil, err
	}
	return row, nil
}

func (r *RA) importCA(ctx context.Context, p Principal, req ImportRequest) (*store.CA, error) {
	env := r.Hierarchy().Environments[req.Environment]
	if env == nil {
		return nil, FieldErrorf(KindBadRequest, "environment", "environment %q is not declared in keyward.yaml (declared: %v)", req.Environment, r.Hierarchy().EnvironmentNames())
	}
	rootCert, err := x509.ParseCertificate(req.RootDER)
	if err != nil {
		return nil, errorf(KindBadRequest, "parse root certificate: %w", err)
	}
	if !rootCert.IsCA || rootCert.CheckSignatureFrom(rootCert) != nil {
		return nil, errorf(KindBadRequest, "the root certificate is not a self-signed CA certificate")
	}
	cert, err := x509.ParseCertificate(req.CertDER)
	if err != nil {
		return nil, errorf(KindBadRequest, "parse the CA certificate: %w", err)
	}
	if err := cert.CheckSignatureFrom(rootCert); err != nil {
		return nil, errorf(KindBadRequest, "the certificate is not signed by the given root: %w", err)
	}
	spki, err := goodkey.SPKIHash(cert.PublicKey)
	if err != nil {
		return nil, wrap(KindBadRequest, err)
	}
	reqs, err := r.cfg.Store.ListCARequests(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	var q *store.CARequest
	var pendingIDs []string
	for _, x := range reqs {
		if x.State != store.CARequestPending {
			continue
		}
		pendingIDs = append(pendingIDs, x.CAID)
		if bytes.Equal(x.SPKISHA256, spki) {
			q = x
		}
	}
	if q == nil {
		if len(pendingIDs) == 0 {
			pendingIDs = []string{"none"}
		}
		return nil, errorf(KindBadRequest, "the certificate certifies no pending CA key here (pending requests: %s): sign the request 'keyward ca csr' wrote on this server",
			strings.Join(pendingIDs, ", "))
	}
	if q.Environment != req.Environment {
		return nil, FieldErrorf(KindBadRequest, "environment", "the certificate's request %s is for environment %q, not %q", q.CAID, q.Environment, req.Environment)
	}
	if req.Kind != "" && req.Kind != q.Kind {
		return nil, FieldErrorf(KindBadRequest, "kind", "the certificate's request %s is for a %s CA, not a %s CA", q.CAID, q.Kind, req.Kind)
	}
	if req.ProductLine != "" && req.ProductLine != q.ProductLine {
		return nil, FieldErrorf(KindBadRequest, "product_line", "the certificate's request %s is for product line %q, not %q", q.CAID, q.ProductLine, req.ProductLine)
	}
	rootID := hierarchy.RootID(req.Environment)
	_, err = r.cfg.Store.GetCA(ctx, rootID)
	// newRoot is a root that arrives with this import: the environment's first, or the next after a rollover.
	var newRoot, replacedRoot *store.CA
	var links [][]byte
	switch {
	case errors.Is(err, store.ErrNotFound):
		newRoot = &store.CA{ID: rootID, Environment: req.Environment, Kind: store.CAKindRoot, CertDER: req.RootDER, Subject: rootCert.Subject.String(),
			NotBefore: rootCert.NotBefore, NotAfter: rootCert.NotAfter, Status: store.CAStatusActive, Generation: 1}
	case err != nil:
		return nil, wrap(KindUnavailable, err)
	default:
		cur, err := r.currentRoot(ctx, req.Environment)
		if err != nil {
			return nil, err
		}
		rootID = cur.ID
		if !bytes.Equal(cur.CertDER, req.RootDER) {
			if newRoot, links, err = r.importRoot(ctx, req.Environment, cur, rootCert, req.RootDER, req.Links); err != nil {
				return nil, err
			}
			replacedRoot, rootID = cur, newRoot.ID
		}
	}
	if err := r.checkKind(q, cert, rootCert); err != nil {
		return nil, errorf(KindBadRequest, "the certificate breaks the rules of a %s CA: %w", q.Kind, err)
	}
	now := r.now()
	if now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
		return nil, errorf(KindBadRequest, "the certificate is not valid now (%s to %s)", cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	key, err := r.cfg.Store.GetKey(ctx, q.KeyURI)
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("the pending key %s of %s: %w", q.KeyURI, q.CAID, err))
	}
	if key.State != store.KeyPreActivation {
		return nil, errorf(KindConflict, "the pending key %s of %s is %s", q.KeyURI, q.CAID, key.State)
	}
	pc := &pendingCA{row: &store.CA{ID: q.CAID, Environment: q.Environment, ProductLine: q.ProductLine, Kind: q.Kind, ParentID: rootID, KeyURI: q.KeyURI,
		CertDER: req.CertDER, Subject: cert.Subject.String(), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Status: store.CAStatusActive,
		CreatedAt: now, Generation: q.Generation},
		key: keystore.Key{URI: q.KeyURI, Purpose: keystore.Purpose(key.Purpose), Algorithm: keystore.Algorithm(key.Algorithm), Public: cert.PublicKey},
		loc: keystore.Location(key.Location), spki: spki, cert: cert, imported: true, transcript: req.Transcript}
	before := func(tx store.Tx) error {
		if newRoot != nil {
			if err := r.recordRoot(ctx, tx, p, newRoot, replacedRoot, links, now); err != nil {
				return err
			}
		}
		if err := tx.CloseCARequest(ctx, q.CAID, store.CARequestImported, now); err != nil {
			return err
		}
		return r.supersede(ctx, tx, p, q.Replaces, q.CAID, now)
	}
	if q.Kind == store.CAKindSite {
		prof := r.Profiles()[DefaultSiteProfile]
		sr := SiteCARequest{Environment: q.Environment, ProductLine: q.ProductLine, Site: q.Site, Quota: q.Quota, ValidFor: q.ValidFor, Profile: DefaultSiteProfile}
		// The window starts now; the site CA must outlive the last certificate issued in it.
		if last := cert.NotAfter.Sub(now) - prof.Validity; last < sr.ValidFor {
			sr.ValidFor = last
		}
		if sr.ValidFor <= 0 {
			return nil, errorf(KindBadRequest, "the site CA certificate ends %s, too soon for certificates of %s issued from now", cert.NotAfter.Format(time.RFC3339), prof.Validity)
		}
		if sr.Keys, err = r.cfg.CA.KeystoreOf(q.KeyURI); err != nil {
			return nil, wrap(KindUnavailable, fmt.Errorf("the keystore of %s: %w", q.KeyURI, err))
		}
		site, err := r.recordSite(ctx, p, pc, sr, prof, before)
		if err != nil {
			return nil, err
		}
		r.caChanged(ctx, q.Replaces, rootIDOf(replacedRoot))
		return site.CA, nil
	}
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := before(tx); err != nil {
			return err
		}
		return r.recordCA(ctx, tx, p, pc)
	})
	if err != nil {
		return nil, err
	}
	r.caChanged(ctx, q.Replaces, rootIDOf(replacedRoot))
	return pc.row, nil
}

func rootIDOf(c *store.CA) string {
	if c == nil {
		return ""
	}
	return c.ID
}

// supersede marks CA old (if any) superseded by new, in tx: it issues nothing from now on and keeps signing
// the CRLs and OCSP answers of what it issued.
func (r *RA) supersede(ctx context.Context, tx store.Tx, p Principal, old, replacement string, at time.Time) error {
	if old == "" {
		return nil
	}
	cur, err := r.cfg.Store.GetCA(ctx, old)
	if err != nil {
		return err
	}
	if cur.Status != store.CAStatusActive {
		// Revoked or retired meanwhile: the new generation fills the role, the old keeps its state.
		return nil
	}
	if err := tx.SetCAStatus(ctx, old, store.CAStatusSuperseded); err != nil {
		return err
	}
	return r.success(ctx, tx, p, audit.ActionCASupersede, old, at, map[string]string{"by": replacement})
}

// checkKind checks that cert is what the ceremony gives q's kind (kindTemplate) under root.
func (r *RA) checkKind(q *store.CARequest, cert, root *x509.Certificate) error {
	want := r.kindSubject(q.Kind, q.Environment, q.ProductLine, q.Site, q.Generation).CommonName
	if cert.Subject.CommonName != want {
		return fmt.Errorf("its subject common name is %q, the request's is %q", cert.Subject.CommonName, want)
	}
	if cert.NotAfter.After(root.NotAfter) {
		return fmt.Errorf("it outlives its root (%s > %s)", cert.NotAfter.Format(time.DateOnly), root.NotAfter.Format(time.DateOnly))
	}
	if q.Kind == store.CAKindOCSPSigner {
		if cert.IsCA {
			return errors.New("an OCSP responder is not a CA")
		}
		if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning || len(cert.UnknownExtKeyUsage) != 0 {
			return errors.New("its extended key usage must be id-kp-OCSPSigning alone")
		}
		if cert.KeyUsage != x509.KeyUsageDigitalSignature {
			return errors.New("its key usage must be digitalSignature alone")
		}
		for _, e := range cert.Extensions {
			if e.Id.Equal(oidOCSPNoCheck) {
				return nil
			}
		}
		return errors.New("it lacks id-pkix-ocsp-nocheck")
	}
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		return errors.New("it must be a CA with path length 0")
	}
	if cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		return errors.New("its key usage must include keyCertSign and cRLSign")
	}
	switch q.Kind {
	case store.CAKindStation:
		if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || len(cert.UnknownExtKeyUsage) != 0 {
			return errors.New("a station CA's extended key usage must be clientAuth alone")
		}
	case store.CAKindSite:
		var w x509.Certificate
		constrain(&w)
		if !cert.PermittedDNSDomainsCritical || !slices.Equal(cert.ExcludedDNSDomains, w.ExcludedDNSDomains) ||
			!slices.Equal(cert.ExcludedEmailAddresses, w.ExcludedEmailAddresses) || !slices.Equal(cert.PermittedURIDomains, w.PermittedURIDomains) ||
			len(cert.ExcludedIPRanges) != len(w.ExcludedIPRanges) || len(cert.PermittedDNSDomains) != 0 || len(cert.PermittedIPRanges) != 0 {
			return errors.New("a site CA must carry the critical name constraints that exclude every DNS name, e-mail and IP address")
		}
		if len(cert.ExtKeyUsage) != 0 {
			return errors.New("a site CA carries no extended key usage")
		}
	case store.CAKindIssuing:
		if len(cert.ExtKeyUsage) != 0 || len(cert.UnknownExtKeyUsage) != 0 {
			return errors.New("an issuing CA carries no extended key usage")
		}
	}
	return nil
}

// CancelCARequest abandons the pending request for CA id: its key is destroyed and the request removed, so the
// role can be requested again.
func (r *RA) CancelCARequest(ctx context.Context, p Principal, id string) error {
	if err := r.authorize(ctx, p, audit.ActionCACancel, id, "cancel CA requests", RoleAdmin); err != nil {
		return err
	}
	reqs, err := r.cfg.Store.ListCARequests(ctx)
	if err != nil {
		return wrap(KindUnavailable, err)
	}
	var q *store.CARequest
	for _, x := range reqs {
		if x.CAID == id && x.State == store.CARequestPending {
			q = x
		}
	}
	if q == nil {
		return errorf(KindNotFound, "no pending request for CA %s (see 'keyward ca status')", id)
	}
	now := r.now()
	return r.tx(ctx, func(tx store.Tx) error {
		if err := tx.CloseCARequest(ctx, id, "cancelled", now); err != nil {
			return err
		}
		if err := tx.SetKeyState(ctx, q.KeyURI, store.KeyDestroyed, now); err != nil {
			return err
		}
		if err := r.success(ctx, tx, p, audit.ActionCACancel, id, now, map[string]string{"key": q.KeyURI}); err != nil {
			return err
		}
		return r.cfg.CA.Destroy(ctx, q.KeyURI)
	})
}

// Requests returns every CA request this store holds.
func (r *RA) Requests(ctx context.Context) ([]*store.CARequest, error) {
	return r.cfg.Store.ListCARequests(ctx)
}
