package ra

// Key-derivation keys (KDKs) and the symmetric device keys they derive. A KDK belongs to one environment,
// product line and purpose (device-link, device-storage) and is versioned: 'key kdk create' makes version 1,
// 'key kdk rotate' the next, and the newest active version derives the keys of devices that have none yet.
// Every derived key is recorded in the key glossary (location device, URI derived:<env>/<product>/<serial>/
// <purpose>/v<version>), never its value: the record says which version a device holds, so a later
// re-derivation (a repair depot) gives the same key, from that version, as long as it is not destroyed. A
// retired (deactivated) version derives no new device keys and still re-derives its devices' keys.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/kbkdf"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/store"
)

// DerivedKeySize is the size of a derived device key: 256 bits, an AES-256 or HMAC-SHA-256 key on the device.
const DerivedKeySize = 32

// KDKRequest names the KDK of an environment, product line and purpose, and where a new version is made.
type KDKRequest struct {
	Environment, ProductLine string
	Purpose                  string
	// Keys is the keystore a new version is generated in (nil: the software keystore); outside dev it must be a
	// PKCS#11 token.
	Keys keystore.Keystore
}

// KDKView is one KDK version as listed and returned.
type KDKView struct {
	URI         string    `json:"uri"`
	Environment string    `json:"environment"`
	ProductLine string    `json:"product_line"`
	Purpose     string    `json:"purpose"`
	Version     int       `json:"version"`
	Algorithm   string    `json:"algorithm"`
	Location    string    `json:"location"`
	State       string    `json:"state"`
	CreatedAt   time.Time `json:"created_at"`
}

// KDKOwner is the key glossary owner of the KDKs of (env, product): "kdk:<env>/<product>".
func KDKOwner(env, product string) string { return "kdk:" + env + "/" + product }

// DerivedKeyURI is the key glossary URI of the device key of purpose derived for device serial of (env,
// product) under KDK version version. It names the key; it is not the key.
func DerivedKeyURI(env, product, serial, purpose string, version int) string {
	return "derived:" + env + "/" + product + "/" + serial + "/" + purpose + "/v" + strconv.Itoa(version)
}

// checkKDKScope validates environment, product line and purpose of a KDK request.
func (r *RA) checkKDKScope(env, product, purpose string) (keystore.Purpose, error) {
	envSpec := r.Hierarchy().Environments[env]
	if envSpec == nil {
		return "", FieldErrorf(KindBadRequest, "environment", "unknown environment %q (configured: %s)", env, strings.Join(r.Hierarchy().EnvironmentNames(), ", "))
	}
	if envSpec.ProductLines[product] == nil {
		return "", FieldErrorf(KindBadRequest, "product_line", "unknown product line %q in environment %q (configured: %s)", product, env, strings.Join(r.Hierarchy().ProductLineNames(env), ", "))
	}
	p, err := keystore.ParseSymmetricPurpose(purpose)
	if err != nil {
		return "", FieldErrorf(KindBadRequest, "purpose", "%v", err)
	}
	return p, nil
}

// ListKDKs returns the KDK versions of (env, product, purpose) with their glossary state; empty arguments
// match any.
func (r *RA) ListKDKs(ctx context.Context, env, product, purpose string) ([]*KDKView, error) {
	rows, err := r.cfg.Store.ListKDKs(ctx, env, product, purpose)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	out := make([]*KDKView, 0, len(rows))
	for _, k := range rows {
		key, err := r.cfg.Store.GetKey(ctx, k.URI)
		if err != nil {
			return nil, wrap(KindUnavailable, err)
		}
		out = append(out, &KDKView{URI: k.URI, Environment: k.Environment, ProductLine: k.ProductLine, Purpose: k.Purpose, Version: k.Version,
			Algorithm: key.Algorithm, Location: key.Location, State: key.State, CreatedAt: k.CreatedAt})
	}
	return out, nil
}

// CreateKDK makes version 1 of the KDK of req; a KDK that exists is rotated instead (RotateKDK).
func (r *RA) CreateKDK(ctx context.Context, p Principal, req KDKRequest) (*KDKView, error) {
	return r.newKDK(ctx, p, req, false)
}

// RotateKDK makes the next version of the KDK of req. Earlier versions keep their state: active ones go on
// re-deriving for the devices that have their keys (retire them with RetireKDK to stop new derivations).
func (r *RA) RotateKDK(ctx context.Context, p Principal, req KDKRequest) (*KDKView, error) {
	return r.newKDK(ctx, p, req, true)
}

