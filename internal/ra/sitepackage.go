package ra

// Site data directories: a contract manufacturer's site runs Keyward without any connection to headquarters,
// on a data directory that headquarters packages for one site CA (internal/node writes its files). What the
// package holds is decided here, at headquarters: the site CA and its export signer (their keys stay in the
// site HSM; in dev, in the software keystore), the environment's root certificate and the station CAs'
// certificates without their keys, the factory stations headquarters registered for the site, and the site
// CA's quota, issuing window and subject rule. The site's own store starts with those records and the
// factory.site.init event naming headquarters' audit head; headquarters records factory.site.package.

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// Key custody of a site package, as it reports it.
const (
	SiteCustodyPKCS11   = "pkcs11"
	SiteCustodySoftware = "software (dev)"
)

// SitePackage is what a site data directory holds of headquarters' records.
type SitePackage struct {
	CA   *store.CA // the site CA
	Site *store.FactorySite
	// CAs are the CA rows the site's store starts with, in order: the environment's root and the site CA, then
	// the environment's station CAs. No key but the site CA's is named: the root key never leaves
	// headquarters (or its ceremony), and stations are registered at headquarters only.
	CAs []*store.CA
	// Keys are the site CA key and its export signer; SoftKeys those of them in the software keystore (dev),
	// whose files the package carries.
	Keys, SoftKeys []*store.Key
	// KDKs are the key-derivation key versions of the site's environment and product line, not destroyed,
	// whose keys are in the keystore of the site CA's key (the site HSM; in dev, the software keystore): a
	// batch at the site derives device keys with them (factory batch --symmetric). Their key rows are in Keys.
	KDKs []*store.KDK
	// Stations are the factory stations registered for the site and its product line.
	Stations []*store.Station
	Custody  string // SiteCustodyPKCS11 or SiteCustodySoftware
	// AuditHead is the hash of headquarters' newest audit event when the package was decided, hex.
	AuditHead string
	At        time.Time
}

// StationIDs returns the ids of the package's stations.
func (s *SitePackage) StationIDs() []string {
	ids := make([]string, len(s.Stations))
	for i, st := range s.Stations {
		ids[i] = st.ID
	}
	return ids
}

// details are what both audit events of a package name.
func (s *SitePackage) details() map[string]string {
	fs := s.Site
	return map[string]string{"site_ca": s.CA.ID, "site": fs.Site, "environment": fs.Environment, "product_line": fs.ProductLine,
		"stations": strings.Join(s.StationIDs(), ","), "quota": fmt.Sprint(fs.Quota), "reserved": fmt.Sprint(fs.Reserved),
		"issue_until": fs.IssueUntil.Format(time.RFC3339), "key_custody": s.Custody, "headquarters_audit_head": s.AuditHead,
		"kdks": kdkList(s.KDKs)}
}

// kdkList names KDK versions as purpose:version, comma-separated.
func kdkList(kdks []*store.KDK) string {
	var b strings.Builder
	for i, k := range kdks {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d", k.Purpose, k.Version)
	}
	return b.String()
}

// siteKDKs adds to pkg the KDK versions of the site's environment and product line that are not destroyed and
// whose keys are in the keystore of the site CA's key (caKey): the site HSM, or in dev the software keystore.
// A KDK in another of headquarters' HSMs cannot reach the site, and is left out.
func (r *RA) siteKDKs(ctx context.Context, pkg *SitePackage, caKey *store.Key) error {
	kdks, err := r.cfg.Store.ListKDKs(ctx, pkg.Site.Environment, pkg.Site.ProductLine, "")
	if err != nil {
		return wrap(KindUnavailable, err)
	}
	if len(kdks) == 0 {
		return nil
	}
	// A site CA's keystore that is not open here shares no KDK that can be shown to: none is carried.
	siteKS, _ := r.cfg.CA.KeystoreOf(caKey.URI)
	if siteKS == nil {
		return nil
	}
	for _, k := range kdks {
		key, err := r.cfg.Store.GetKey(ctx, k.URI)
		if err != nil {
			return wrap(KindUnavailable, err)
		}
		if key.State == store.KeyDestroyed {
			continue
		}
		if ks, err := r.cfg.CA.KeystoreOf(k.URI); err != nil || ks != siteKS {
			continue
		}
		pkg.Keys = append(pkg.Keys, key)
		pkg.KDKs = append(pkg.KDKs, k)
	}
	return nil
}

