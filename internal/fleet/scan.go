package fleet

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/hygiene"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// Options says what to scan.
type Options struct {
	Env     string
	Product string    // "" for every product line of Env
	Now     time.Time // the report's generated_at
}

// Recommendations, one per kind of finding.
const (
	recommendDuplicate = "revoke every certificate of this key (keyCompromise): whoever holds one device's key can act as the others; re-key each device on the device itself, with a working RNG"
	recommendPrime     = "revoke these certificates (keyCompromise): anyone holding both public keys factors both moduli; fix the devices' key generation and re-key them"
	recommendRecovered = "revoke every certificate of this key (keyCompromise): its private key follows from two of its signatures; fix the device's RNG and re-key it"
	recommendNonce     = "revoke these certificates (keyCompromise): one signature nonce in the CSRs of different keys means the devices' RNG repeats; fix it and re-key the devices"
	recommendWeak      = "revoke this certificate (keyCompromise) and re-issue it for a key Keyward certifies (ECDSA P-256, P-384, P-521, Ed25519, RSA of 2048 bits or more with e = 65537)"
)

// scanner holds what one scan has gathered.
type scanner struct {
	opts    Options
	rd      store.Reader
	scope   map[string]bool // CA ids whose certificates are in scope
	rep     *Report
	moduli  map[string]*modulus // by the modulus's octets: an identical key is one modulus (and a duplicate-key finding)
	system  []systemKey         // Keyward's own keys: CA and firmware keys
	weakSet map[string]bool     // holders already reported weak, by identity
}

type modulus struct {
	n       *big.Int
	holders []Holder
}

type systemKey struct {
	holder Holder
	spki   []byte // SHA-256
}

// Scan runs the fleet key-hygiene scan of opts.Env (and opts.Product) over rd. It reads every certificate once
// (keys, sizes, curves, RSA moduli), the imported certificates of the environment, the CA and firmware keys,
// the keys certified for more than one subject and the CSR signatures that share a nonce, and returns every
// finding, ordered by kind and holders. It changes nothing.
func Scan(ctx context.Context, rd store.Reader, opts Options) (*Report, error) {
	cas, err := rd.ListCAs(ctx)
	if err != nil {
		return nil, ra.Wrap(ra.KindUnavailable, err)
	}
	s := &scanner{opts: opts, rd: rd, scope: map[string]bool{}, moduli: map[string]*modulus{}, weakSet: map[string]bool{},
		rep: &Report{Kind: ReportKind, Env: opts.Env, Product: opts.Product, GeneratedAt: opts.Now.UTC().Truncate(time.Second), Findings: []Finding{}}}
	for _, c := range cas {
		if c.Environment == opts.Env && (opts.Product == "" || c.ProductLine == opts.Product) {
			s.scope[c.ID] = true
		}
	}
	if len(s.scope) == 0 {
		what := fmt.Sprintf("environment %q", opts.Env)
		if opts.Product != "" {
			what = fmt.Sprintf("product line %q of environment %q", opts.Product, opts.Env)
		}
		return nil, ra.FieldErrorf(ra.KindNotFound, "environment", "no CA of %s in this store: nothing to scan (check --env and --product)", what)
	}
	if err := s.systemKeys(ctx, cas); err != nil {
		return nil, err
	}
	if err := rd.WalkCertificates(ctx, func(c *store.Certificate) error {
		if !s.scope[c.IssuerID] {
			return nil
		}
		s.rep.Scanned.Certificates++
		s.key(certHolder(c, true), c.DER)
		return nil
	}); err != nil {
		return nil, ra.Wrap(ra.KindUnavailable, err)
	}
	if err := rd.WalkImportedCertificates(ctx, opts.Env, func(c *store.ImportedCertificate) error {
		if !s.importedInScope(c) {
			return nil
		}
		s.rep.Scanned.Imported++
		s.key(importedHolder(c, true), c.DER)
		return nil
	}); err != nil {
		return nil, ra.Wrap(ra.KindUnavailable, err)
	}
	if err := s.duplicates(ctx); err != nil {
		return nil, err
	}
	if err := s.sharedPrimes(ctx); err != nil {
		return nil, err
	}
	if err := s.nonces(ctx); err != nil {
		return nil, err
	}
	sortFindings(s.rep.Findings)
	return s.rep, nil
}

