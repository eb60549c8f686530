package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/revocation"
	"github.com/keyward/keyward/internal/store"
)

// TestLargeCRLServed: a complete CRL stored in chunks is served whole from the store, with a strong ETag that
// answers If-None-Match with 304, range requests (a resumed download) and HEAD; a new CRL gets a new ETag.
func TestLargeCRLServed(t *testing.T) {
	ctx := context.Background()
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(t.TempDir(), "data"), Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	if err := n.Store.Tx(ctx, func(tx store.Tx) error {
		for i := range 25000 {
			b := make([]byte, 48)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			b[0] = b[0]&0x3f | 0x40
			at := now.Add(-time.Hour)
			if err := tx.InsertCertificate(ctx, &store.Certificate{Serial: hex.EncodeToString(b[:16]), IssuerID: "dev/demo-implant", Profile: "implant-identity",
				ProfileVersion: 1, Subject: fmt.Sprintf("CN=DEMO-%08d", i), NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(1, 0, 0),
				SPKISHA256: b[16:], DER: []byte{0x30, 0}, Status: store.CertStatusRevoked, RevokedAt: &at, RevocationReason: store.ReasonSuperseded,
				CreatedAt: now}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	svc := revocation.New(n.RA, n.CA, n.Store)
	row, err := svc.PublishCRLs(ctx, "dev/demo-implant", revocation.CRLConfig{SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !row.Chunked() {
		t.Fatalf("a CRL of %d octets is stored whole", row.Size)
	}
	var want bytes.Buffer
	if err := svc.WriteCRL(ctx, row, &want); err != nil {
		t.Fatal(err)
	}
	pub := NewPublic(n.Config, svc, revocation.NewResponder(svc, revocation.OCSPConfig{}), n.Logger)
	if err := pub.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(pub.Handler())
	defer srv.Close()
	caRow, _ := n.Store.GetCA(ctx, "dev/demo-implant")
	caCert, _ := x509.ParseCertificate(caRow.CertDER)
	url := srv.URL + revocation.CRLPath(caCert)
	type reply struct {
		code   int
		header http.Header
		length int64
		body   []byte
	}
	get := func(method string, header ...string) reply {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return reply{resp.StatusCode, resp.Header, resp.ContentLength, b}
	}
	r := get("GET")
	etag := r.header.Get("ETag")
	if r.code != http.StatusOK || !bytes.Equal(r.body, want.Bytes()) || r.header.Get("Content-Type") != "application/pkix-crl" || len(etag) < 10 {
		t.Fatalf("GET: %d, %d octets of %d, %q, ETag %q", r.code, len(r.body), want.Len(), r.header.Get("Content-Type"), etag)
	}
	if crl, err := x509.ParseRevocationList(r.body); err != nil || crl.CheckSignatureFrom(caCert) != nil || len(crl.RevokedCertificateEntries) != 25000 {
		t.Fatalf("served CRL: %v", err)
	}
	if r := get("GET", "If-None-Match", etag); r.code != http.StatusNotModified || len(r.body) != 0 {
		t.Fatalf("If-None-Match: %d, %d octets", r.code, len(r.body))
	}
	from := int64(store.CRLChunkSize - 100)
	if r := get("GET", "Range", fmt.Sprintf("bytes=%d-", from)); r.code != http.StatusPartialContent || !bytes.Equal(r.body, want.Bytes()[from:]) {
		t.Fatalf("range from %d: %d, %d octets", from, r.code, len(r.body))
	}
	if r := get("HEAD"); r.code != http.StatusOK || len(r.body) != 0 || r.length != int64(want.Len()) {
		t.Fatalf("HEAD: %d, %d octets, length %d", r.code, len(r.body), r.length)
	}
	// The next CRL is another entity: the old ETag no longer matches.
	if _, err := svc.PublishCRLs(ctx, "dev/demo-implant", revocation.CRLConfig{SpoolDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	r = get("GET", "If-None-Match", etag)
	if r.code != http.StatusOK || r.header.Get("ETag") == etag {
		t.Fatalf("If-None-Match with the previous CRL's ETag: %d, ETag %q", r.code, r.header.Get("ETag"))
	}
	if crl, err := x509.ParseRevocationList(r.body); err != nil || crl.Number.Int64() <= row.Number {
		t.Fatalf("the CRL served after the next publication: %v", err)
	}
}
