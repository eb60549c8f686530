package node

// Site data directories. A contract manufacturer's site runs Keyward without any connection to headquarters:
// 'keyward factory site-package' writes, at headquarters, a data directory for one site CA that holds only what
// the site needs — the configuration and profiles, the environment's root certificate (not its key), the site
// CA and its export signer (their keys stay in the site HSM; in dev, in the software keystore), the factory
// stations headquarters registered for the site with their station CA's certificate, and the site CA's quota,
// issuing window and subject rule. Headquarters' RA decides what the package holds and records it
// (internal/ra sitepackage.go); this file writes the directory, whose own SQLite database and audit chain an RA
// over it starts with an event that names the headquarters audit head the package was made from. 'keyward
// factory serve' and 'keyward factory batch' run on it at the site; 'keyward factory export' signs its logs for
// headquarters, which reconciles them.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/config"
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
	// Principal asks for the package; it is recorded at headquarters and at the site.
	Principal ra.Principal
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

// PackageSite writes the site data directory of site CA req.SiteCA (see the file comment). Headquarters' RA
// decides what it holds and records the package; the site's store is started by an RA over it. Nothing is
// recorded at headquarters if the package fails; a failed package directory is removed.
func (n *Node) PackageSite(ctx context.Context, req SitePackageRequest) (*SitePackageResult, error) {
	var (
		res  *SitePackageResult
		ours bool // the directory was found empty and is being written
	)
	_, err := n.RA.PackageSite(ctx, req.Principal, req.SiteCA, req.Out, func(pkg *ra.SitePackage) error {
		if err := os.MkdirAll(req.Out, 0o700); err != nil {
			return err
		}
		if entries, err := os.ReadDir(req.Out); err != nil {
			return err
		} else if len(entries) > 0 {
			return fmt.Errorf("%w: %s is not empty; a site package is written to a new directory", store.ErrExists, req.Out)
		}
		ours = true
		var err error
		res, err = n.writeSite(ctx, req, pkg)
		return err
	})
	if err != nil {
		if ours {
			// Written in part, or written and then not recorded at headquarters: it is no site's directory.
			_ = os.RemoveAll(req.Out)
		}
		return nil, err
	}
	return res, nil
}

// writeSite writes the files and starts the store of site package pkg in the empty directory req.Out.
func (n *Node) writeSite(ctx context.Context, req SitePackageRequest, pkg *ra.SitePackage) (*SitePackageResult, error) {
	fs := pkg.Site
	if err := copyFile(filepath.Join(n.Dir, ConfigFile), filepath.Join(req.Out, ConfigFile)); err != nil {
		return nil, err
	}
	// The site keeps its own SQLite store; headquarters' database URL (and its password) stays at headquarters.
	if err := config.SetStore(filepath.Join(req.Out, ConfigFile), config.DefaultDB); err != nil {
		return nil, err
	}
	// Only the tokens that hold the site's keys: headquarters' own HSMs are not at the site, and the site
	// opens every token its keystores.yaml names.
	uris := make([]string, len(pkg.Keys))
	for i, k := range pkg.Keys {
		uris[i] = k.URI
	}
	if err := siteKeystores(n.Dir, req.Out, uris...); err != nil {
		return nil, err
	}
	for _, dir := range []string{ProfilesDir, AttestationDir} {
		if err := copyDir(filepath.Join(n.Dir, dir), filepath.Join(req.Out, dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	res := &SitePackageResult{Dir: req.Out, SiteCA: pkg.CA.ID, Stations: pkg.StationIDs(), Quota: fs.Quota, Reserved: fs.Reserved,
		IssueUntil: fs.IssueUntil.Format(time.RFC3339), KeyCustody: pkg.Custody, AuditHead: pkg.AuditHead}
	keysDir := filepath.Join(req.Out, KeysDir)
	if len(pkg.SoftKeys) > 0 {
		// Dev: the site's software keystore is headquarters' header (same passphrase) with only the site's keys.
		if err := os.MkdirAll(keysDir, 0o700); err != nil {
			return nil, err
		}
		if err := copyFile(filepath.Join(n.Soft.Dir(), "keystore.json"), filepath.Join(keysDir, "keystore.json")); err != nil {
			return nil, err
		}
		for _, k := range pkg.SoftKeys {
			if !n.Soft.Handles(k.URI) {
				return nil, fmt.Errorf("key %s is recorded in the software keystore, which does not hold it", k.URI)
			}
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
		var err error
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
		_ = s.Close()
	}

	info := SiteInfo{Environment: fs.Environment, ProductLine: fs.ProductLine, Site: fs.Site, SiteCA: pkg.CA.ID, HeadquartersAuditHead: pkg.AuditHead, PackagedAt: pkg.At}
	data, err := yaml.Marshal(&info)
	if err != nil {
		return nil, err
	}
	st, err := storeopen.Open(ctx, "", req.Out)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	// The site's own RA starts its store: the custodian it needs signs nothing here.
	custodian, err := ca.New(ca.Config{Keys: n.Keys, Soft: n.Soft, Store: st, Now: n.Now, Logger: n.Logger})
	if err != nil {
		return nil, err
	}
	siteRA, err := ra.New(ra.Config{Store: st, CA: custodian, Hierarchy: n.Config, Profiles: n.Profiles, Now: n.Now, Logger: n.Logger, Site: siteScope(&info)})
	if err != nil {
		return nil, err
	}
	if err := siteRA.InitSite(ctx, req.Principal, pkg); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(req.Out, SiteFile), data, 0o600); err != nil {
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
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
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