func (s *scanner) importedInScope(c *store.ImportedCertificate) bool {
	return c.Environment == s.opts.Env && (s.opts.Product == "" || c.ProductLine == "" || c.ProductLine == s.opts.Product)
}

// systemKeys reads the environment's CA and firmware keys: their sizes and curves are checked and their RSA
// moduli join batch GCD like any other.
func (s *scanner) systemKeys(ctx context.Context, cas []*store.CA) error {
	for _, c := range cas {
		if c.Environment != s.opts.Env || (s.opts.Product != "" && c.ProductLine != "" && c.ProductLine != s.opts.Product) {
			continue
		}
		s.rep.Scanned.CAKeys++
		s.ownKey(Holder{Kind: HolderCA, Issuer: c.ID, Subject: c.Subject, Status: c.Status, KeyURI: c.KeyURI}, c.CertDER)
	}
	roots, err := s.rd.FirmwareRoots(ctx, s.opts.Env)
	if err != nil {
		return ra.Wrap(ra.KindUnavailable, err)
	}
	for _, r := range roots {
		s.rep.Scanned.FirmwareKeys++
		s.ownKey(Holder{Kind: HolderFirmwareRoot, Issuer: fmt.Sprintf("%s firmware trust v%d", r.Environment, r.Version), KeyURI: r.KeyURI}, r.CertDER)
	}
	keys, err := s.rd.FirmwareSigningKeys(ctx, s.opts.Env)
	if err != nil {
		return ra.Wrap(ra.KindUnavailable, err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k.Algorithm, "ml-dsa") {
			continue // an ML-DSA key certified by a COSE key certificate: no RNG trace this scan reads
		}
		s.rep.Scanned.FirmwareKeys++
		s.ownKey(Holder{Kind: HolderFirmwareKey, Issuer: fmt.Sprintf("%s firmware trust v%d", k.Environment, k.RootVersion), Status: k.Status, KeyURI: k.KeyURI}, k.Cert)
	}
	// Two of Keyward's own keys with one public key, under different keystore keys: the keystore's RNG repeated.
	byKey := map[string][]Holder{}
	for _, k := range s.system {
		byKey[string(k.spki)] = append(byKey[string(k.spki)], k.holder)
	}
	for _, hs := range byKey {
		uris := map[string]bool{}
		for _, h := range hs {
			uris[h.KeyURI] = true
		}
		if len(uris) > 1 {
			s.add(Finding{Kind: KindDuplicateKey, Summary: fmt.Sprintf("%d of Keyward's own keys in different keystore entries have one public key", len(uris)),
				Holders: hs, Recommendation: recommendDuplicate})
		}
	}
	return nil
}

// ownKey reads one of Keyward's own keys from its certificate.
func (s *scanner) ownKey(h Holder, certDER []byte) {
	spki, err := hygiene.CertificateSPKI(certDER)
	if err != nil {
		s.rep.Unreadable = append(s.rep.Unreadable, fmt.Sprintf("%s %s: %v", h.Kind, h.KeyURI, err))
		return
	}
	sum := sha256.Sum256(spki)
	h.SPKISHA256 = hex.EncodeToString(sum[:])
	s.system = append(s.system, systemKey{holder: h, spki: sum[:]})
	s.checkKey(h, spki)
}

// key reads the key of a certificate (issued here or imported): its rules, and its RSA modulus.
func (s *scanner) key(h Holder, certDER []byte) {
	spki, err := hygiene.CertificateSPKI(certDER)
	if err != nil {
		s.add(Finding{Kind: KindWeakKey, Rule: hygiene.WeakInvalid, Summary: fmt.Sprintf("the certificate's key cannot be read: %v", err),
			Holders: []Holder{h}, Recommendation: recommendWeak})
		return
	}
	s.checkKey(h, spki)
}

