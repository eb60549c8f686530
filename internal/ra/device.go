package ra

// The device registry's operator actions. A device is recorded when it is first enrolled (enroll.go) or
// reconciled from a factory export; decommissioning (decommission.go) retires it for good.

import (
	"context"
	"fmt"
	"strings"

	"github.com/keyward/keyward/internal/audit"
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
	// transaction, so it is RA.Decommission. The name is that of its audit action.
	Decommission DeviceAction = "decommission"
)

// ErrDecommissionNeedsRevocation is what ApplyDeviceAction answers for Decommission: changing the state alone
// would leave the device's certificates valid and its keys recorded as live.
var ErrDecommissionNeedsRevocation = Sentinel(KindBadRequest, "decommissioning revokes the device's certificates and records its keys destroyed on someone's attestation: decommission the device (with who attests the destruction), do not change its state")

// DeviceRef names a device; Environment and ProductLine may be empty when the serial is unique in the registry.
type DeviceRef struct {
	Environment string
	ProductLine string
	Serial      string
}

// FindDevice returns the one device ref names, or an error that lists the candidates.
func (r *RA) FindDevice(ctx context.Context, ref DeviceRef) (*store.Device, error) {
	list, err := r.cfg.Store.ListDevices(ctx, store.DeviceFilter{Environment: ref.Environment, ProductLine: ref.ProductLine, Serial: ref.Serial})
	if err != nil {
		return nil, err
	}
	switch len(list) {
	case 0:
		return nil, &Error{Kind: KindNotFound, Err: fmt.Errorf("no device %q in the registry (see 'keyward device list')", ref.Serial)}
	case 1:
		return list[0], nil
	}
	var names []string
	for _, d := range list {
		names = append(names, d.Environment+"/"+d.ProductLine)
	}
	return nil, &Error{Kind: KindBadRequest, Err: fmt.Errorf("device serial %q exists in %s: name one with --env and --product", ref.Serial, strings.Join(names, ", "))}
}

// ApplyDeviceAction applies action to the device ref names for p, in one transaction with its audit event.
// Decommission is refused with ErrDecommissionNeedsRevocation.
func (r *RA) ApplyDeviceAction(ctx context.Context, p Principal, ref DeviceRef, action DeviceAction) (*store.Device, error) {
	if err := r.authorize(ctx, p, audit.ActionDevice+string(action), ref.Serial, string(action)+" devices", RoleAdmin, RoleCAOfficer); err != nil {
		return nil, err
	}
	if action == Decommission {
		return nil, ErrDecommissionNeedsRevocation
	}
	now := r.now()
	found, err := r.FindDevice(ctx, ref)
	if err != nil {
		return nil, err
	}
	var out *store.Device
	err = r.tx(ctx, func(tx store.Tx) error {
		d, err := tx.LockDevice(ctx, found.Environment, found.ProductLine, found.Serial)
		if err != nil {
			return err
		}
		from := d.State
		conflict := func(format string, args ...any) error {
			return &Error{Kind: KindConflict, Err: fmt.Errorf("device %s of %s/%s: "+format, append([]any{d.Serial, d.Environment, d.ProductLine}, args...)...)}
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
		d.UpdatedAt = now
		if err := tx.PutDevice(ctx, d); err != nil {
			return err
		}
		out = d
		return r.success(ctx, tx, p, audit.ActionDevice+string(action), d.Serial, now,
			map[string]string{"environment": d.Environment, "product_line": d.ProductLine, "from": from, "to": d.State, "certificate": d.CertSerial})
	})
	return out, err
}
