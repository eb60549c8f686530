// Package enroll provides the operator side of device enrollment at manufacturing: factory stations (their CA,
// key, certificate and scope), the device registry's operator actions (suspend, resume, decommission, allow
// re-provisioning, force renewal) and the attestation roots. Enrollment itself, which decides on requests, is
// in package ra (Enroller); the EST front end is in package server.
package enroll

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
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
	"github.com/keyward/keyward/internal/goodkey"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/issuer"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
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

// StationOptions describe a new factory station.
type StationOptions struct {
	Environment  string
	Site         string
	ProductLines []string
	// Name is the station's id; default "<site>-<8 random hex digits>".
	Name string
	// Quota is the number of enrollments allowed; 0 means no limit.
	Quota int64
	// ValidUntil ends the station's validity window and its certificate; zero means one year from now.
	ValidUntil time.Time
	// Actor is recorded in the audit trail.
	Actor string
}

// StationCredentials is what a new station receives.
type StationCredentials struct {
	Station *store.Station
	// CertPEM holds the station certificate followed by the station CA certificate.
	CertPEM []byte
	// KeyPEM is the station's private key, PKCS #8. It exists only here: Keyward keeps its public key.
	KeyPEM []byte
}

// AddStation creates a factory station for opts: the environment's station CA on first use (signed by the
// environment's root, so it needs the root online), a P-256 key of purpose factory-station and a client
// certificate for it, the station record, the certificate and key glossary rows and the audit events, in one
// transaction.
func AddStation(ctx context.Context, n *node.Node, opts StationOptions) (*StationCredentials, error) {
	env := n.Config.Environments[opts.Environment]
	if env == nil {
		return nil, badRequest("--env %q is not an environment of keyward.yaml (declared: %s)", opts.Environment, strings.Join(n.Config.EnvironmentNames(), ", "))
	}
	if !nameRule.MatchString(opts.Site) {
		return nil, badRequest("--site %q: use 1 to 63 lower-case letters, digits and hyphens, starting with a letter or digit", opts.Site)
	}
	if len(opts.ProductLines) == 0 {
		return nil, badRequest("--product is required: name the product lines the station may enroll")
	}
	for _, pl := range opts.ProductLines {
		if env.ProductLines[pl] == nil {
			return nil, badRequest("--product %q is not a product line of environment %q (declared: %s)", pl, opts.Environment, strings.Join(n.Config.ProductLineNames(opts.Environment), ", "))
		}
	}
	if opts.Quota < 0 {
		return nil, badRequest("--quota %d: use 0 for no limit or a positive number of enrollments", opts.Quota)
	}
	now := n.Now().UTC()
	if opts.ValidUntil.IsZero() {
		opts.ValidUntil = now.Add(defaultStationValidity)
	}
	if !opts.ValidUntil.After(now) {
		return nil, badRequest("--valid-until %s is not in the future", opts.ValidUntil.Format(time.RFC3339))
	}
	if opts.Name == "" {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		opts.Name = opts.Site + "-" + hex.EncodeToString(b)
	} else if !nameRule.MatchString(opts.Name) {
		return nil, badRequest("--name %q: use 1 to 63 lower-case letters, digits and hyphens", opts.Name)
	}
	if opts.Actor == "" {
		opts.Actor = "cli"
	}
	ca, err := ensureStationCA(ctx, n, opts.Environment, opts.Actor)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(ca.CertDER)
	if err != nil {
		return nil, fmt.Errorf("parse %s certificate: %w", ca.ID, err)
	}
	if opts.ValidUntil.After(caCert.NotAfter) {
		return nil, badRequest("--valid-until %s is after the station CA %s expires (%s)", opts.ValidUntil.Format(time.RFC3339), ca.ID, caCert.NotAfter.Format(time.RFC3339))
	}
	caSigner, err := n.Keys.Signer(ctx, ca.KeyURI, keystore.PurposeCASigning)
	if err != nil {
		return nil, fmt.Errorf("station CA %s key: %w", ca.ID, err)
	}
	// The station's key is generated here and handed to the station; Keyward keeps only its public half.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := issuer.RandomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := profile.SubjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{n.Config.Organization}, OrganizationalUnit: []string{opts.Site}, CommonName: opts.Name},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     opts.ValidUntil,
		// RFC 5280 4.2.1.3 and 4.2.1.12: a TLS client key, nothing else.
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		SubjectKeyId:   ski,
		AuthorityKeyId: caCert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caSigner)
	if err != nil {
		return nil, fmt.Errorf("sign station certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	spki, err := goodkey.SPKIHash(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	st := &store.Station{ID: opts.Name, Environment: opts.Environment, Site: opts.Site, ProductLines: slices.Clone(opts.ProductLines),
		CertSerial: ra.SerialString(cert), SPKISHA256: spki, Quota: opts.Quota, ValidFrom: now, ValidUntil: opts.ValidUntil,
		State: store.StationActive, CreatedAt: now, StateChanged: now}
	err = n.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertStation(ctx, st); err != nil {
			return err
		}
		if err := tx.InsertCertificate(ctx, &store.Certificate{Serial: st.CertSerial, IssuerID: ca.ID, Profile: StationProfile, ProfileVersion: 1,
			Subject: cert.Subject.String(), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, SPKISHA256: spki, DER: der,
			Status: store.CertStatusValid, CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.InsertKey(ctx, &store.Key{URI: ra.DeviceKeyURI(spki), Purpose: string(keystore.PurposeFactoryStation), Algorithm: string(keystore.ECDSAP256),
			Location: string(keystore.LocationDevice), State: store.KeyActive, Owner: "station:" + st.ID, SPKISHA256: spki, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: opts.Actor, Action: "station.add", Subject: st.ID, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"environment": st.Environment, "site": st.Site, "product_lines": strings.Join(st.ProductLines, ","),
				"quota": strconv.FormatInt(st.Quota, 10), "valid_until": st.ValidUntil.Format(time.RFC3339), "certificate": st.CertSerial,
				"issuer": ca.ID, "spki_sha256": hex.EncodeToString(spki)}})
	})
	if errors.Is(err, store.ErrExists) {
		return nil, &ra.Error{Kind: ra.KindConflict, Err: fmt.Errorf("station %q exists already: choose another --name", st.ID)}
	} else if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.CertDER})...)
	return &StationCredentials{Station: st, CertPEM: certPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}, nil
}