func (s *scanner) checkKey(h Holder, spki []byte) {
	k, weak := hygiene.CheckSPKI(spki)
	h.Algorithm = k.Algorithm
	if h.SPKISHA256 == "" {
		sum := sha256.Sum256(spki)
		h.SPKISHA256 = hex.EncodeToString(sum[:])
	}
	for _, w := range weak {
		s.add(Finding{Kind: KindWeakKey, Rule: w.Rule, Summary: w.Detail, Holders: []Holder{h}, Recommendation: recommendWeak})
	}
	if pub, ok := k.Public.(*rsa.PublicKey); ok && pub.N.Sign() > 0 {
		id := string(pub.N.Bytes())
		m := s.moduli[id]
		if m == nil {
			m = &modulus{n: pub.N}
			s.moduli[id] = m
		}
		m.holders = append(m.holders, h)
	}
}

func (s *scanner) add(f Finding) { s.rep.Findings = append(s.rep.Findings, f) }

// duplicates reports every key certified for more than one subject (certificates issued here or imported) and
// every key of Keyward's own that a certificate also holds.
func (s *scanner) duplicates(ctx context.Context) error {
	shared, err := s.rd.SharedKeys(ctx)
	if err != nil {
		return ra.Wrap(ra.KindUnavailable, err)
	}
	seen := map[string]bool{}
	for _, h := range shared {
		seen[string(h)] = true
		holders, inScope, err := s.holdersOf(ctx, h)
		if err != nil {
			return err
		}
		if !inScope {
			continue
		}
		subjects := map[string]bool{}
		for _, x := range holders {
			subjects[x.Subject] = true
		}
		s.add(Finding{Kind: KindDuplicateKey, Summary: fmt.Sprintf("one public key (SPKI SHA-256 %x) is certified for %d devices", h, len(subjects)),
			Holders: holders, Recommendation: recommendDuplicate})
	}
	for _, k := range s.system {
		if seen[string(k.spki)] {
			continue
		}
		holders, _, err := s.holdersOf(ctx, k.spki)
		if err != nil {
			return err
		}
		if len(holders) == 0 {
			continue
		}
		seen[string(k.spki)] = true
		s.add(Finding{Kind: KindDuplicateKey, Summary: fmt.Sprintf("the public key of %s %s is also certified for %d certificates", k.holder.Kind, k.holder.KeyURI, len(holders)),
			Holders: append([]Holder{k.holder}, holders...), Recommendation: recommendDuplicate})
	}
	return nil
}

// holdersOf returns the certificates, issued here and imported, of SPKI hash h, and whether any is in scope.
func (s *scanner) holdersOf(ctx context.Context, h []byte) ([]Holder, bool, error) {
	certs, err := s.rd.CertificatesBySPKI(ctx, h)
	if err != nil {
		return nil, false, ra.Wrap(ra.KindUnavailable, err)
	}
	imported, err := s.rd.ImportedBySPKI(ctx, h)
	if err != nil {
		return nil, false, ra.Wrap(ra.KindUnavailable, err)
	}
	var out []Holder
	any := false
	for _, c := range certs {
		x := certHolder(c, s.scope[c.IssuerID])
		x.Algorithm = algorithmOf(c.DER)
		any = any || x.InScope
		out = append(out, x)
	}
	for _, c := range imported {
		x := importedHolder(c, s.importedInScope(c))
		x.Algorithm = algorithmOf(c.DER)
		any = any || x.InScope
		out = append(out, x)
	}
	return out, any, nil
}

