// Package verify is the relying-party check a clinician programmer, a hospital gateway or a cloud service
// embeds to decide whether a peer's certificate is a Keyward identity it should talk to.
//
// A Verifier answers, in this order, each refusal with its own error value (errors.Is):
//
//  1. the chain verifies to the environment's trust anchors (Options.Anchors, or the anchors a pkg/trust
//     store holds), with the certificates the peer sent as intermediates (ErrUntrusted);
//  2. every certificate is inside its validity at the verifier's clock, give or take Options.ClockSkew, the
//     explicit allowance for peers and verifiers whose clocks drift (ErrExpired, ErrNotYetValid);
//  3. the leaf allows the TLS side it plays: serverAuth for a server, clientAuth for a client; a certificate
//     without the extended key usage extension allows both (RFC 5280 4.2.1.12), as an implant's does
//     (ErrEKU);
//  4. the leaf carries exactly one Keyward role policy under Options.Arc (ErrWrongPolicy), the role is one
//     the caller accepts (ErrWrongRole; a station certificate never passes as a device, gateway or service),
//     and every CA between the leaf and the anchor carries that role's policy or anyPolicy (ErrWrongPolicy),
//     unless the caller accepts CAs made before Keyward's role policies (Options.AllowCAsWithoutPolicies);
//  5. when the peer is a TLS server and the caller named it: the name (ErrName);
//  6. the leaf and its CAs are not revoked (ErrRevoked), by a signed revocation filter held offline
//     (pkg/revocation/filter) or by the leaf's OCSP responder or CRL fetched online. When no source answers,
//     the caller's policy decides, which it must choose: FailClosed refuses (ErrRevocationUnknown), FailOpen
//     accepts and says so in the Result.
//
// The role table (device, gateway, service, station, operator) is pkg/certpolicy's: a certificate's role is
// its certificate policy, never its name or its key usages. docs/trust-anchors.md says which anchor to pin
// for which peer.
//
// Verifier.VerifyConnection plugs into crypto/tls (Config.VerifyConnection); ClientConfig and ServerConfig
// build TLS 1.3 configurations that use it.
//
// It may import only the standard library and Keyward's own pkg/ packages (a test enforces it), so device,
// gateway and service software can embed it. It never reads the system's trust store, and never accepts a
// certificate on a partial check.
package verify
