package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storetest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func initDir(t *testing.T, db string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kw")
	n, _, err := Init(context.Background(), InitOptions{Options: Options{Dir: dir, DB: db, Logger: quiet(), Warn: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInitRemembersSQLite(t *testing.T) {
	ctx := context.Background()
	dir := initDir(t, "")
	f, err := config.Load(dir)
	if err != nil || f.Store == nil || f.Store.DB != config.DefaultDB {
		t.Fatalf("store section %+v, %v", f, err)
	}
	for _, db := range []string{"", "sqlite:" + filepath.Join(dir, "keyward.db")} {
		n, err := Open(ctx, Options{Dir: dir, DB: db, Logger: quiet()})
		if err != nil {
			t.Fatalf("open with %q: %v", db, err)
		}
		_ = n.Close()
	}
	other := "sqlite:" + filepath.Join(t.TempDir(), "other.db")
	_, err = Open(ctx, Options{Dir: dir, DB: other, DBSource: "env KEYWARD_DB", Logger: quiet()})
	var mm *config.StoreMismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), "KEYWARD_DB "+other) || !strings.Contains(err.Error(), "sqlite:keyward.db") {
		t.Fatalf("open with another store: %v", err)
	}
	if _, err := os.Stat(strings.TrimPrefix(other, "sqlite:")); !os.IsNotExist(err) {
		t.Fatalf("the refused store was created (%v)", err)
	}
	// Init again with another store is refused too, and changes nothing.
	before, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if _, _, err := Init(ctx, InitOptions{Options: Options{Dir: dir, DB: other, Logger: quiet(), Warn: io.Discard}}); !errors.As(err, &mm) {
		t.Fatalf("init with another store: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, ConfigFile)); string(after) != string(before) {
		t.Fatal("a refused init changed keyward.yaml")
	}
}

// A directory initialised on PostgreSQL opens PostgreSQL without --db, and never a new SQLite store.
func TestInitRemembersPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.PostgresDSN(t)
	dir := initDir(t, dsn)
	n, err := Open(ctx, Options{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	cas, err := n.Store.ListCAs(ctx)
	_ = n.Close()
	if err != nil || len(cas) < 2 {
		t.Fatalf("the remembered store holds %d CAs (%v): not the one init made", len(cas), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keyward.db")); !os.IsNotExist(err) {
		t.Fatalf("a SQLite store appeared in the data directory (%v)", err)
	}
	_, err = Open(ctx, Options{Dir: dir, DB: "sqlite:" + filepath.Join(dir, "keyward.db"), Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "--db sqlite:") {
		t.Fatalf("open with SQLite: %v", err)
	}
}

// A directory from before the store was remembered, with no SQLite file, names no store: refused, not opened
// empty.
func TestOpenUnknownStore(t *testing.T) {
	dir := initDir(t, "")
	path := filepath.Join(dir, ConfigFile)
	data, _ := os.ReadFile(path)
	i, j := strings.Index(string(data), "# The database this data directory"), strings.Index(string(data), "organization:")
	if err := os.WriteFile(path, append(data[:i:i], data[j:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := Open(context.Background(), Options{Dir: dir, Logger: quiet()}); err != nil {
		t.Fatalf("an old directory with its SQLite store: %v", err)
	} else {
		_ = n.Close()
	}
	for _, f := range []string{"keyward.db", "keyward.db-wal", "keyward.db-shm"} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	_, err := Open(context.Background(), Options{Dir: dir, Logger: quiet()})
	if !errors.Is(err, ErrStoreUnknown) || !strings.Contains(err.Error(), "--db") {
		t.Fatalf("open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keyward.db")); !os.IsNotExist(err) {
		t.Fatal("an empty store was created")
	}
}

func TestReloadPolicy(t *testing.T) {
	dir := initDir(t, "")
	n, err := Open(context.Background(), Options{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	prof := filepath.Join(dir, ProfilesDir, "implant-identity.yaml")
	orig, _ := os.ReadFile(prof)
	before := n.RA.Profiles()["implant-identity"]
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(prof, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A comment is no change.
	write("# a note\n" + string(orig))
	rep, err := n.ReloadPolicy()
	if err != nil || len(rep.Changed) != 0 || n.RA.Profiles()["implant-identity"] != before {
		t.Fatalf("%+v %v", rep, err)
	}
	// New rules under the old version: refused, nothing changes.
	write(strings.Replace(string(orig), "backdate: 1h", "backdate: 2h", 1))
	if _, err := n.ReloadPolicy(); err == nil || !strings.Contains(err.Error(), "raise version to") || !strings.Contains(err.Error(), prof) {
		t.Fatalf("reload: %v", err)
	}
	// A broken profile: refused, with its file and line.
	write(strings.Replace(string(orig), "validity: 15y", "validity: soon", 1))
	if _, err := n.ReloadPolicy(); err == nil || !strings.Contains(err.Error(), prof) || !strings.Contains(err.Error(), "line") {
		t.Fatalf("reload: %v", err)
	}
	if n.RA.Profiles()["implant-identity"] != before {
		t.Fatal("a refused reload changed the profiles")
	}
	// New rules with a new version, and a product line that drops a profile: both at once.
	cur := n.RA.Profiles()["implant-identity"].Version
	write(strings.Replace(strings.Replace(string(orig), "backdate: 1h", "backdate: 2h", 1), fmt.Sprintf("version: %d", cur), fmt.Sprintf("version: %d", cur+1), 1))
	cfg := filepath.Join(dir, ConfigFile)
	c, _ := os.ReadFile(cfg)
	dropped := regexp.MustCompile(`profiles: \[implant-identity, [^\]]*\]`).ReplaceAllString(string(c), "profiles: [implant-identity]")
	if dropped == string(c) {
		t.Fatal("the default keyward.yaml changed: update this test")
	}
	if err := os.WriteFile(cfg, []byte(dropped), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err = n.ReloadPolicy()
	if err != nil || strings.Join(rep.Changed, ",") != "implant-identity" || !rep.Hierarchy {
		t.Fatalf("%+v %v", rep, err)
	}
	if p := n.RA.Profiles()["implant-identity"]; p.Version != cur+1 || p.Backdate != 2*time.Hour {
		t.Fatalf("profile after reload: version %d backdate %s", p.Version, p.Backdate)
	}
	if got := n.RA.Hierarchy().Environments["dev"].ProductLines["demo-implant"].Profiles; len(got) != 1 {
		t.Fatalf("product line profiles %v", got)
	}
	// A product line naming a profile that is gone: refused.
	if err := os.Remove(prof); err != nil {
		t.Fatal(err)
	}
	if _, err := n.ReloadPolicy(); err == nil || !strings.Contains(err.Error(), `names "implant-identity"`) {
		t.Fatalf("reload: %v", err)
	}
	if n.RA.Profiles()["implant-identity"] == nil {
		t.Fatal("a refused reload removed a profile")
	}
}

// The server certificate renews itself at two thirds of its lifetime, and a listener serving through
// GetCertificate presents the new one without a restart; the replaced key is destroyed after the grace period,
// through the RA (glossary and audit), while the new key signs on.
func TestTLSRenewer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := initDir(t, "")
	n, err := Open(ctx, Options{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	r, err := n.NewTLSRenewer(ctx, []string{"127.0.0.1"}, 12*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Certificate().Leaf
	if life := first.NotAfter.Sub(first.NotBefore); life > 14*time.Second {
		t.Fatalf("lifetime %s, want about 12s", life)
	}
	firstKey, err := os.ReadFile(filepath.Join(dir, TLSDir, "server.key-uri"))
	if err != nil {
		t.Fatal(err)
	}
	oldURI := strings.TrimSpace(string(firstKey))
	renewed := make(chan *x509.Certificate, 4)
	r.Renewed = func(c *x509.Certificate) { renewed <- c }
	r.Grace = time.Second
	go r.Run(ctx)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	caPEM, _ := os.ReadFile(filepath.Join(dir, TLSDir, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	if served().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("the listener does not serve the renewer's certificate")
	}
	var next *x509.Certificate
	select {
	case next = <-renewed:
	case <-time.After(20 * time.Second):
		t.Fatal("no renewal within 20s of a 12s certificate")
	}
	if at := time.Now(); at.Before(RenewAt(first).Add(-time.Second)) || at.After(first.NotAfter) {
		t.Fatalf("renewed at %s; due at %s, expiring %s", at, RenewAt(first), first.NotAfter)
	}
	if got := served(); got.SerialNumber.Cmp(next.SerialNumber) != 0 || got.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("the listener still serves the old certificate")
	}
	// The renewed certificate is the one on disk, for the next start.
	pemData, _ := os.ReadFile(filepath.Join(dir, TLSDir, "server.pem"))
	if !strings.Contains(string(pemData), "CERTIFICATE") {
		t.Fatal("server.pem not written")
	}
	c, _, err := n.ServerTLSValid(ctx, []string{"127.0.0.1"}, 12*time.Second)
	if err != nil || c.Leaf.SerialNumber.Cmp(next.SerialNumber) != 0 {
		t.Fatalf("a restart would not pick up the renewed certificate: %v", err)
	}
	// The replaced key: destroyed once the grace period is over, in the glossary and the keystore, by the
	// renewal's principal, audited; the new one still signs.
	deadline := time.Now().Add(10 * time.Second)
	for {
		k, err := n.Store.GetKey(ctx, oldURI)
		if err != nil {
			t.Fatal(err)
		}
		if k.State == store.KeyDestroyed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replaced key %s is still %s 10s after its grace period of 1s", oldURI, k.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := n.CA.TLSSigner(ctx, oldURI); err == nil {
		t.Error("the replaced key still signs")
	}
	if got := served(); got.SerialNumber.Cmp(next.SerialNumber) != 0 {
		t.Fatal("the renewed certificate stopped serving when the old key was destroyed")
	}
	destroyed := false
	if err := n.Store.WalkAudit(ctx, 0, func(e *audit.Event) error {
		destroyed = destroyed || (e.Action == audit.ActionKeyDestroy && e.Subject == oldURI && e.Actor == "server:tls-renewal")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !destroyed {
		t.Error("no key.destroy audit event for the replaced key by server:tls-renewal")
	}
}

// A running node never changes its store: a reload reports a changed store: section as refused.
func TestReloadRefusesStoreChange(t *testing.T) {
	dir := initDir(t, "")
	n, err := Open(context.Background(), Options{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := config.SetStore(filepath.Join(dir, ConfigFile), "postgres://kw:hunter2@db.example/other"); err != nil {
		t.Fatal(err)
	}
	rep, err := n.ReloadPolicy()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.StoreRefused, "postgres://kw:xxxxx@db.example/other") || strings.Contains(rep.StoreRefused, "hunter2") {
		t.Fatalf("store refusal %q", rep.StoreRefused)
	}
}