func (r *RA) newKDK(ctx context.Context, p Principal, req KDKRequest, rotate bool) (*KDKView, error) {
	action, verb := audit.ActionKDKCreate, "create"
	if rotate {
		action, verb = audit.ActionKDKRotate, "rotate"
	}
	subject := KDKOwner(req.Environment, req.ProductLine) + "/" + req.Purpose
	if err := r.authorize(ctx, p, action, subject, verb+" key-derivation keys", RoleAdmin); err != nil {
		return nil, err
	}
	refuse := func(err error) (*KDKView, error) {
		r.refuse(ctx, p, action, subject, nil, err)
		return nil, err
	}
	purpose, err := r.checkKDKScope(req.Environment, req.ProductLine, req.Purpose)
	if err != nil {
		return refuse(err)
	}
	if req.Environment != "dev" && (req.Keys == nil || req.Keys.Location() != keystore.LocationPKCS11) {
		return refuse(FieldErrorf(KindBadRequest, "keystore", "key-derivation keys of %s live in an HSM: name a PKCS#11 token (the software keystore is for dev)", req.Environment))
	}
	have, err := r.cfg.Store.ListKDKs(ctx, req.Environment, req.ProductLine, req.Purpose)
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	switch {
	case !rotate && len(have) > 0:
		return refuse(errorf(KindConflict, "%s has a key-derivation key already (version %d); make the next version with 'keyward key kdk rotate'", subject, len(have)))
	case rotate && len(have) == 0:
		return refuse(errorf(KindNotFound, "%s has no key-derivation key to rotate; make the first with 'keyward key kdk create'", subject))
	}
	version := 1
	if n := len(have); n > 0 {
		version = have[n-1].Version + 1
	}
	key, loc, err := r.cfg.CA.GenerateKDK(ctx, req.Keys, purpose, fmt.Sprintf("%s v%d", subject, version))
	if err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return refuse(FieldErrorf(KindBadRequest, "keystore", "%v", err))
		}
		return nil, wrap(KindUnavailable, err)
	}
	now := r.now()
	row := &store.KDK{URI: key.URI, Environment: req.Environment, ProductLine: req.ProductLine, Purpose: req.Purpose, Version: version, CreatedAt: now}
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(ctx, &store.Key{URI: key.URI, Purpose: string(purpose), Algorithm: string(keystore.HMACSHA256), Location: string(loc),
			State: store.KeyActive, Owner: KDKOwner(req.Environment, req.ProductLine), CreatedAt: now, StateChangedAt: now}); err != nil {
			return err
		}
		if err := tx.InsertKDK(ctx, row); err != nil {
			return err
		}
		return r.success(ctx, tx, p, action, key.URI, now, map[string]string{"environment": req.Environment, "product_line": req.ProductLine,
			"purpose": req.Purpose, "version": strconv.Itoa(version), "algorithm": string(keystore.HMACSHA256), "location": string(loc), "role": p.Role})
	})
	if err != nil {
		err = r.cfg.CA.Abandon(ctx, err, key.URI)
		if errors.Is(err, store.ErrExists) {
			return nil, errorf(KindConflict, "%s version %d was made meanwhile by another process; nothing changed: %v", subject, version, err)
		}
		return nil, wrap(KindUnavailable, err)
	}
	return &KDKView{URI: key.URI, Environment: req.Environment, ProductLine: req.ProductLine, Purpose: req.Purpose, Version: version,
		Algorithm: string(keystore.HMACSHA256), Location: string(loc), State: store.KeyActive, CreatedAt: now}, nil
}

// RetireKDK deactivates version of the KDK of (env, product, purpose): it derives no new device keys (only the
// newest version ever does, and a retired newest version stops new derivations until the next rotation), and
// goes on re-deriving those of devices that got theirs from it, until it is destroyed ('keyward key destroy').
func (r *RA) RetireKDK(ctx context.Context, p Principal, env, product, purpose string, version int) (*KDKView, error) {
	subject := KDKOwner(env, product) + "/" + purpose
	if err := r.authorize(ctx, p, audit.ActionKDKRetire, subject, "retire key-derivation keys", RoleAdmin); err != nil {
		return nil, err
	}
	refuse := func(err error) (*KDKView, error) {
		r.refuse(ctx, p, audit.ActionKDKRetire, subject, nil, err)
		return nil, err
	}
	if _, err := r.checkKDKScope(env, product, purpose); err != nil {
		return refuse(err)
	}
	views, err := r.ListKDKs(ctx, env, product, purpose)
	if err != nil {
		return nil, err
	}
	var v *KDKView
	for _, k := range views {
		if k.Version == version {
			v = k
		}
	}
	switch {
	case v == nil:
		return refuse(FieldErrorf(KindNotFound, "version", "%s has no version %d (see 'keyward key kdk list')", subject, version))
	case v.State != store.KeyActive:
		return refuse(errorf(KindConflict, "%s version %d is %s already; only an active version is retired", subject, version, v.State))
	}
	now := r.now()
	err = r.tx(ctx, func(tx store.Tx) error {
		if err := tx.SetKeyState(ctx, v.URI, store.KeyDeactivated, now); err != nil {
			return err
		}
		return r.success(ctx, tx, p, audit.ActionKDKRetire, v.URI, now, map[string]string{"environment": env, "product_line": product,
			"purpose": purpose, "version": strconv.Itoa(version), "role": p.Role})
	})
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	r.cfg.CA.Invalidate(ctx, v.URI)
	v.State = store.KeyDeactivated
	return v, nil
}

