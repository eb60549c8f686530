package node

// Site data directories (issue 4 part 1). A contract manufacturer's site runs Keyward without any connection
// to headquarters: 'keyward factory site-package' writes, at headquarters, a data directory for one site CA
// that holds only what the site needs — the configuration and profiles, the environment's root certificate
// (not its key), the site CA and its export signer (their keys stay in the site HSM; in dev, in the software
// keystore), the factory stations headquarters registered for the site with their station CA's certificate,
// and the site CA's quota, issuing window and subject rule. Its own SQLite database and audit chain start
// with an event that names the headquarters audit head the package was made from. 'keyward factory serve'
// and 'keyward factory batch' run on it at the site; 'keyward factory export' signs its logs for
// headquarters, which reconciles them.

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore/pkcs11"
	"github.com/keyward/keyward/internal/keystore/soft"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/storeopen"
)

// SiteFile marks a site data directory and names its site CA.
const SiteFile = "site.yaml"

// SiteInfo is the content of SiteFile.
type SiteInfo struct {
	Environment string `yaml:"environment"`
	ProductLine string `yaml:"product_line"`
	Site        string `yaml:"site"`
	SiteCA      string `yaml:"site_ca"`
	// HeadquartersAuditHead is the hash of headquarters' newest audit event when the package was made.
	HeadquartersAuditHead string    `yaml:"headquarters_audit_head"`
	PackagedAt            time.Time `yaml:"packaged_at"`
}

// ReadSite returns the site marker of dir, or nil if dir is not a site data directory.
func ReadSite(dir string) (*SiteInfo, error) {
	data, err := os.ReadFile(filepath.Join(dir, SiteFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var s SiteInfo
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SiteFile), err)
	}
	if s.Environment == "" || s.ProductLine == "" || s.Site == "" || s.SiteCA == "" {
		return nil, fmt.Errorf("%s: environment, product_line, site and site_ca are required", filepath.Join(dir, SiteFile))
	}
	return &s, nil
}

// SitePackageRequest asks for a site data directory.
type SitePackageRequest struct {
	SiteCA string // CA id env/product/site
	Out    string // the new site data directory (must not exist, or be empty)
	// PassphraseFile, if set, holds the passphrase of the site's software keystore (which keeps the site's TLS
	// server key); it is not copied into the package. Without it a random one is written to Out/passphrase.
	// A dev site whose CA key is in the software keystore shares headquarters' keystore passphrase instead.
	PassphraseFile string
	Actor          string
}

// SitePackageResult reports a site package.
type SitePackageResult struct {
	Dir            string   `json:"dir"`
	SiteCA         string   `json:"site_ca"`
	Stations       []string `json:"stations"`
	Quota          int64    `json:"quota"`
	Reserved       int64    `json:"reserved"`
	IssueUntil     string   `json:"issue_until"`
	KeyCustody     string   `json:"key_custody"` // "pkcs11" or "software (dev)"
	PassphraseFile string   `json:"passphrase_file,omitempty"`
	AuditHead      string   `json:"headquarters_audit_head"`
}

