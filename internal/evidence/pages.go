package evidence

import (
	"crypto/x509"
	"fmt"
	"sort"
	"strings"

	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

func (in *Input) scopeName() string {
	if in.Product != "" {
		return in.Env + "/" + in.Product
	}
	return in.Env
}

func glossaryPage(in *Input, g *Glossary) *page {
	rows := make([][]string, 0, len(g.Keys))
	for _, k := range g.Keys {
		destroyed, rotated, rotateBy := "-", "-", "on operator decision"
		if k.Destroyed != nil {
			destroyed = rfc3339(*k.Destroyed)
		}
		if k.RotatedAt != nil {
			rotated = rfc3339(*k.RotatedAt)
		}
		if k.RotateBy != nil {
			rotateBy = rfc3339(*k.RotateBy)
		}
		rows = append(rows, []string{k.Purpose, k.Algorithm, k.Custody, k.URI, k.Owner, k.State, rfc3339(k.StateSince), rfc3339(k.CreatedAt), rotated, rotateBy, destroyed})
	}
	dev := make([][]string, 0, len(g.DeviceKeys))
	for _, d := range g.DeviceKeys {
		destroyed := "-"
		if d.Destroyed != nil {
			destroyed = rfc3339(*d.Destroyed)
		}
		dev = append(dev, []string{d.Purpose, d.Algorithm, d.Custody, d.State, itoa(d.Count), rfc3339(d.First), rfc3339(d.Last), destroyed})
	}
	p := &page{Title: "Key glossary: " + in.scopeName(), Subtitle: "Every key of this scope, generated from the key table at " + rfc3339(in.Now) + " (key-glossary.json holds the same).",
		Sections: []section{
			{ID: "held", Heading: "Keys Keyward holds or manages", Level: 2,
				Paras: []string{"Keys are named by URI (the software keystore's soft: names, RFC 7512 pkcs11: URIs); no key material is in this pack. " +
					"A CA key must be rotated (rolled over) before its certificate ends: 'rotate by'. 'Rotated' is when a later generation took over its role."},
				Table: &table{Head: []string{"Purpose", "Algorithm", "Custody", "URI", "Owner", "State", "Since", "Created", "Rotated", "Rotate by", "Destroyed"}, Rows: rows}},
			{ID: "device", Heading: "Keys held on devices and factory stations", Level: 2,
				Paras: []string{"Generated in the device's or station's secure element; Keyward knows their public keys only (by SHA-256 of the SubjectPublicKeyInfo). Counted by purpose, algorithm and state."},
				Table: &table{Head: []string{"Purpose", "Algorithm", "Custody", "State", "Keys", "First created", "Last created", "Last destroyed"}, Rows: dev}},
		}}
	return p
}

func tlsPage(in *Input, st *TLSStatement) *page {
	yes := func(b bool) string {
		if b {
			return "accepted"
		}
		return "refused"
	}
	var vrows, grows, srows [][]string
	for _, v := range st.Versions {
		vrows = append(vrows, []string{v.Name, fmt.Sprintf("0x%04x", v.ID), yes(v.Accepted)})
	}
	for _, g := range st.Groups {
		grows = append(grows, []string{g.Name, fmt.Sprintf("%d", g.ID), yes(g.Accepted)})
	}
	for _, s := range st.CipherSuites {
		srows = append(srows, []string{s.Name, fmt.Sprintf("0x%04x", s.ID), s.Version})
	}
	return &page{Title: "TLS configuration statement", Subtitle: "Found at " + rfc3339(in.Now) + " by loopback handshakes against the listener's own configuration (" + st.Library + "); tls.json holds the same.",
		Sections: []section{
			{ID: "listeners", Heading: "Listeners", Level: 2, Paras: []string{
				"The operator API, EST enrollment and the console share one HTTPS listener with this configuration. Client certificates: " + st.ClientAuth +
					" (requested at the handshake and verified per route: EST stations and devices by mTLS, operators by token).",
				"The public listener (CRLs, OCSP responses, CA certificates) is plain HTTP on purpose: it serves only objects signed by a CA, as RFC 5280 and RFC 6960 practice expects.",
				"Configured cipher suites: " + joinOr(st.ConfiguredCipherSuites, "none set (library defaults)") + ". Configured groups: " + joinOr(st.ConfiguredGroups, "none set (library defaults)") + "."}},
			{ID: "versions", Heading: "Protocol versions", Level: 2, Table: &table{Head: []string{"Version", "Code", "Listener"}, Rows: vrows}},
			{ID: "groups", Heading: "Key exchange groups (TLS 1.3)", Level: 2, Table: &table{Head: []string{"Group", "Code", "Listener"}, Rows: grows}},
			{ID: "suites", Heading: "Cipher suites", Level: 2, Paras: []string{"TLS 1.3 suites are not configurable in crypto/tls: every one is an AEAD (RFC 8446 section 9.1)."},
				Table: &table{Head: []string{"Suite", "Code", "Version"}, Rows: srows}},
		}}
}

func revocationPage(in *Input, classes []RevocationClass) *page {
	rows := make([][]string, 0, len(classes))
	for _, c := range classes {
		rows = append(rows, []string{c.Profile, c.Role, strings.Join(c.ProductLines, ", "), c.Validity, strings.Join(c.Strategy, ", "),
			joinOr(c.CRLDistributionPoints, "-"), joinOr(c.OCSPServers, "-"), c.Rationale})
	}
	return &page{Title: "Revocation strategy per device class: " + in.scopeName(), Subtitle: "Derived from each certificate profile's fields; revocation.json holds the same.",
		Sections: []section{
			{ID: "classes", Heading: "Device classes", Level: 2, Table: &table{Head: []string{"Profile", "Role", "Product lines", "Validity", "Strategy", "CRL", "OCSP", "Why"}, Rows: rows}},
			{ID: "cas", Heading: "CAs", Level: 2, Paras: []string{
				"Each CA signs its own CRLs with its CA key (no indirect CRLs); delta CRLs follow every revocation while 'keyward serve' publishes. " +
					"OCSP responses are signed by a delegated responder certificate whose key has purpose ocsp-signing. " +
					"The revocation filter is signed by a crl-signing key and lists every revoked CA of the environment, so a relying party refuses a revoked CA's whole subtree. " +
					"An offline root's CRL is signed in a ceremony ('keyward ca ceremony crl')."}},
		}}
}

// policyPage is the certificate policy and practice statement in the outline of RFC 3647 section 6, with the
// sections Keyward can fill from keyward.yaml, the profiles and the CA table; the rest are named as the
// manufacturer's to write.
func policyPage(in *Input, g *Glossary, tlsSt *TLSStatement) *page {
	arc := in.Config.Arc()
	names, used := in.profiles()
	cas := in.cas()
	env := in.Config.Environments[in.Env]
	var caRows [][]string
	for _, c := range cas {
		caRows = append(caRows, []string{c.ID, c.Kind, c.Subject, c.Status, itoa(c.Generation), rfc3339(c.NotBefore), rfc3339(c.NotAfter), c.KeyURI})
	}
	var oidRows [][]string
	roles := map[string]bool{}
	for _, n := range names {
		roles[string(in.Profiles[n].Role)] = true
	}
	roleNames := make([]string, 0, len(roles))
	for r := range roles {
		roleNames = append(roleNames, r)
	}
	sort.Strings(roleNames)
	for _, r := range roleNames {
		if r == "" {
			oidRows = append(oidRows, []string{"(none: a profile written before roles)", "-"})
			continue
		}
		oidRows = append(oidRows, []string{r, arc.Policy(roleOf(r)).String()})
	}
	var usage, naming, profRows [][]string
	for _, n := range names {
		p := in.Profiles[n]
		usage = append(usage, []string{p.Name, string(p.Role), strings.Join(profile.KeyUsageNames(p.KeyUsage), ", "), joinOr(profile.ExtKeyUsageNames(p.ExtKeyUsage), "-"), joinOr(p.AllowedPrincipals, "-")})
		cn := "none allowed"
		if p.Subject.CommonName != nil {
			cn = "matches " + p.Subject.CommonName.String()
			if p.Subject.CommonNameRequired {
				cn += " (required)"
			}
		}
		naming = append(naming, []string{p.Name, cn, orDash(p.Subject.Organization), orDash(p.Subject.OrganizationalUnit), sanRule(p)})
		algs := make([]string, len(p.KeyAlgorithms))
		for i, a := range p.KeyAlgorithms {
			algs[i] = string(a)
		}
		profRows = append(profRows, []string{p.Name, itoa(p.Version), strings.Join(used[n], ", "), strings.Join(algs, ", "), profile.FormatDuration(p.Validity),
			fmt.Sprintf("%.2f", p.RenewalWindow), itoa(p.MaxDERSize), fmt.Sprint(p.ShortLived)})
	}
	var sizes [][]string
	sizes = append(sizes, []string{in.Env + " root", env.Root.Algorithm, profile.FormatDuration(timeDuration(env.Root.Validity)), fmt.Sprint(env.Root.Offline)})
	for _, pl := range in.Config.ProductLineNames(in.Env) {
		if in.Product != "" && pl != in.Product {
			continue
		}
		s := env.ProductLines[pl]
		sizes = append(sizes, []string{in.Env + "/" + pl + " issuing CA", s.Algorithm, profile.FormatDuration(timeDuration(s.Validity)), "false"})
	}
	custody := map[string]int{}
	for _, k := range g.Keys {
		custody[k.Custody]++
	}
	var custodyRows [][]string
	for _, c := range sortedKeys(custody) {
		custodyRows = append(custodyRows, []string{c, itoa(custody[c]), custodyText(c)})
	}
	accepted := []string{}
	for _, v := range tlsSt.Versions {
		if v.Accepted {
			accepted = append(accepted, v.Name)
		}
	}
	todo := "Not generated: the manufacturer writes this section (RFC 3647 outline)."
	return &page{Title: "Certificate policy and certification practice statement: " + in.Config.Organization + ", " + in.scopeName(),
		Subtitle: "Generated from keyward.yaml, the certificate profiles and the CA table at " + rfc3339(in.Now) + ", in the outline of RFC 3647 section 6. Sections Keyward cannot fill say so.",
		Sections: []section{
			{ID: "1", Heading: "1. Introduction", Level: 2},
			{ID: "1.1", Heading: "1.1 Overview", Level: 3, Paras: []string{fmt.Sprintf("%s runs a private PKI for connected medical devices with Keyward. Environment %s has its own root CA%s; each product line has an issuing CA under it. Nothing issued under one environment validates under another's root.",
				in.Config.Organization, in.Env, map[bool]string{true: " (offline: its key exists only in ceremonies)", false: ""}[env.Root.Offline])}},
			{ID: "1.2", Heading: "1.2 Document name and identification", Level: 3, Paras: []string{"Policy identifier arc: " + arc.String() + ". Every certificate carries the policy of its holder's role, <arc>.<role number>; CA certificates carry the policies of the roles they may issue."},
				Table: &table{Head: []string{"Role", "Policy OID"}, Rows: oidRows}},
			{ID: "1.3", Heading: "1.3 PKI participants", Level: 3, Paras: []string{"Certification authorities (below); the registration authority is Keyward's RA, which authorises and audits every change; subscribers are the devices, gateways and services of the profiles in section 7; relying parties are the peers that verify them."},
				Table: &table{Head: []string{"CA", "Kind", "Subject", "Status", "Generation", "Not before", "Not after", "Key URI"}, Rows: caRows}},
			{ID: "1.4", Heading: "1.4 Certificate usage", Level: 3, Table: &table{Head: []string{"Profile", "Role", "Key usage", "Extended key usage", "May be requested by"}, Rows: usage}},
			{ID: "1.5", Heading: "1.5 Policy administration", Level: 3, Paras: []string{todo}},
			{ID: "2", Heading: "2. Publication and repository responsibilities", Level: 2, Paras: []string{"CA certificates, CRLs and OCSP responses are published on Keyward's public listener at the URLs the profiles name (see revocation.html); the audit log's signed checkpoint at /audit/checkpoint."}},
			{ID: "3", Heading: "3. Identification and authentication", Level: 2},
			{ID: "3.1", Heading: "3.1 Naming", Level: 3, Paras: []string{"A subject holds at most a CN, and the O and OU the profile fixes; nothing else from a request is copied."},
				Table: &table{Head: []string{"Profile", "Common name", "O", "OU", "Subject alternative names"}, Rows: naming}},
			{ID: "3.2", Heading: "3.2 Initial identity validation", Level: 3, Paras: []string{"Every request proves possession of its private key (the CSR's signature is verified). Devices are enrolled over EST (RFC 7030) by factory stations authenticated with mTLS, scoped to sites, product lines, environment and quota; a device serial the registry holds as decommissioned is refused. Keys of weak curves or sizes, and a key already certified for another subject, are refused."}},
			{ID: "4", Heading: "4. Certificate life-cycle operational requirements", Level: 2, Paras: []string{
				"Issuance: every certificate is built, linted with zlint's RFC 5280 lints and size-checked before the real signature, and the signed bytes are the linted ones. Renewal: devices re-enroll over EST within each profile's renewal window (the fraction of the validity before its end). Revocation: see revocation.html."}},
			{ID: "5", Heading: "5. Facility, management and operational controls", Level: 2, Paras: []string{
				"5.4 Audit logging: every change appends one audit event in the same transaction, hash-chained and the leaf of an RFC 9162 Merkle tree; checkpoints are signed with the installation's Ed25519 audit-signing key. This pack carries the current checkpoint (audit/checkpoint) and, where a previous pack exists, a consistency proof from its checkpoint.",
				"5.1 to 5.3 and 5.5 to 5.8 (physical, procedural and personnel controls, archival, key changeover procedures, compromise and disaster recovery, termination): " + todo}},
			{ID: "6", Heading: "6. Technical security controls", Level: 2},
			{ID: "6.1", Heading: "6.1 Key pair generation and sizes", Level: 3, Paras: []string{"CA keys are generated in their keystore and never leave it. CA algorithms and certificate validity periods (6.3.2):"},
				Table: &table{Head: []string{"CA", "Algorithm", "Validity", "Offline"}, Rows: sizes}},
			{ID: "6.2", Heading: "6.2 Private key protection", Level: 3, Paras: []string{"Each key is used only for its purpose (the keystore refuses any other use). Custody of the keys in key-glossary.html:"},
				Table: &table{Head: []string{"Custody", "Keys", "Protection"}, Rows: custodyRows}},
			{ID: "6.7", Heading: "6.7 Network security controls", Level: 3, Paras: []string{"TLS versions accepted by the listener: " + joinOr(accepted, "none") + " (tls.html)."}},
			{ID: "7", Heading: "7. Certificate, CRL and OCSP profiles", Level: 2, Paras: []string{"Certificates are X.509 v3 with random positive serials of 16 bytes from crypto/rand; CRLs are X.509 v2 with delta CRLs; OCSP responses follow RFC 6960."},
				Table: &table{Head: []string{"Profile", "Version", "Product lines", "Key algorithms", "Validity", "Renewal window", "Max DER bytes", "Short-lived"}, Rows: profRows}},
			{ID: "8", Heading: "8. Compliance audit and other assessments", Level: 2, Paras: []string{todo}},
			{ID: "9", Heading: "9. Other business and legal matters", Level: 2, Paras: []string{todo}},
		}}
}

func custodyText(c string) string {
	switch c {
	case "software":
		return "software keystore: each key sealed at rest with AES-256-GCM under a key-encryption key derived with scrypt from the passphrase"
	case "pkcs11":
		return "PKCS#11 token (HSM): generated sensitive and non-extractable, used through the token"
	}
	return c
}

func sanRule(p *profile.Profile) string {
	var parts []string
	if p.SANs.DNS.Max > 0 {
		parts = append(parts, fmt.Sprintf("up to %d DNS names matching %s", p.SANs.DNS.Max, p.SANs.DNS.Pattern))
	}
	if p.SANs.URI.Max > 0 {
		parts = append(parts, fmt.Sprintf("up to %d URIs matching %s", p.SANs.URI.Max, p.SANs.URI.Pattern))
	}
	if p.SANs.IP {
		parts = append(parts, "IP addresses")
	}
	return joinOr(parts, "none allowed")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// caCertificates returns the in-scope CAs' certificates, parsed, by CA id.
func caCertificates(cas []*store.CA) map[string]*x509.Certificate {
	out := map[string]*x509.Certificate{}
	for _, c := range cas {
		if len(c.CertDER) == 0 {
			continue
		}
		if cert, err := x509.ParseCertificate(c.CertDER); err == nil {
			out[c.ID] = cert
		}
	}
	return out
}
