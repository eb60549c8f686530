package ra

// Factory stations: the mTLS clients that forward device CSRs for one environment and the product lines they
// are scoped to, within a quota and a validity window (docs/enrollment.md). Their certificates are issued by the
// environment's station CA, through the same linted path as every certificate.

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/certpolicy"
)

// StationCAID returns the id of env's factory-station CA.
func StationCAID(env string) string { return env + "/stations" }

const (
	stationCAValidity      = 10 * 365 * 24 * time.Hour
	defaultStationValidity = 365 * 24 * time.Hour
	// StationProfile is the name recorded as the profile of factory-station certificates; they are made by
	// AddStation, not from a profile file.
	StationProfile = "factory-station"
)

var nameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// StationRequest describes a new factory station.
type StationRequest struct {
	Environment  string
	Site         string
	ProductLines []string
	// Name is the station's id; default "<site>-<8 random hex digits>".
	Name string
	// Quota is the number of enrollments allowed; 0 means no limit.
	Quota int64
	// ValidUntil ends the station's validity window and its certificate; zero means one year from now.
	ValidUntil time.Time
}

// StationCredentials is what a new station receives.
type StationCredentials struct {
	Station *store.Station
	// CertPEM holds the station certificate followed by the station CA certificate.
	CertPEM []byte
	// KeyPKCS8 is the station's private key. It exists only here: Keyward keeps its public key.
	KeyPKCS8 []byte
}