// CurrentKDK returns the newest version of the KDK of (env, product, purpose), the only one that derives keys
// for devices that have none yet; it must be active. Older versions only re-derive their devices' keys.
func (r *RA) CurrentKDK(ctx context.Context, env, product, purpose string) (*KDKView, error) {
	views, err := r.ListKDKs(ctx, env, product, purpose)
	if err != nil {
		return nil, err
	}
	if len(views) == 0 {
		return nil, FieldErrorf(KindNotFound, "purpose", "%s/%s has no %s key-derivation key (make one with 'keyward key kdk create')", env, product, purpose)
	}
	newest := views[len(views)-1]
	if newest.State != store.KeyActive {
		return nil, FieldErrorf(KindConflict, "purpose", "the newest %s key-derivation key of %s/%s (version %d) is %s and derives no new device keys; make the next version with 'keyward key kdk rotate'",
			purpose, env, product, newest.Version, newest.State)
	}
	return newest, nil
}

// DeriveRequest asks for a registered device's symmetric key, wrapped for transport.
type DeriveRequest struct {
	Device  DeviceRef
	Purpose string
	// Wrap wraps the derived key for its recipient (under a transport key) and says how; the clear key is
	// never returned. It runs before anything is recorded: a failure records nothing.
	Wrap func(key []byte) (wrapped []byte, how string, err error)
}

// Derived is a device key handed out wrapped.
type Derived struct {
	URI         string `json:"uri"` // its key glossary URI (a name, not the key)
	Environment string `json:"environment"`
	ProductLine string `json:"product_line"`
	Device      string `json:"device"`
	Purpose     string `json:"purpose"`
	KDKVersion  int    `json:"kdk_version"`
	KDK         string `json:"kdk"`
	Wrapped     []byte `json:"wrapped_key"`
	KeyWrap     string `json:"key_wrap"`
	// New reports that the device had no key of this purpose recorded, so this derivation recorded it.
	New bool `json:"new"`
}

