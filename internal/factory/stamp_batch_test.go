package factory

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
)

// TestBatchStamped: all but the first credential of each chunk are stamped, and every certificate of the
// batch is byte for byte the one the full path (profile template at the chunk's issuance time, Prepare with
// lint) builds for its serial, name and key; a chunk's certificates share their validity.
func TestBatchStamped(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	s := siteCA(t, f, n.Soft, "site-a", 1000)
	out := filepath.Join(t.TempDir(), "batch.kwb")
	const count, chunk = 300, 64
	req := softBatch(out, count)
	req.Checkpoint = chunk
	sum, err := f.Batch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	chunks := int64((count + chunk - 1) / chunk)
	if sum.Stamped != count-chunks || sum.StampRefused != "" {
		t.Fatalf("stamped %d (refused: %q); want %d: all but the first of each of %d chunks", sum.Stamped, sum.StampRefused, count-chunks, chunks)
	}
	verifyBatch(t, n, s, out, count)
	checkFullPath(t, n, f, s, out, chunk)
}

// checkFullPath rebuilds every certificate of the batch file through the full path and compares.
func checkFullPath(t *testing.T, n *node.Node, f *Factory, s *ra.SiteCA, path string, chunk int64) {
	t.Helper()
	ctx := context.Background()
	signer, err := n.Keys.Signer(ctx, s.CA.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(s.Cert, signer)
	if err != nil {
		t.Fatal(err)
	}
	prof := f.RA.Profiles()[s.Site.Profile]
	var chunkStart time.Time
	err = ReadCredentials(path, func(c *Credential) error {
		cert, err := x509.ParseCertificate(c.CertDER)
		if err != nil {
			return err
		}
		if c.Index%chunk == 0 {
			chunkStart = cert.NotBefore
		} else if !cert.NotBefore.Equal(chunkStart) {
			t.Fatalf("credential %d: notBefore %s; its chunk's is %s", c.Index, cert.NotBefore, chunkStart)
		}
		req := &profile.Request{CSR: deviceCSR(c.DeviceCN, cert.PublicKey), Role: factoryRole}
		tmpl, err := prof.Template(req, cert.SerialNumber, cert.NotBefore.Add(prof.Backdate), s.Cert)
		if err != nil {
			return err
		}
		p, err := iss.Prepare(tmpl, cert.PublicKey, issuer.MaxDERSize(prof.MaxDERSize))
		if err != nil {
			return err
		}
		if !bytes.Equal(p.TBS(), cert.RawTBSCertificate) {
			t.Fatalf("credential %d (%s): TBSCertificate differs from the full path's", c.Index, c.DeviceCN)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBatchUnstampable: a profile whose certificates repeat the device serial outside the subject's common
// name cannot be stamped; the batch issues every credential through the full path and says why.
func TestBatchUnstampable(t *testing.T) {
	ctx := context.Background()
	n, f := newNode(t)
	// The repeated name needs room: the implant profile's 400 bytes are its budget without it.
	big := *n.Profiles[DefaultProfile]
	big.MaxDERSize = 600
	f = withRA(t, n, f, func(c *ra.Config) {
		c.Profiles = maps.Clone(n.Profiles)
		c.Profiles[DefaultProfile] = &big
	})
	s := siteCA(t, f, n.Soft, "site-a", 1000)
	out := filepath.Join(t.TempDir(), "batch.kwb")
	const count = 40
	req := softBatch(out, count)
	req.Checkpoint = 16
	req.editTemplate = func(c *x509.Certificate) { c.Subject.OrganizationalUnit = []string{c.Subject.CommonName} }
	sum, err := f.Batch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Written != count || sum.Stamped != 0 || !strings.Contains(sum.StampRefused, "the common name occurs 2 times") {
		t.Fatalf("written %d, stamped %d, refused %q; want %d written through the full path", sum.Written, sum.Stamped, sum.StampRefused, count)
	}
	info, err := Show(out)
	if err != nil || info.Credentials != count || info.UniqueSerials != count || info.UniqueCommonNames != count {
		t.Fatalf("batch info %+v, %v", info, err)
	}
	roots, inter := rootPool(t, n), x509.NewCertPool()
	inter.AddCert(s.Cert)
	err = ReadCredentials(out, func(c *Credential) error {
		cert, err := x509.ParseCertificate(c.CertDER)
		if err != nil {
			return err
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("credential %d: %v", c.Index, err)
		}
		if cert.Subject.CommonName != c.DeviceCN || len(cert.Subject.OrganizationalUnit) != 1 || cert.Subject.OrganizationalUnit[0] != c.DeviceCN {
			t.Fatalf("credential %d: subject %s; want CN and OU %s", c.Index, cert.Subject, c.DeviceCN)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMarshalPKCS8 compares the batch's PKCS #8 encoder with x509.MarshalPKCS8PrivateKey, and the result
// parses back to the key.
func TestMarshalPKCS8(t *testing.T) {
	gen := map[string]func() (crypto.Signer, error){
		"p256": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
		"p384": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) },
		"p521": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P521(), rand.Reader) },
		"ed25519": func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		},
	}
	for name, g := range gen {
		t.Run(name, func(t *testing.T) {
			for range 200 {
				k, err := g()
				if err != nil {
					t.Fatal(err)
				}
				got, err := marshalPKCS8(k)
				if err != nil {
					t.Fatal(err)
				}
				want, err := x509.MarshalPKCS8PrivateKey(k)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("PKCS #8 differs from x509's\n got %x\nwant %x", got, want)
				}
				back, err := x509.ParsePKCS8PrivateKey(got)
				if err != nil || !back.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
					t.Fatalf("parse back: %v", err)
				}
			}
		})
	}
}
