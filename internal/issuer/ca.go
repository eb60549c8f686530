package issuer

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
)

// SelfSign creates a self-signed root CA certificate from tmpl for signer's key, linted before signing like
// any other certificate: the TBSCertificate is built and linted with a throwaway key standing in as the
// signer, then those exact bytes are signed by signer. tmpl must describe a CA (IsCA and
// BasicConstraintsValid) and carry its serial number. It returns the DER certificate and the lint warnings
// to record in the ceremony's audit event.
func SelfSign(ctx context.Context, tmpl *x509.Certificate, signer crypto.Signer) ([]byte, []Finding, error) {
	if tmpl == nil || signer == nil {
		return nil, nil, errors.New("self-sign: template and signer are required")
	}
	name := tmpl.Subject.String()
	if !tmpl.IsCA || !tmpl.BasicConstraintsValid {
		return nil, nil, fmt.Errorf("self-sign %q: template is not a CA certificate (set IsCA and BasicConstraintsValid)", name)
	}
	alg, err := sigAlgFor(signer.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("self-sign %q: %w", name, err)
	}
	throwaway, err := throwawayKey(signer.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("self-sign %q: throwaway key: %w", name, err)
	}
	l, err := rfc5280Linter()
	if err != nil {
		return nil, nil, fmt.Errorf("self-sign %q: %w", name, err)
	}
	// The "parent" is the template itself with the throwaway key: x509.CreateCertificate then writes the
	// subject as issuer and the real public key as subject key, exactly as in the final certificate.
	parent := *tmpl
	parent.PublicKey = throwaway.Public()
	p, err := prepare(tmpl, signer.Public(), &parent, throwaway, alg, l, 0, true)
	if err != nil {
		return nil, nil, fmt.Errorf("self-sign %q: %w", name, err)
	}
	cert, err := issue(ctx, p, signer, alg, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("self-sign %q: %w", name, err)
	}
	return cert.Raw, p.Warnings(), nil
}

// SignCA creates a subordinate CA certificate from tmpl for pub, signed by parentSigner under parentCert,
// through the same Prepare and Issue steps as any certificate. tmpl must describe a CA and carry its serial
// number. It returns the DER certificate and the lint warnings.
func SignCA(ctx context.Context, tmpl, parentCert *x509.Certificate, parentSigner crypto.Signer, pub crypto.PublicKey) ([]byte, []Finding, error) {
	if tmpl == nil {
		return nil, nil, errors.New("sign CA: template is required")
	}
	name := tmpl.Subject.String()
	if !tmpl.IsCA || !tmpl.BasicConstraintsValid {
		return nil, nil, fmt.Errorf("sign CA %q: template is not a CA certificate (set IsCA and BasicConstraintsValid)", name)
	}
	iss, err := New(parentCert, parentSigner)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CA %q: %w", name, err)
	}
	p, err := iss.Prepare(tmpl, pub)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CA %q: %w", name, err)
	}
	der, err := iss.Issue(ctx, p)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CA %q: %w", name, err)
	}
	return der, p.Warnings(), nil
}
