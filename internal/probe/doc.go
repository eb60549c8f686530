// Package probe is a negative-testing kit for a device's TLS endpoint ('keyward probe tls'): it presents a
// catalogue of certificates and offers a relying party must refuse (expired, not yet valid, wrong extended
// key usage, a station certificate where another role is expected, another environment's or an unknown CA,
// self-signed, revoked, missing intermediate, wrong name, weak keys and signatures, old protocol versions and
// weak cipher suites) and reports, for each, the outcome expected, the outcome observed, PASS, FAIL or N/A,
// and the TLS alert seen.
//
// It plays either side: a TLS client against a device that serves (Options.Side Client: every case is one
// connection to Options.Target, presenting the case's client certificate when the target asks for one), or a
// TLS server a device connects to (Side Server: every case answers one accepted connection with the case's
// server certificate, in catalogue order).
//
// Where the flaw must be the only thing wrong, the certificate chains to the environment's real anchor: it is
// issued through the registration authority (ra.IssueProbe: audited, by a principal named "probe:...",
// short-lived, its key only in the probe's memory), with the validity window or extended key usages replaced;
// the station case is a factory station added for the run and revoked after it; the revoked case's
// certificate is revoked by ra.Revoke and the issuing CA's CRL and the revocation filters are republished
// before any case runs. The weak-crypto, unknown-CA and self-signed cases are made under a throwaway CA
// generated in memory for the run and never stored: Keyward's own keys never sign a weak certificate. Where
// Go's crypto/tls cannot present a case (a P-192 key: crypto/elliptic has no P-192, and Keyward uses only
// vetted crypto, so the probe cannot prove possession of such a key) the case is N/A with that reason, never
// a PASS.
//
// Probes are refused in the production environment (ra.ProductionEnvironment, keyward.yaml's
// environments.production), before anything is issued or any connection made.
//
// The report (Report) is JSON with kind "probe-tls"; SaveCopy writes a copy of it to
// <data-dir>/reports/probe/<UTC YYYYMMDDTHHMMSSZ>-<env>.json (directories 0700, file 0600, written whole
// then renamed into place), which is where 'keyward evidence' reads the newest from: that path and the JSON
// field names are a contract. WriteHTML renders the same report as one self-contained HTML page.
//
// It may import the registration authority (ra), the revocation publisher (revocation), the hierarchy's
// names (hierarchy) and pkg/certpolicy. It must never open a keystore or sign with a Keyward key itself:
// every certificate that chains to a Keyward anchor comes from the RA; the throwaway CA's keys live only in
// memory for one run.
package probe
