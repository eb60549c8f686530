// Package architecture holds no code: its tests enforce the shape of Keyward that docs/ARCHITECTURE.md
// describes. The layering test reads the allowed import graph from that document and fails on any new edge;
// the call-site test finds, in the syntax of every package, the calls that only one package may make (a
// keystore signer, a certificate or CRL signature, a store transaction, an audit append).
//
// It may import only the standard library, and nothing imports it.
package architecture
