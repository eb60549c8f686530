// Package hierarchy declares Keyward's CA hierarchy: per environment a root CA, per (environment, product line)
// an issuing CA under it, with the profiles each product line issues under and its firmware policy. The
// declaration is YAML (keyward.yaml in the data directory), validated strictly on load. It also holds the CA
// certificate templates (RFC 5280 4.2.1.9 basic constraints, 4.2.1.3 key usage) and the CA ids every package
// names CAs by.
//
// It may import internal/issuer (serial numbers), internal/keystore (algorithm names) and internal/profile (key
// identifiers). It must never create a CA: the registration authority (internal/ra) decides that and the
// custodian (internal/ca) signs.
package hierarchy