// AddStation creates a factory station for req: the environment's station CA on first use (signed by the
// environment's root, so it needs the root online), a P-256 key and a TLS client certificate for it, and the
// station record, the certificate and key glossary rows and the audit events, in one transaction.
func (r *RA) AddStation(ctx context.Context, p Principal, req StationRequest) (*StationCredentials, error) {
	if err := r.authorize(ctx, p, audit.ActionStationAdd, req.Name, "add factory stations", RoleAdmin, RoleCAOfficer); err != nil {
		return nil, err
	}
	env := r.Hierarchy().Environments[req.Environment]
	if env == nil {
		return nil, FieldErrorf(KindBadRequest, "environment", "environment %q is not declared in keyward.yaml (declared: %s)", req.Environment, strings.Join(r.Hierarchy().EnvironmentNames(), ", "))
	}
	if !nameRule.MatchString(req.Site) {
		return nil, FieldErrorf(KindBadRequest, "site", "site %q: use 1 to 63 lower-case letters, digits and hyphens, starting with a letter or digit", req.Site)
	}
	if len(req.ProductLines) == 0 {
		return nil, FieldErrorf(KindBadRequest, "product_lines", "name the product lines the station may enroll")
	}
	for _, pl := range req.ProductLines {
		if env.ProductLines[pl] == nil {
			return nil, FieldErrorf(KindBadRequest, "product_lines", "product line %q is not declared in environment %q (declared: %s)", pl, req.Environment, strings.Join(r.Hierarchy().ProductLineNames(req.Environment), ", "))
		}
	}
	if req.Quota < 0 {
		return nil, FieldErrorf(KindBadRequest, "quota", "quota %d: use 0 for no limit or a positive number of enrollments", req.Quota)
	}
	now := r.now()
	if req.ValidUntil.IsZero() {
		req.ValidUntil = now.Add(defaultStationValidity)
	}
	if !req.ValidUntil.After(now) {
		return nil, FieldErrorf(KindBadRequest, "valid_until", "valid until %s is not in the future", req.ValidUntil.Format(time.RFC3339))
	}
	if req.Name == "" {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		req.Name = req.Site + "-" + hex.EncodeToString(b)
	} else if !nameRule.MatchString(req.Name) {
		return nil, FieldErrorf(KindBadRequest, "name", "station name %q: use 1 to 63 lower-case letters, digits and hyphens", req.Name)
	}
	stationCA, err := r.ensureStationCA(ctx, p, req.Environment)
	if err != nil {
		return nil, err
	}
	caCert := stationCA.Certificate()
	if req.ValidUntil.After(caCert.NotAfter) {
		return nil, FieldErrorf(KindBadRequest, "valid_until", "valid until %s is after the station CA %s expires (%s)", req.ValidUntil.Format(time.RFC3339), stationCA.CA().ID, caCert.NotAfter.Format(time.RFC3339))
	}
	serial, err := issuer.NewSerial(now)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{r.Hierarchy().Organization}, OrganizationalUnit: []string{req.Site}, CommonName: req.Name},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     req.ValidUntil,
		// RFC 5280 4.2.1.3 and 4.2.1.12: a TLS client key, nothing else.
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		AuthorityKeyId: caCert.SubjectKeyId,
		// The station role (pkg/certpolicy): relying parties never take a station for a device, gateway or
		// service, whatever its name or usages say.
		Policies: []x509.OID{r.Hierarchy().Arc().Policy(certpolicy.Station)},
	}
	der, keyDER, err := stationCA.IssueCredential(ctx, tmpl)
	if err != nil {
		return nil, signError(stationCA.CA().ID, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	spki, err := goodkey.SPKIHash(cert.PublicKey)
	if err != nil {
		return nil, err
	}
	st := &store.Station{ID: req.Name, Environment: req.Environment, Site: req.Site, ProductLines: slices.Clone(req.ProductLines),
		CertSerial: SerialString(cert), SPKISHA256: spki, Quota: req.Quota, ValidFrom: now, ValidUntil: req.ValidUntil,
		State: store.StationActive, CreatedAt: now, StateChanged: now}
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertStation(ctx, st); err != nil {
			return err
		}
		if err := tx.InsertCertificate(ctx, &store.Certificate{Serial: st.CertSerial, IssuerID: stationCA.CA().ID, Profile: StationProfile, ProfileVersion: 1,
			Subject: cert.Subject.String(), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, SPKISHA256: spki, DER: der,
			Status: store.CertStatusValid, CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.InsertKey(ctx, &store.Key{URI: DeviceKeyURI(spki), Purpose: string(keystore.PurposeFactoryStation), Algorithm: string(keystore.ECDSAP256),
			Location: string(keystore.LocationDevice), State: store.KeyActive, Owner: "station:" + st.ID, SPKISHA256: spki, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionStationAdd, st.ID, now, map[string]string{"environment": st.Environment, "site": st.Site,
			"product_lines": strings.Join(st.ProductLines, ","), "quota": strconv.FormatInt(st.Quota, 10), "valid_until": st.ValidUntil.Format(time.RFC3339),
			"certificate": st.CertSerial, "issuer": stationCA.CA().ID, "spki_sha256": hex.EncodeToString(spki)})
	})
	if errors.Is(err, store.ErrExists) {
		return nil, FieldErrorf(KindConflict, "name", "station %q exists already: choose another name", st.ID)
	} else if err != nil {
		return nil, err
	}
	return &StationCredentials{Station: st, CertPEM: append(pemCert(der), pemCert(stationCA.CA().CertDER)...), KeyPKCS8: keyDER}, nil
}

// ensureStationCA returns the signing handle of env's station CA (its active generation), creating the CA
// under env's root on first use when the root is online. Under an offline root the station CA is made in a
// ceremony.
func (r *RA) ensureStationCA(ctx context.Context, p Principal, env string) (*ca.Issuer, error) {
	id, err := r.currentID(ctx, StationCAID(env))
	if err != nil {
		return nil, err
	}
	if _, err := r.cfg.Store.GetCA(ctx, id); err == nil {
		return r.issuer(ctx, id)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, wrap(KindUnavailable, err)
	}
	root, err := r.cfg.Store.GetCA(ctx, hierarchy.RootID(env))
	if errors.Is(err, store.ErrNotFound) && !r.Hierarchy().Environments[env].Root.Offline {
		return nil, errorf(KindNotFound, "environment %q has no root CA yet: create it with 'keyward ca create --env %s' first", env, env)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, wrap(KindUnavailable, err)
	}
	if root == nil || root.KeyURI == "" || r.Hierarchy().Environments[env].Root.Offline {
		return nil, errorf(KindBadRequest, "environment %q has an offline root, so its station CA is made in a ceremony: "+
			"'keyward ca csr --env %s --kind station --keystore URI --out station.csr', 'keyward ca ceremony sign' with the root, then 'keyward ca import'", env, env)
	}
	rootIss, err := r.issuer(ctx, root.ID)
	if err != nil {
		return nil, err
	}
	_, err = r.createSubordinate(ctx, p, subordinate{id: id, env: env, kind: store.CAKindStation, parent: rootIss,
		subject: pkix.Name{CommonName: fmt.Sprintf("%s factory stations CA", env)}, validity: stationCAValidity, clampToParent: true})
	if errors.Is(err, store.ErrExists) {
		// Another process created it meanwhile: use theirs.
		r.caChanged(ctx)
		return r.issuer(ctx, id)
	} else if err != nil {
		return nil, err
	}
	r.caChanged(ctx)
	return r.issuer(ctx, id)
}

// SetStationState suspends (store.StationSuspended), resumes (store.StationActive) or revokes
// (store.StationRevoked, final) station id, audited. The change takes effect on the station's next request.
// Revoking a station also revokes its certificate (RFC 5280 5.3.1 cessationOfOperation) in the same
// transaction, so CRLs and OCSP answer for it from their next update.
func (r *RA) SetStationState(ctx context.Context, p Principal, id, state string) (*store.Station, error) {
	action := audit.ActionStation + stationVerb(state)
	if err := r.authorize(ctx, p, action, id, stationVerb(state)+" factory stations", RoleAdmin, RoleCAOfficer); err != nil {
		return nil, err
	}
	var out *store.Station
	now := r.now()
	err := r.tx(ctx, func(tx store.Tx) error {
		st, err := tx.LockStation(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return errorf(KindNotFound, "no station %q (see 'keyward station list')", id)
		} else if err != nil {
			return err
		}
		if st.State == store.StationRevoked {
			return errorf(KindConflict, "station %s is revoked; a revoked station never returns: add a new one", id)
		}
		if st.State == state {
			return errorf(KindConflict, "station %s is %s already", id, state)
		}
		from := st.State
		st.State, st.StateChanged = state, now
		if err := tx.UpdateStation(ctx, st); err != nil {
			return err
		}
		out = st
		details := map[string]string{"from": from, "to": state, "environment": st.Environment, "site": st.Site}
		if state == store.StationRevoked {
			e, err := r.revokeTx(ctx, tx, p, st.CertSerial, store.ReasonCessationOfOperation, nil, now, map[string]string{"station": id})
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("revoke the certificate %s of station %s: %w", st.CertSerial, id, err)
			}
			if err == nil {
				details["certificate_revoked"] = e.Serial
			}
		}
		return r.success(ctx, tx, p, action, id, now, details)
	})
	return out, err
}

func stationVerb(state string) string {
	switch state {
	case store.StationActive:
		return "resume"
	case store.StationSuspended:
		return "suspend"
	case store.StationRevoked:
		return "revoke"
	}
	return state
}

// KeyPEM returns the station's private key as PEM ("PRIVATE KEY", PKCS #8).
func (c *StationCredentials) KeyPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: c.KeyPKCS8})
}
