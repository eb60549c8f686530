// Package multi routes keystore calls across several custody backends, e.g. a software keystore for device-side
// development keys and a PKCS#11 token for CA keys, by the URI each key reference carries.
//
// It may import internal/keystore. It must never hold a key itself.
package multi
