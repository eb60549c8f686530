package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/factory"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
)

// BatchOptions configure the factory batch benchmark.
type BatchOptions struct {
	Count int64 // credentials in the batch
	// Keystore is "soft" (device keys generated in process and written wrapped; the site CA key in the
	// software keystore) or a PKCS#11 configuration URI (device keys generated on that token, and the CA keys,
	// the site CA's included, generated there too).
	Keystore   string
	DB         string // "" for SQLite in the working directory; a postgres:// URL naming an empty database
	Workers    int    // parallel credential workers; default GOMAXPROCS
	Checkpoint int    // credentials per fsync; default 256, as 'keyward factory batch'
	// KeepKeys leaves the device keys a PKCS#11 run generated on the token; by default they are destroyed
	// after the timed part.
	KeepKeys  bool
	Dir       string        // working directory; default a new temporary one, removed afterwards
	LimitTime time.Duration // how long to measure the limit; default 3s
	Progress  io.Writer     // progress lines, or nil
}

// BatchResult is what the batch benchmark measured.
type BatchResult struct {
	Count              int64   `json:"count"`
	Seconds            float64 `json:"seconds"`
	PerSecond          float64 `json:"per_second"`
	LimitPerSecond     float64 `json:"limit_per_second"`
	Ratio              float64 `json:"ratio"`
	Limit              string  `json:"limit"`
	BytesPerCredential float64 `json:"bytes_per_credential"` // batch file size (header included) over Count
	Custody            string  `json:"custody"`
	Stamped            int64   `json:"stamped"`
	StampRefused       string  `json:"stamp_refused,omitempty"`
	Store              string  `json:"store"`
	Workers            int     `json:"workers"`
	Checkpoint         int     `json:"checkpoint"`
	GOMAXPROCS         int     `json:"gomaxprocs"`
	Verified           bool    `json:"verified"`             // the file holds Count whole credentials, serials and names unique
	KeysDestroyed      int64   `json:"keys_destroyed"`       // PKCS#11: device keys removed from the token afterwards
	DestroySeconds     float64 `json:"destroy_seconds"`      // not part of Seconds
	LimitGoroutines    int     `json:"limit_goroutines"`     // x509.CreateCertificate loops in the limit
	SiteCAKeyLocation  string  `json:"site_ca_key_location"` // software or pkcs11
}