// PackageSite writes the site data directory of site CA req.SiteCA (see the file comment) and records the
// package in headquarters' audit trail. Nothing is written to headquarters if the package fails; a failed
// package directory is removed.
func (n *Node) PackageSite(ctx context.Context, req SitePackageRequest) (res *SitePackageResult, err error) {
	if n.Site != nil {
		return nil, fmt.Errorf("%s is itself the data directory of site %s: package sites at headquarters", n.Dir, n.Site.Site)
	}
	ca, err := n.Store.GetCA(ctx, req.SiteCA)
	if errors.Is(err, store.ErrNotFound) || (err == nil && ca.Kind != store.CAKindSite) {
		return nil, fmt.Errorf("%w: no site CA %s here (create it with 'keyward factory site-ca')", store.ErrNotFound, req.SiteCA)
	} else if err != nil {
		return nil, err
	}
	if ca.Status != store.CAStatusActive {
		return nil, fmt.Errorf("site CA %s is %s: only an active site CA is packaged", ca.ID, ca.Status)
	}
	fs, err := n.Store.GetFactorySite(ctx, ca.ID)
	if err != nil {
		return nil, err
	}
	root, err := n.Store.GetCA(ctx, ca.ParentID)
	if err != nil {
		return nil, fmt.Errorf("parent of site CA %s: %w", ca.ID, err)
	}
	caKey, err := n.Store.GetKey(ctx, ca.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("key of site CA %s: %w", ca.ID, err)
	}
	auditKey, err := n.Store.GetKey(ctx, fs.AuditKeyURI)
	if err != nil {
		return nil, fmt.Errorf("export signer of site CA %s: %w", ca.ID, err)
	}
	softKeys := []*store.Key{}
	for _, k := range []*store.Key{caKey, auditKey} {
		if n.Soft.Handles(k.URI) {
			softKeys = append(softKeys, k)
		}
	}
	custody := "pkcs11"
	if len(softKeys) > 0 {
		// A software-held site CA key would have to be copied out of headquarters' keystore: dev only, as
		// software-wrapped batch keys are.
		if fs.Environment != "dev" {
			return nil, fmt.Errorf("site CA %s keeps a key in the software keystore; outside dev a site CA's keys live in the site HSM (create it with --keystore pkcs11:...)", ca.ID)
		}
		custody = "software (dev)"
	}
	// The stations headquarters registered for this site and product line, and their station CAs.
	all, err := n.Store.ListStations(ctx)
	if err != nil {
		return nil, err
	}
	var stations []*store.Station
	stationCAs := map[string]bool{}
	for _, st := range all {
		if st.Environment == fs.Environment && st.Site == fs.Site && slices.Contains(st.ProductLines, fs.ProductLine) {
			stations = append(stations, st)
		}
	}
	cas, err := n.Store.ListCAs(ctx)
	if err != nil {
		return nil, err
	}
	var copyCAs []*store.CA
	for _, c := range cas {
		if c.Kind == store.CAKindStation && c.Environment == fs.Environment {
			copyCAs = append(copyCAs, c)
			stationCAs[c.ID] = true
		}
	}
	if len(stations) == 0 {
		return nil, fmt.Errorf("no factory station is registered for site %s of %s/%s: register them first with 'keyward station add --env %s --site %s --product %s'",
			fs.Site, fs.Environment, fs.ProductLine, fs.Environment, fs.Site, fs.ProductLine)
	}
	hqHead, err := AuditHeadHex(ctx, n.Store)
	if err != nil {
		return nil, err
	}

	// The directory: new or empty, removed again if anything below fails.
	if err := os.MkdirAll(req.Out, 0o700); err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(req.Out); err != nil {
		return nil, err
	} else if len(entries) > 0 {
		return nil, fmt.Errorf("%w: %s is not empty; a site package is written to a new directory", store.ErrExists, req.Out)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(req.Out)
		}
	}()
	if err := copyFile(filepath.Join(n.Dir, ConfigFile), filepath.Join(req.Out, ConfigFile)); err != nil {
		return nil, err
	}
	// Only the tokens that hold the site's keys: headquarters' own HSMs are not at the site, and the site
	// opens every token its keystores.yaml names.
	if err := siteKeystores(n.Dir, req.Out, caKey.URI, auditKey.URI); err != nil {
		return nil, err
	}
	for _, dir := range []string{ProfilesDir, AttestationDir} {
		if err := copyDir(filepath.Join(n.Dir, dir), filepath.Join(req.Out, dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	res = &SitePackageResult{Dir: req.Out, SiteCA: ca.ID, Quota: fs.Quota, Reserved: fs.Reserved, IssueUntil: fs.IssueUntil.Format(time.RFC3339),
		KeyCustody: custody, AuditHead: hqHead}
	keysDir := filepath.Join(req.Out, KeysDir)
	if len(softKeys) > 0 {
		// Dev: the site's software keystore is headquarters' header (same passphrase) with only the site's keys.
		if err := os.MkdirAll(keysDir, 0o700); err != nil {
			return nil, err
		}
		if err := copyFile(filepath.Join(n.Soft.Dir(), "keystore.json"), filepath.Join(keysDir, "keystore.json")); err != nil {
			return nil, err
		}
		for _, k := range softKeys {
			id := strings.TrimPrefix(k.URI, "soft:")
			if err := copyFile(filepath.Join(n.Soft.Dir(), id+".key"), filepath.Join(keysDir, id+".key")); err != nil {
				return nil, fmt.Errorf("copy key %s: %w", k.URI, err)
			}
		}
		if pf := filepath.Join(n.Dir, PassphraseFile); fileExists(pf) {
			if err := copyFile(pf, filepath.Join(req.Out, PassphraseFile)); err != nil {
				return nil, err
			}
			res.PassphraseFile = filepath.Join(req.Out, PassphraseFile)
		}
	} else {
		var pass []byte
		if req.PassphraseFile != "" {
			if pass, err = readPassphrase(Options{PassphraseFile: req.PassphraseFile}); err != nil {
				return nil, err
			}
		} else {
			pf := filepath.Join(req.Out, PassphraseFile)
			if pass, err = soft.WriteRandomPassphraseFile(pf); err != nil {
				return nil, err
			}
			res.PassphraseFile = pf
		}
		s, err := soft.Create(keysDir, pass, nil)
		clear(pass)
		if err != nil {
			return nil, err
		}
		s.Close()
	}

	now := n.Now().UTC()
	info := SiteInfo{Environment: fs.Environment, ProductLine: fs.ProductLine, Site: fs.Site, SiteCA: ca.ID, HeadquartersAuditHead: res.AuditHead, PackagedAt: now}
	data, err := yaml.Marshal(&info)
	if err != nil {
		return nil, err
	}
	st, err := storeopen.Open(ctx, "", req.Out)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ids := make([]string, len(stations))
	for i, s := range stations {
		ids[i] = s.ID
	}
	res.Stations = ids
	details := map[string]string{"site_ca": ca.ID, "site": fs.Site, "environment": fs.Environment, "product_line": fs.ProductLine,
		"stations": strings.Join(ids, ","), "quota": fmt.Sprint(fs.Quota), "reserved": fmt.Sprint(fs.Reserved),
		"issue_until": fs.IssueUntil.Format(time.RFC3339), "key_custody": custody, "headquarters_audit_head": res.AuditHead}
	err = st.Tx(ctx, func(tx store.Tx) error {
		rootCopy := *root
		rootCopy.KeyURI = "" // the root key never leaves headquarters (or its ceremony)
		for _, c := range append([]*store.CA{&rootCopy, ca}, copyCAs...) {
			if stationCAs[c.ID] {
				cc := *c
				cc.KeyURI = "" // stations are registered at headquarters only
				c = &cc
			}
			if err := tx.InsertCA(ctx, c); err != nil {
				return err
			}
		}
		for _, k := range []*store.Key{caKey, auditKey} {
			if err := tx.InsertKey(ctx, k); err != nil {
				return err
			}
		}
		if err := tx.InsertFactorySite(ctx, fs); err != nil {
			return err
		}
		for _, s := range stations {
			if err := tx.InsertStation(ctx, s); err != nil {
				return err
			}
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: req.Actor, Action: "factory.site.init", Subject: ca.ID, Outcome: audit.OutcomeSuccess, Details: details})
	})
	if err != nil {
		return nil, fmt.Errorf("site database: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(req.Out, SiteFile), data, 0o600); err != nil {
		return nil, err
	}
	hqDetails := map[string]string{"dir": req.Out}
	for k, v := range details {
		hqDetails[k] = v
	}
	if err := n.Store.Tx(ctx, func(tx store.Tx) error {
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: req.Actor, Action: "factory.site.package", Subject: ca.ID, Outcome: audit.OutcomeSuccess, Details: hqDetails})
	}); err != nil {
		return nil, err
	}
	return res, nil
}