// DeriveDeviceKey derives the symmetric key of purpose for a registered device that is not decommissioned,
// wraps it with req.Wrap and records the derivation (key.derive) with the device's key glossary row in one
// transaction. A device that has a key of this purpose gets it again, from the KDK version it was derived
// from (active or retired); one that has none gets a key from the newest active version, recorded.
func (r *RA) DeriveDeviceKey(ctx context.Context, p Principal, req DeriveRequest) (*Derived, error) {
	subject := req.Device.Serial
	if err := r.authorize(ctx, p, audit.ActionKeyDerive, subject, "derive device keys", RoleAdmin, RoleCAOfficer); err != nil {
		return nil, err
	}
	refuse := func(err error) (*Derived, error) {
		r.refuse(ctx, p, audit.ActionKeyDerive, subject, map[string]string{"purpose": audit.Bound(req.Purpose, 64)}, err)
		return nil, err
	}
	if req.Wrap == nil {
		return refuse(FieldErrorf(KindBadRequest, "wrap_with", "a derived key leaves Keyward only wrapped: name the transport key"))
	}
	if req.Device.Serial == "" {
		return refuse(FieldErrorf(KindBadRequest, "device", "name the device serial"))
	}
	if req.Device.Environment != "" || req.Device.ProductLine != "" {
		if _, err := r.checkKDKScope(req.Device.Environment, req.Device.ProductLine, req.Purpose); err != nil {
			return refuse(err)
		}
	} else if _, err := keystore.ParseSymmetricPurpose(req.Purpose); err != nil {
		return refuse(FieldErrorf(KindBadRequest, "purpose", "%v", err))
	}
	d, err := r.FindDevice(ctx, req.Device)
	if err != nil {
		return refuse(err)
	}
	if d.State == store.DeviceDecommissioned {
		return refuse(errorf(KindConflict, "device %s of %s/%s was decommissioned at %s: its keys are destroyed and none is derived again",
			d.Serial, d.Environment, d.ProductLine, d.UpdatedAt.UTC().Format(time.RFC3339)))
	}
	kdk, recorded, err := r.deviceKDK(ctx, d.Environment, d.ProductLine, d.Serial, req.Purpose)
	if err != nil {
		return refuse(err)
	}
	key, err := r.cfg.CA.DeriveKey(ctx, kdk.URI, kbkdf.Device{Purpose: req.Purpose, Environment: d.Environment, ProductLine: d.ProductLine,
		Serial: d.Serial, KDKVersion: kdk.Version, Length: DerivedKeySize}, recorded)
	if err != nil {
		if k := KindOf(err); k != KindInternal && k != KindUnavailable {
			return refuse(wrap(k, err))
		}
		return nil, wrap(KindUnavailable, err)
	}
	wrapped, how, err := req.Wrap(key)
	clear(key)
	if err != nil {
		if k := KindOf(err); k != KindInternal && k != KindUnavailable {
			return refuse(&Error{Kind: k, Field: "wrap_with", Err: err})
		}
		return nil, wrap(KindUnavailable, fmt.Errorf("wrap the derived key: %w", err))
	}
	uri := DerivedKeyURI(d.Environment, d.ProductLine, d.Serial, req.Purpose, kdk.Version)
	now := r.now()
	err = r.tx(ctx, func(tx store.Tx) error {
		if !recorded {
			if err := tx.InsertKey(ctx, derivedKeyRow(uri, req.Purpose, d.Serial, now)); err != nil {
				return err
			}
		}
		return r.success(ctx, tx, p, audit.ActionKeyDerive, d.Serial, now, map[string]string{"environment": d.Environment, "product_line": d.ProductLine,
			"purpose": req.Purpose, "kdk": kdk.URI, "kdk_version": strconv.Itoa(kdk.Version), "key": uri, "key_wrap": audit.Bound(how, 256),
			"new": strconv.FormatBool(!recorded), "role": p.Role})
	})
	if err != nil {
		return nil, wrap(KindUnavailable, err)
	}
	return &Derived{URI: uri, Environment: d.Environment, ProductLine: d.ProductLine, Device: d.Serial, Purpose: req.Purpose, KDKVersion: kdk.Version,
		KDK: kdk.URI, Wrapped: wrapped, KeyWrap: how, New: !recorded}, nil
}

// derivedKeyRow is the key glossary row of a derived device key: held by the device, never by Keyward.
func derivedKeyRow(uri, purpose, serial string, now time.Time) *store.Key {
	return &store.Key{URI: uri, Purpose: purpose, Algorithm: string(keystore.Secret256), Location: string(keystore.LocationDevice),
		State: store.KeyActive, Owner: serial, CreatedAt: now, StateChangedAt: now}
}

// deviceKDK returns the KDK version whose key of purpose the device (env, product, serial) holds (recorded
// true), or, if it holds none, the current version. A device key whose KDK was destroyed is not derived again.
func (r *RA) deviceKDK(ctx context.Context, env, product, serial, purpose string) (*KDKView, bool, error) {
	views, err := r.ListKDKs(ctx, env, product, purpose)
	if err != nil {
		return nil, false, err
	}
	for i := len(views) - 1; i >= 0; i-- {
		k, err := r.cfg.Store.GetKey(ctx, DerivedKeyURI(env, product, serial, purpose, views[i].Version))
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			return nil, false, wrap(KindUnavailable, err)
		case k.State == store.KeyDestroyed:
			return nil, false, errorf(KindConflict, "device %s's %s key (KDK version %d) is recorded destroyed; it is not derived again", serial, purpose, views[i].Version)
		case views[i].State == store.KeyDestroyed:
			return nil, false, errorf(KindConflict, "device %s's %s key came from KDK version %d, which is destroyed: it can no longer be derived", serial, purpose, views[i].Version)
		}
		return views[i], true, nil
	}
	cur, err := r.CurrentKDK(ctx, env, product, purpose)
	return cur, false, err
}

// deviceSymmetricKeys returns the key glossary rows of every symmetric key recorded for the device, not yet
// destroyed.
func (r *RA) deviceSymmetricKeys(ctx context.Context, env, product, serial string) ([]*store.Key, error) {
	rows, err := r.cfg.Store.ListKDKs(ctx, env, product, "")
	if err != nil {
		return nil, err
	}
	var out []*store.Key
	for _, kdk := range rows {
		k, err := r.cfg.Store.GetKey(ctx, DerivedKeyURI(env, product, serial, kdk.Purpose, kdk.Version))
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			return nil, err
		case k.State != store.KeyDestroyed:
			out = append(out, k)
		}
	}
	return out, nil
}
