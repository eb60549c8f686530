// Package profile holds Keyward's certificate profiles: named, versioned certificate policies written in YAML
// (allowed keys, validity, subject and SAN rules, key usages, revocation pointers, a size limit, who may ask).
// It validates a profile when it is loaded, checks a certificate request against it, and builds the
// certificate template that the issuer lints and signs. It holds no keys and stores nothing.
//
// It may import internal/goodkey and internal/keystore (algorithm names). It must never sign or store.
package profile
