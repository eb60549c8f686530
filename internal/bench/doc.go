// Package bench runs Keyward's whole-job benchmarks and measures, in the same run, the in-process limit each
// figure is compared with.
//
// It may import the composition root (internal/node) and everything below it, and is the one package outside
// internal/ca that may call a keystore signer or x509.CreateCertificate directly: for the in-process limit each
// figure is reported against, and for synthetic fixtures. It must never be imported by the product.
package bench