// sharedPrimes runs batch GCD over every distinct RSA modulus and reports each prime two moduli share, confirmed
// by dividing both (a shared prime factors both keys).
func (s *scanner) sharedPrimes(ctx context.Context) error {
	ids := make([]string, 0, len(s.moduli))
	for id := range s.moduli {
		ids = append(ids, id)
	}
	sort.Strings(ids) // a deterministic order, so the findings are too
	ns := make([]*big.Int, len(ids))
	for i, id := range ids {
		ns[i] = s.moduli[id].n
	}
	s.rep.Scanned.RSAModuli = len(ns)
	start := time.Now()
	found, err := hygiene.BatchGCD(ctx, ns)
	s.rep.BatchGCD = GCDStats{Moduli: len(ns), Seconds: time.Since(start).Seconds()}
	if err != nil {
		return ra.Wrap(ra.KindUnavailable, fmt.Errorf("batch GCD: %w", err))
	}
	// Each flagged modulus joins the group of each of its proper factors: a modulus whose two primes are both
	// shared (with different moduli) is in two groups.
	groups := map[string][]int{}
	one := big.NewInt(1)
	for _, f := range found {
		n := ns[f.Index]
		var factors []*big.Int
		if f.Factor.Cmp(n) < 0 && f.Factor.Cmp(one) > 0 {
			factors = append(factors, f.Factor, new(big.Int).Quo(n, f.Factor))
		}
		for _, j := range f.With {
			if g := new(big.Int).GCD(nil, nil, n, ns[j]); g.Cmp(one) > 0 && g.Cmp(n) < 0 {
				factors = append(factors, g)
			}
		}
		for _, p := range factors {
			k := string(p.Bytes())
			if len(groups[k]) == 0 || groups[k][len(groups[k])-1] != f.Index {
				groups[k] = append(groups[k], f.Index)
			}
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		members := groups[k]
		if len(members) < 2 {
			continue
		}
		p := new(big.Int).SetBytes([]byte(k))
		var holders []Holder
		confirmed := true
		inScope := false
		for _, i := range members {
			if new(big.Int).Mod(ns[i], p).Sign() != 0 {
				confirmed = false
			}
			for _, h := range s.moduli[ids[i]].holders {
				inScope = inScope || h.InScope || h.Kind != HolderImported && h.Kind != HolderCertificate
				holders = append(holders, h)
			}
		}
		if !confirmed || !inScope {
			continue
		}
		s.add(Finding{Kind: KindSharedPrime, Summary: fmt.Sprintf("%d RSA moduli share a %d-bit prime: each is factored", len(members), p.BitLen()),
			PrivateKeyRecovered: true, Confirmation: "the shared prime divides every one of these moduli, so each factors as prime times quotient; the factors are not shown",
			Holders: holders, Recommendation: recommendPrime})
	}
	return nil
}

// nonces reports, among the kept CSR signatures that share R: one key's signatures over two messages (for
// ECDSA, the private key is solved for and confirmed by d·G), and one R under different keys.
func (s *scanner) nonces(ctx context.Context) error {
	rows, err := s.rd.CSRNonceCollisions(ctx)
	if err != nil {
		return ra.Wrap(ra.KindUnavailable, err)
	}
	s.rep.Scanned.CSRSignatures = len(rows)
	for i := 0; i < len(rows); {
		j := i + 1
		for j < len(rows) && bytes.Equal(rows[j].Sig.R, rows[i].Sig.R) {
			j++
		}
		s.nonceGroup(rows[i:j])
		i = j
	}
	return nil
}

// nonceGroup judges the certificates whose CSR signatures share one R.
func (s *scanner) nonceGroup(group []*store.SignedCertificate) {
	inScope := false
	byKey := map[string][]*store.SignedCertificate{}
	var order []string
	for _, g := range group {
		inScope = inScope || s.scope[g.Cert.IssuerID]
		k := string(g.Cert.SPKISHA256)
		if byKey[k] == nil {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], g)
	}
	if !inScope {
		return
	}
	var keysWithTwoMessages int
	for _, k := range order {
		sigs := byKey[k]
		if !twoMessages(sigs) {
			continue // one CSR sent twice (a renewal with the same request): one message, one signature
		}
		keysWithTwoMessages++
		f := Finding{Kind: KindNonceReuse, Holders: s.signedHolders(sigs), Recommendation: recommendRecovered}
		switch {
		case x509.SignatureAlgorithm(sigs[0].Sig.Algorithm) == x509.PureEd25519:
			f.Summary = fmt.Sprintf("one Ed25519 key signed %d different CSRs with one nonce R (Ed25519 derives R from the message: its signer is broken); the key follows from the two messages, which are not kept", len(sigs))
		case recoverECDSA(sigs):
			f.PrivateKeyRecovered = true
			f.Summary = fmt.Sprintf("one ECDSA key signed %d different CSRs with one nonce: its private key is recovered", len(sigs))
			f.Confirmation = "d = (s1·k − h1)/r with k = (h1 − h2)/(s1 − s2) mod n, and d·G equals the certificate's public key; d is neither kept nor shown"
		default:
			f.Summary = fmt.Sprintf("one ECDSA key signed %d different CSRs with one r; no private key followed from them (d·G matched no candidate)", len(sigs))
		}
		s.add(f)
	}
	if len(order) > 1 {
		var all []*store.SignedCertificate
		for _, k := range order {
			all = append(all, byKey[k]...)
		}
		s.add(Finding{Kind: KindRepeatedNonce, Summary: fmt.Sprintf("%d different keys' CSR signatures share one nonce commitment R: the devices' RNG repeats", len(order)),
			Holders: s.signedHolders(all), Recommendation: recommendNonce})
	}
}