// ensureStationCA returns env's station CA, creating it under env's root on first use.
func ensureStationCA(ctx context.Context, n *node.Node, env, actor string) (*store.CA, error) {
	id := StationCAID(env)
	if ca, err := n.Store.GetCA(ctx, id); err == nil {
		return ca, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	root, err := n.Store.GetCA(ctx, hierarchy.RootID(env))
	if errors.Is(err, store.ErrNotFound) {
		return nil, &ra.Error{Kind: ra.KindNotFound, Err: fmt.Errorf("environment %q has no root CA yet: run 'keyward ca create --env %s' first", env, env)}
	} else if err != nil {
		return nil, err
	}
	if root.KeyURI == "" || n.Config.Environments[env].Root.Offline {
		return nil, &ra.Error{Kind: ra.KindBadRequest, Err: fmt.Errorf("environment %q has an offline root: its station CA must be signed in a ceremony, which this version does not offer yet", env)}
	}
	rootCert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", root.ID, err)
	}
	rootSigner, err := n.Keys.Signer(ctx, root.KeyURI, keystore.PurposeRootSigning)
	if err != nil {
		return nil, fmt.Errorf("root %s key: %w", root.ID, err)
	}
	key, err := n.Soft.Generate(ctx, keystore.PurposeCASigning, keystore.ECDSAP256, id)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", id, err)
	}
	abandon := func(cause error) error {
		if derr := n.Soft.Destroy(ctx, key.URI); derr != nil {
			return fmt.Errorf("%w (and destroying the unused key %s failed: %v)", cause, key.URI, derr)
		}
		return cause
	}
	now := n.Now().UTC()
	validity := stationCAValidity
	if left := rootCert.NotAfter.Sub(now) - time.Hour; left < validity {
		validity = left
	}
	// RFC 5280 4.2.1.9: path length 0, it certifies stations only.
	tmpl, err := hierarchy.IssuingTemplate(pkix.Name{CommonName: fmt.Sprintf("%s factory stations CA", env)}, key.Public, now, validity, rootCert)
	if err != nil {
		return nil, abandon(err)
	}
	der, _, err := issuer.SignCA(ctx, tmpl, rootCert, rootSigner, key.Public)
	if err != nil {
		return nil, abandon(fmt.Errorf("sign %s: %w", id, err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, abandon(err)
	}
	spki, err := goodkey.SPKIHash(key.Public)
	if err != nil {
		return nil, abandon(err)
	}
	ca := &store.CA{ID: id, Environment: env, Kind: store.CAKindStation, ParentID: root.ID, KeyURI: key.URI, CertDER: der,
		Subject: cert.Subject.String(), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Status: store.CAStatusActive, CreatedAt: now}
	err = n.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(ctx, &store.Key{URI: key.URI, Purpose: string(key.Purpose), Algorithm: string(key.Algorithm), Location: string(keystore.LocationSoftware),
			State: store.KeyActive, Owner: id, SPKISHA256: spki, CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: actor, Action: "key.generate", Subject: key.URI, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"purpose": string(key.Purpose), "algorithm": string(key.Algorithm), "location": string(keystore.LocationSoftware), "owner": id}}); err != nil {
			return err
		}
		if err := tx.InsertCA(ctx, ca); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: actor, Action: "ca.create", Subject: id, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"kind": ca.Kind, "environment": env, "key": key.URI, "serial": fmt.Sprintf("%x", cert.SerialNumber), "not_after": ca.NotAfter.Format(time.RFC3339)}})
	})
	if errors.Is(err, store.ErrExists) {
		// Another process created it meanwhile: use theirs.
		_ = abandon(err)
		return n.Store.GetCA(ctx, id)
	} else if err != nil {
		return nil, abandon(err)
	}
	return ca, nil
}

