package enroll

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// DeviceAction is an operator action on a registered device.
type DeviceAction string

// Operator actions on devices.
const (
	// AllowReprovision lets the next initial enrollment of an active device replace its identity.
	AllowReprovision DeviceAction = "allow-reprovision"
	// ForceRenew lets the device's next renewal happen outside the profile's renewal window.
	ForceRenew DeviceAction = "force-renew"
	// Suspend refuses the device's renewals until it is resumed.
	Suspend DeviceAction = "suspend"
	// Resume returns a suspended device to active.
	Resume DeviceAction = "resume"
	// Decommission retires the device for good; its serial is never provisioned again. It is not an
	// ApplyDeviceAction: it revokes the device's certificates and records its keys destroyed in the same
	// transaction, so it is revocation.Service.Decommission. The name is that of its audit action.
	Decommission DeviceAction = "decommission"
)

// ErrDecommissionNeedsRevocation is what ApplyDeviceAction answers for Decommission: changing the state alone
// would leave the device's certificates valid and its keys recorded as live.
var ErrDecommissionNeedsRevocation = &ra.Error{Kind: ra.KindBadRequest, Err: errors.New("decommissioning revokes the device's certificates and records its keys destroyed on someone's attestation: use 'keyward device decommission SERIAL --attested-by NAME' (revocation.Service.Decommission), not a state change")}

// DeviceRef names a device; Environment and ProductLine may be empty when the serial is unique in the registry.
type DeviceRef struct {
	Environment string
	ProductLine string
	Serial      string
}

// FindDevice returns the one device ref names, or an error that lists the candidates.
func FindDevice(ctx context.Context, s store.Store, ref DeviceRef) (*store.Device, error) {
	es := s
	list, err := es.ListDevices(ctx, store.DeviceFilter{Environment: ref.Environment, ProductLine: ref.ProductLine, Serial: ref.Serial})
	if err != nil {
		return nil, err
	}
	switch len(list) {
	case 0:
		return nil, &ra.Error{Kind: ra.KindNotFound, Err: fmt.Errorf("no device %q in the registry (see 'keyward device list')", ref.Serial)}
	case 1:
		return list[0], nil
	}
	var names []string
	for _, d := range list {
		names = append(names, d.Environment+"/"+d.ProductLine)
	}
	return nil, &ra.Error{Kind: ra.KindBadRequest, Err: fmt.Errorf("device serial %q exists in %s: name one with --env and --product", ref.Serial, strings.Join(names, ", "))}
}

// ApplyDeviceAction applies action to the device ref names, in one transaction with its audit event.
// Decommission is refused with ErrDecommissionNeedsRevocation.
func ApplyDeviceAction(ctx context.Context, s store.Store, now time.Time, actor string, ref DeviceRef, action DeviceAction) (*store.Device, error) {
	if action == Decommission {
		return nil, ErrDecommissionNeedsRevocation
	}
	found, err := FindDevice(ctx, s, ref)
	if err != nil {
		return nil, err
	}
	var out *store.Device
	err = s.Tx(ctx, func(tx store.Tx) error {
		etx := tx
		d, err := etx.LockDevice(ctx, found.Environment, found.ProductLine, found.Serial)
		if err != nil {
			return err
		}
		from := d.State
		conflict := func(format string, args ...any) error {
			return &ra.Error{Kind: ra.KindConflict, Err: fmt.Errorf("device %s of %s/%s: "+format, append([]any{d.Serial, d.Environment, d.ProductLine}, args...)...)}
		}
		if d.State == store.DeviceDecommissioned {
			return conflict("it is decommissioned, which is final")
		}
		switch action {
		case AllowReprovision:
			if d.State != store.DeviceActive {
				return conflict("it is %s; resume it first", d.State)
			}
			d.ReprovisionAllowed = true
		case ForceRenew:
			if d.State != store.DeviceActive {
				return conflict("it is %s; resume it first", d.State)
			}
			d.ForceRenew = true
		case Suspend:
			if d.State != store.DeviceActive {
				return conflict("it is %s, not active", d.State)
			}
			d.State = store.DeviceSuspended
		case Resume:
			if d.State != store.DeviceSuspended {
				return conflict("it is %s, not suspended", d.State)
			}
			d.State = store.DeviceActive
		default:
			return fmt.Errorf("unknown device action %q", action)
		}
		d.UpdatedAt = now.UTC()
		if err := etx.PutDevice(ctx, d); err != nil {
			return err
		}
		out = d
		return tx.AppendAudit(ctx, &audit.Event{Time: now.UTC(), Actor: actor, Action: "device." + string(action), Subject: d.Serial, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"environment": d.Environment, "product_line": d.ProductLine, "from": from, "to": d.State, "certificate": d.CertSerial}})
	})
	return out, err
}

// AttestationDir is the directory of the data directory that configures attestation: a file
// attestation/<profile>.pem holds the secure-element vendor root certificates that enrollments under that
// profile must chain an attestation to; without such a file a profile needs no attestation. (Profiles are
// versioned certificate policy; which vendors' secure elements a factory buys is deployment configuration,
// so it lives beside the profiles rather than in them.)
const AttestationDir = "attestation"

// LoadAttestation reads DIR/attestation/*.pem into a map from profile name to root pool.
func LoadAttestation(dir string) (map[string]*x509.CertPool, error) {
	files, err := filepath.Glob(filepath.Join(dir, AttestationDir, "*.pem"))
	if err != nil {
		return nil, err
	}
	out := map[string]*x509.CertPool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		n := 0
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: certificate %d: %w", f, n+1, err)
			}
			pool.AddCert(c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%s holds no PEM certificate: put the secure-element vendor's attestation root(s) there, or remove the file", f)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".pem")] = pool
	}
	return out, nil
}