// twoMessages reports whether sigs sign at least two different messages.
func twoMessages(sigs []*store.SignedCertificate) bool {
	for _, x := range sigs[1:] {
		if !bytes.Equal(x.Sig.Digest, sigs[0].Sig.Digest) {
			return true
		}
	}
	return false
}

// recoverECDSA tries each pair of sigs over different messages until one gives away the key (confirmed).
func recoverECDSA(sigs []*store.SignedCertificate) bool {
	spki, err := hygiene.CertificateSPKI(sigs[0].Cert.DER)
	if err != nil {
		return false
	}
	k, _ := hygiene.CheckSPKI(spki)
	pub, ok := k.Public.(*ecdsa.PublicKey)
	if !ok {
		return false
	}
	sig := func(x *store.SignedCertificate) hygiene.ECDSASignature {
		return hygiene.ECDSASignature{R: new(big.Int).SetBytes(x.Sig.R), S: new(big.Int).SetBytes(x.Sig.S), Digest: x.Sig.Digest}
	}
	for i := range sigs {
		for j := i + 1; j < len(sigs); j++ {
			if !bytes.Equal(sigs[i].Sig.Digest, sigs[j].Sig.Digest) && hygiene.RecoverNonceReuse(pub, sig(sigs[i]), sig(sigs[j])) {
				return true
			}
		}
	}
	return false
}

func (s *scanner) signedHolders(sigs []*store.SignedCertificate) []Holder {
	out := make([]Holder, len(sigs))
	for i, x := range sigs {
		out[i] = certHolder(x.Cert, s.scope[x.Cert.IssuerID])
		out[i].Algorithm = algorithmOf(x.Cert.DER)
	}
	return out
}

func certHolder(c *store.Certificate, inScope bool) Holder {
	return Holder{Kind: HolderCertificate, Serial: c.Serial, Issuer: c.IssuerID, Subject: c.Subject, Status: c.Status,
		SPKISHA256: hex.EncodeToString(c.SPKISHA256), InScope: inScope}
}

func importedHolder(c *store.ImportedCertificate, inScope bool) Holder {
	return Holder{Kind: HolderImported, Serial: c.Serial, Issuer: c.Issuer, Subject: c.Subject, Source: c.Source,
		SPKISHA256: hex.EncodeToString(c.SPKISHA256), InScope: inScope}
}

// algorithmOf names the key of a DER certificate ("" if it cannot be read).
func algorithmOf(der []byte) string {
	spki, err := hygiene.CertificateSPKI(der)
	if err != nil {
		return ""
	}
	k, _ := hygiene.CheckSPKI(spki)
	return k.Algorithm
}

// sortFindings orders findings by kind, then by their first holder, so that a report of the same store reads
// the same every time.
func sortFindings(fs []Finding) {
	key := func(f Finding) string {
		if len(f.Holders) == 0 {
			return f.Kind
		}
		h := f.Holders[0]
		return f.Kind + "\x00" + h.Kind + "\x00" + h.Serial + "\x00" + h.KeyURI + "\x00" + h.Source + "\x00" + f.Rule
	}
	for i := range fs {
		sort.SliceStable(fs[i].Holders, func(a, b int) bool {
			x, y := fs[i].Holders[a], fs[i].Holders[b]
			if x.Kind != y.Kind {
				return x.Kind < y.Kind
			}
			return x.Serial+x.KeyURI+x.Source < y.Serial+y.KeyURI+y.Source
		})
	}
	sort.SliceStable(fs, func(a, b int) bool { return key(fs[a]) < key(fs[b]) })
}