// Batch creates a fresh data directory with its hierarchy and a site CA of the dev environment's demo-implant
// product line, and runs a factory batch of opts.Count credentials ('keyward factory batch' with the same
// custody) into a file there. Beside it, in the same run, it measures the in-process limit: x509.CreateCertificate
// in a loop on every core (or on as many goroutines as the batch has workers, if more) with the site CA's key
// and an implant-identity template for a device key: the signature, Go's own check of it and the encoding,
// without key generation, lint, wrapping or storage.
func Batch(ctx context.Context, opts BatchOptions) (*BatchResult, error) {
	if opts.Count <= 0 || opts.Count > 99999999 {
		return nil, fmt.Errorf("bench: --count %d: a batch is 1 to 99,999,999 credentials (DEMO-00000001 upwards)", opts.Count)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Checkpoint <= 0 {
		opts.Checkpoint = 256
	}
	if opts.LimitTime <= 0 {
		opts.LimitTime = 3 * time.Second
	}
	if opts.Keystore == "" {
		opts.Keystore = "soft"
	}
	pkcs11 := strings.HasPrefix(opts.Keystore, "pkcs11:")
	if opts.Keystore != "soft" && !pkcs11 {
		return nil, fmt.Errorf(`bench: --keystore %q: use "soft" or a pkcs11: URI`, opts.Keystore)
	}
	dir, cleanup, err := workDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	progress := progressTo(opts.Progress)

	progress("creating a data directory, its CAs and a site CA (keys: %s)", keystoreName(opts.Keystore))
	n, _, err := node.Init(ctx, node.InitOptions{Options: node.Options{Dir: filepath.Join(dir, "data"), DB: opts.DB, Warn: io.Discard}, Keystore: opts.Keystore, Actor: "bench"})
	if err != nil {
		return nil, err
	}
	defer n.Close()
	keys, err := benchKeystore(n, opts.Keystore)
	if err != nil {
		return nil, err
	}
	p := ra.Principal{ID: "bench", Role: ra.RoleAdmin}
	f := &factory.Factory{RA: n.RA, CA: n.CA, Principal: p}
	site, err := n.RA.CreateSiteCA(ctx, p, ra.SiteCARequest{Environment: "dev", ProductLine: "demo-implant", Site: "bench", Quota: opts.Count, ValidFor: 24 * time.Hour, Keys: keys})
	if err != nil {
		return nil, err
	}

	res := &BatchResult{Count: opts.Count, Workers: opts.Workers, Checkpoint: opts.Checkpoint, GOMAXPROCS: runtime.GOMAXPROCS(0),
		Store: storeName(opts.DB), Custody: factory.CustodyWrapped, SiteCAKeyLocation: string(keys.Location())}
	res.LimitGoroutines = max(res.GOMAXPROCS, opts.Workers)
	res.Limit = fmt.Sprintf("x509.CreateCertificate with the site CA key (%s) and a template of profile %s, %d goroutines", keys.Location(), site.Site.Profile, res.LimitGoroutines)
	progress("measuring the in-process limit (%s) for %s", res.Limit, opts.LimitTime)
	if res.LimitPerSecond, err = siteCALimit(ctx, n, site, res.LimitGoroutines, opts.LimitTime); err != nil {
		return nil, err
	}

	req := factory.BatchRequest{Env: "dev", Product: "demo-implant", Site: "bench", Count: opts.Count, FirstSerial: "DEMO-00000001",
		Out: filepath.Join(dir, "bench.kwb"), Workers: opts.Workers, Checkpoint: opts.Checkpoint}
	if pkcs11 {
		req.Custody, res.Custody = keys, factory.CustodyPKCS11
	} else {
		req.TransportKey = make([]byte, factory.TransportKeySize)
		if _, err := rand.Read(req.TransportKey); err != nil {
			return nil, err
		}
	}
	var reported atomic.Int64
	req.Progress = func(done, total int64) {
		if quarter := done * 4 / total; quarter > reported.Load() {
			reported.Store(quarter)
			progress("  %d of %d credentials", done, total)
		}
	}
	progress("batch of %d credentials (%s custody, %d workers, fsync every %d)", opts.Count, res.Custody, opts.Workers, opts.Checkpoint)
	sum, err := f.Batch(ctx, req)
	if err != nil {
		return nil, err
	}
	res.Seconds = sum.Elapsed.Seconds()
	res.PerSecond = float64(sum.Written) / res.Seconds
	res.Ratio = res.PerSecond / res.LimitPerSecond
	res.BytesPerCredential = float64(sum.Bytes) / float64(opts.Count)
	res.Stamped, res.StampRefused = sum.Stamped, sum.StampRefused

	info, err := factory.Show(req.Out)
	if err != nil {
		return nil, err
	}
	res.Verified = info.Complete && info.Credentials == opts.Count && info.UniqueSerials == opts.Count && info.UniqueCommonNames == opts.Count
	if !res.Verified {
		return nil, fmt.Errorf("bench: the batch file holds %d whole credentials, %d unique serials; want %d", info.Credentials, info.UniqueSerials, opts.Count)
	}
	if pkcs11 && !opts.KeepKeys {
		progress("destroying the %d device keys on the token (not timed)", opts.Count)
		start := time.Now()
		if res.KeysDestroyed, err = destroyDeviceKeys(ctx, n.CA, req.Out, opts.Workers); err != nil {
			return nil, err
		}
		res.DestroySeconds = time.Since(start).Seconds()
	}
	return res, nil
}

// benchKeystore is the backend for spec, reusing the PKCS#11 store node.Init opened for it.
func benchKeystore(n *node.Node, spec string) (keystore.Keystore, error) {
	if b, err := n.Keys.Backend(spec); err == nil && b.Location() == keystore.LocationPKCS11 {
		return b, nil
	}
	return n.Keystore(spec)
}

// siteCALimit runs x509.CreateCertificate in a loop on goroutines goroutines for d with the site CA's key and
// one template of the site's profile for a device key, and returns certificates per second.
func siteCALimit(ctx context.Context, n *node.Node, site *ra.SiteCA, goroutines int, d time.Duration) (float64, error) {
	signer, err := n.Keys.Signer(ctx, site.CA.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		return 0, err
	}
	devKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return 0, err
	}
	serial, err := issuer.NewSerial(time.Now())
	if err != nil {
		return 0, err
	}
	// The request as the factory builds it: profile checks read the subject's attributes, as a parsed CSR has them.
	cn := pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "DEMO-00000001"}
	csr := &x509.CertificateRequest{PublicKey: &devKey.PublicKey, Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{cn}}}
	tmpl, err := n.Profiles[site.Site.Profile].Template(&profile.Request{CSR: csr, Role: "factory-station"}, serial, n.Now(), site.Cert)
	if err != nil {
		return 0, err
	}
	return createCertificateLoop(ctx, goroutines, d, tmpl, site.Cert, &devKey.PublicKey, signer)
}

func createCertificateLoop(ctx context.Context, goroutines int, d time.Duration, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (float64, error) {
	var count atomic.Int64
	var wg sync.WaitGroup
	var failure atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if _, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer); err != nil {
					failure.Store(err)
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := failure.Load().(error); err != nil {
		return 0, fmt.Errorf("limit loop: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(count.Load()) / time.Since(start).Seconds(), nil
}

// destroyDeviceKeys removes the device keys of a PKCS#11 batch from the token through the custodian, so that a
// benchmark does not leave thousands of objects behind.
func destroyDeviceKeys(ctx context.Context, custodian *ca.Custodian, path string, workers int) (int64, error) {
	uris := make(chan string, 1024)
	var destroyed atomic.Int64
	var failure atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for uri := range uris {
				if err := custodian.Destroy(ctx, uri); err != nil && !errors.Is(err, keystore.ErrNotFound) {
					failure.Store(err)
					continue
				}
				destroyed.Add(1)
			}
		}()
	}
	err := factory.ReadCredentials(path, func(c *factory.Credential) error {
		if c.KeyURI != "" {
			uris <- c.KeyURI
		}
		return nil
	})
	close(uris)
	wg.Wait()
	if err != nil {
		return destroyed.Load(), err
	}
	if err, _ := failure.Load().(error); err != nil {
		return destroyed.Load(), fmt.Errorf("destroy device keys: %w", err)
	}
	return destroyed.Load(), nil
}