// SetStationState suspends (store.StationSuspended), resumes (store.StationActive) or revokes
// (store.StationRevoked, final) station id, audited. The change takes effect on the station's next request.
// Revoking a station also revokes its certificate (RFC 5280 5.3.1 cessationOfOperation) in the same
// transaction, so CRLs and OCSP answer for it from their next update.
func SetStationState(ctx context.Context, s store.Store, now time.Time, actor, id, state string) (*store.Station, error) {
	var out *store.Station
	err := s.Tx(ctx, func(tx store.Tx) error {
		st, err := tx.LockStation(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return &ra.Error{Kind: ra.KindNotFound, Err: fmt.Errorf("no station %q (see 'keyward station list')", id)}
		} else if err != nil {
			return err
		}
		if st.State == store.StationRevoked {
			return &ra.Error{Kind: ra.KindConflict, Err: fmt.Errorf("station %s is revoked; a revoked station never returns: add a new one", id)}
		}
		if st.State == state {
			return &ra.Error{Kind: ra.KindConflict, Err: fmt.Errorf("station %s is %s already", id, state)}
		}
		from := st.State
		st.State, st.StateChanged = state, now.UTC()
		if err := tx.UpdateStation(ctx, st); err != nil {
			return err
		}
		out = st
		details := map[string]string{"from": from, "to": state, "environment": st.Environment, "site": st.Site}
		if state == store.StationRevoked {
			const cessationOfOperation = 5 // RFC 5280 5.3.1
			e, err := tx.Revoke(ctx, &store.Revocation{Serial: st.CertSerial, Reason: cessationOfOperation, RevokedAt: now.UTC().Truncate(time.Second)})
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("revoke the certificate %s of station %s: %w", st.CertSerial, id, err)
			}
			if err == nil {
				details["certificate_revoked"] = st.CertSerial
				if err := tx.AppendAudit(ctx, &audit.Event{Time: now.UTC(), Actor: actor, Action: "cert.revoke", Subject: st.CertSerial, Outcome: audit.OutcomeSuccess,
					Details: map[string]string{"issuer": e.IssuerID, "reason": "cessationOfOperation", "station": id}}); err != nil {
					return err
				}
			}
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now.UTC(), Actor: actor, Action: "station." + stateVerb(state), Subject: id, Outcome: audit.OutcomeSuccess, Details: details})
	})
	return out, err
}

func stateVerb(state string) string {
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

func badRequest(format string, args ...any) error {
	return &ra.Error{Kind: ra.KindBadRequest, Err: fmt.Errorf(format, args...)}
}