// PackageSite decides what the data directory of site CA caID holds, has write make it at dir (the site's
// store initialised with InitSite), and then records factory.site.package. Only an active site CA with at
// least one registered station is packaged, and outside dev only one whose keys are in the site HSM. Nothing
// is recorded if write fails.
func (r *RA) PackageSite(ctx context.Context, p Principal, caID, dir string, write func(*SitePackage) error) (*SitePackage, error) {
	if err := r.authorize(ctx, p, audit.ActionSitePackage, caID, "package factory sites", RoleAdmin); err != nil {
		return nil, err
	}
	if s := r.cfg.Site; s != nil {
		return nil, errorf(KindBadRequest, "this is the data directory of factory site %s: package sites at headquarters", s.Site)
	}
	row, err := r.cfg.Store.GetCA(ctx, caID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && row.Kind != store.CAKindSite) {
		return nil, factoryErr(ErrFactoryNotFound, "no site CA %s here (create it with 'keyward factory site-ca')", caID)
	} else if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	if row.Status != store.CAStatusActive {
		return nil, errorf(KindBadRequest, "site CA %s is %s: only an active site CA is packaged", row.ID, row.Status)
	}
	fs, err := r.cfg.Store.GetFactorySite(ctx, row.ID)
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("site CA %s record: %w", row.ID, err))
	}
	root, err := r.cfg.Store.GetCA(ctx, row.ParentID)
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("parent of site CA %s: %w", row.ID, err))
	}
	caKey, err := r.cfg.Store.GetKey(ctx, row.KeyURI)
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("key of site CA %s: %w", row.ID, err))
	}
	auditKey, err := r.cfg.Store.GetKey(ctx, fs.AuditKeyURI)
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("export signer of site CA %s: %w", row.ID, err))
	}
	pkg := &SitePackage{CA: row, Site: fs, Keys: []*store.Key{caKey, auditKey}, Custody: SiteCustodyPKCS11, At: r.now()}
	if err := r.siteKDKs(ctx, pkg, caKey); err != nil {
		return nil, err
	}
	for _, k := range pkg.Keys {
		if k.Location == string(keystore.LocationSoftware) {
			pkg.SoftKeys = append(pkg.SoftKeys, k)
		}
	}
	if len(pkg.SoftKeys) > 0 {
		// A software-held site CA key would have to be copied out of headquarters' keystore: dev only, as
		// software-wrapped batch keys are.
		if fs.Environment != "dev" {
			return nil, errorf(KindBadRequest, "site CA %s keeps a key in the software keystore; outside dev a site CA's keys live in the site HSM (create it with --keystore pkcs11:...)", row.ID)
		}
		pkg.Custody = SiteCustodySoftware
	}
	all, err := r.cfg.Store.ListStations(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	for _, st := range all {
		if st.Environment == fs.Environment && st.Site == fs.Site && slices.Contains(st.ProductLines, fs.ProductLine) {
			pkg.Stations = append(pkg.Stations, st)
		}
	}
	if len(pkg.Stations) == 0 {
		return nil, errorf(KindBadRequest, "no factory station is registered for site %s of %s/%s: register them first with 'keyward station add --env %s --site %s --product %s'",
			fs.Site, fs.Environment, fs.ProductLine, fs.Environment, fs.Site, fs.ProductLine)
	}
	rootCopy := *root
	rootCopy.KeyURI = ""
	pkg.CAs = []*store.CA{&rootCopy, row}
	cas, err := r.cfg.Store.ListCAs(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	for _, c := range cas {
		if c.Kind == store.CAKindStation && c.Environment == fs.Environment {
			cc := *c
			cc.KeyURI = ""
			pkg.CAs = append(pkg.CAs, &cc)
		}
	}
	_, head, err := r.cfg.Store.AuditHead(ctx)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	pkg.AuditHead = hex.EncodeToString(head)

	if err := write(pkg); err != nil {
		return nil, err
	}
	d := pkg.details()
	d["dir"] = dir
	if err := r.tx(ctx, func(tx store.Tx) error { return r.success(ctx, tx, p, audit.ActionSitePackage, row.ID, pkg.At, d) }); err != nil {
		return nil, err
	}
	return pkg, nil
}

// InitSite starts the store of a new site data directory, the store of this site's RA, with the records of
// package pkg and the factory.site.init event, in one transaction.
func (r *RA) InitSite(ctx context.Context, p Principal, pkg *SitePackage) error {
	if err := r.authorize(ctx, p, audit.ActionSiteInit, pkg.CA.ID, "initialise factory sites", RoleAdmin); err != nil {
		return err
	}
	if s := r.cfg.Site; s == nil || s.CAID != pkg.CA.ID {
		return errorf(KindBadRequest, "site CA %s's package initialises the data directory of that site only", pkg.CA.ID)
	}
	if _, head, err := r.cfg.Store.AuditHead(ctx); err != nil {
		return wrap(KindUnavailable, err)
	} else if len(head) != 0 {
		return errorf(KindConflict, "the store of site %s holds records already: a site package starts a new data directory", pkg.Site.Site)
	}
	now := r.now()
	err := r.tx(ctx, func(tx store.Tx) error {
		for _, c := range pkg.CAs {
			if err := tx.InsertCA(ctx, c); err != nil {
				return err
			}
		}
		for _, k := range pkg.Keys {
			if err := tx.InsertKey(ctx, k); err != nil {
				return err
			}
		}
		for _, k := range pkg.KDKs {
			if err := tx.InsertKDK(ctx, k); err != nil {
				return err
			}
		}
		if err := tx.InsertFactorySite(ctx, pkg.Site); err != nil {
			return err
		}
		for _, s := range pkg.Stations {
			if err := tx.InsertStation(ctx, s); err != nil {
				return err
			}
		}
		return r.success(ctx, tx, p, audit.ActionSiteInit, pkg.CA.ID, now, pkg.details())
	})
	if err != nil {
		return fmt.Errorf("site database: %w", err)
	}
	return nil
}
