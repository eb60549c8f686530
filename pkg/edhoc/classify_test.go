package edhoc_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/pkitest"
	"github.com/keyward/keyward/pkg/certpolicy"
	"github.com/keyward/keyward/pkg/edhoc"
)

// TestClassifyCertificate: the role comes from the end-entity certificate's role policy, vouched for by every CA
// below the anchor; certificates from before role policies fall back to the shapes Keyward issued then.
func TestClassifyCertificate(t *testing.T) {
	root := longCA(t, "dev root CA", nil)
	issuing := longCA(t, "demo-implant dev CA", root, arc.Policies(certpolicy.IssuerRoles(false)...)...)
	stations := longCA(t, "dev factory stations CA", root, arc.Policies(certpolicy.IssuerRoles(true)...)...)
	legacy := longCA(t, "old dev CA", root) // no policies: made before role policies
	leaf := func(ca *pkitest.CA, eku []x509.ExtKeyUsage, roles ...certpolicy.Role) []*x509.Certificate {
		c := ca.Leaf(t, &x509.Certificate{Subject: pkix.Name{CommonName: "DEMO-00000001"}, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: eku, Policies: arc.Policies(roles...)}, pkitest.Key(t).Public())
		return []*x509.Certificate{c, ca.Cert, root.Cert}
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	for _, tc := range []struct {
		name     string
		chain    []*x509.Certificate
		allowOld bool
		want     edhoc.Role
		err      string
	}{
		{"device policy, no EKU", leaf(issuing, nil, certpolicy.Device), false, edhoc.RoleDevice, ""},
		{"service policy", leaf(issuing, nil, certpolicy.Service), false, edhoc.RoleService, ""},
		{"station policy", leaf(stations, client, certpolicy.Station), false, edhoc.RoleStation, ""},
		{"device policy under the station CA", leaf(stations, client, certpolicy.Device), false, "", "may not vouch"},
		{"station policy under the issuing CA", leaf(issuing, client, certpolicy.Station), false, "", "may not vouch"},
		{"two roles", leaf(issuing, nil, certpolicy.Device, certpolicy.Gateway), false, "", "several roles"},
		{"device policy under a CA without policies", leaf(legacy, nil, certpolicy.Device), false, "", "may not vouch"},
		{"device policy under a CA without policies, allowed", leaf(legacy, nil, certpolicy.Device), true, edhoc.RoleDevice, ""},
		{"before role policies: clientAuth only", leaf(legacy, client), false, edhoc.RoleDevice, ""},
		{"before role policies: clientAuth and serverAuth", leaf(legacy, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}), false, edhoc.RoleGateway, ""},
		{"before role policies: under the station CA", leaf(stations, client), false, edhoc.RoleStation, ""},
		{"before role policies: no EKU", leaf(legacy, nil), false, "", "fits no Keyward end-entity profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := edhoc.ClassifyCertificate(tc.chain, certpolicy.Arc{}, tc.allowOld)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	other := certpolicy.MustParseArc("1.3.6.1.4.1.99999")
	if _, err := edhoc.ClassifyCertificate(leaf(issuing, nil, certpolicy.Device), other, false); err == nil {
		t.Error("a device policy under another arc: classified")
	}
}