// siteKeystores writes to out's keystores.yaml the PKCS#11 tokens of dir's that hold one of keyURIs.
func siteKeystores(dir, out string, keyURIs ...string) error {
	all, err := ReadKeystores(dir)
	if err != nil {
		return err
	}
	var keep []string
	for _, cfg := range all {
		c, err := pkcs11.ParseURI(cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", KeystoresFile, err)
		}
		for _, k := range keyURIs {
			if !strings.HasPrefix(k, "pkcs11:") {
				continue
			}
			ku, err := pkcs11.ParseURI(k)
			if err != nil {
				return err
			}
			if (c.Token != "" && c.Token == ku.Token) || (c.Serial != "" && c.Serial == ku.Serial) {
				keep = append(keep, cfg)
				break
			}
		}
	}
	if len(keep) == 0 {
		return nil
	}
	data, err := yaml.Marshal(keystoresFile{PKCS11: keep})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(out, KeystoresFile), data, 0o600)
}

// siteScope is the RA scope of a site data directory.
func siteScope(s *SiteInfo) *ra.SiteScope {
	if s == nil {
		return nil
	}
	return &ra.SiteScope{CAID: s.SiteCA, Environment: s.Environment, ProductLine: s.ProductLine, Site: s.Site}
}

// AuditHeadHex returns the hash of the newest audit event, hex (empty for an empty chain).
func AuditHeadHex(ctx context.Context, s store.Store) (string, error) {
	_, head, err := s.AuditHead(ctx)
	return hex.EncodeToString(head), err
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyDir copies the regular files of from (not recursively) into to.
func copyDir(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
