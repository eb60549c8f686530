package node

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keystore/multi"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// NormalizeSerial accepts a serial in hex, with or without colons and leading zeros, and returns its canonical
// form (lower-case hex without leading zeros).
func NormalizeSerial(s string) (string, error) {
	clean := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(s), "0x"), ":", ""))
	v, ok := new(big.Int).SetString(clean, 16)
	if !ok || v.Sign() <= 0 || len(clean) > 40 {
		return "", &ra.Error{Kind: ra.KindBadRequest, Err: fmt.Errorf("serial %q is not a positive hexadecimal number of at most 20 bytes", s)}
	}
	return v.Text(16), nil
}

// GetCertificate looks a certificate up by serial.
func (n *Node) GetCertificate(ctx context.Context, serial string) (*store.Certificate, error) {
	s, err := NormalizeSerial(serial)
	if err != nil {
		return nil, err
	}
	c, err := n.Store.GetCertificate(ctx, s)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &ra.Error{Kind: ra.KindNotFound, Err: fmt.Errorf("no certificate with serial %s", s)}
	}
	return c, err
}

// DestroyKey destroys the key at uri: the glossary row becomes destroyed, a CA it signed for is retired, the
// audit event is appended, and the keystore erases the key, all inside one transaction, so a failure of any step
// leaves the key and its records as they were. Keys held elsewhere (device keys) are recorded as destroyed on the
// actor's attestation.
func (n *Node) DestroyKey(ctx context.Context, actor, uri, reason string) error {
	k, err := n.Store.GetKey(ctx, uri)
	if errors.Is(err, store.ErrNotFound) {
		return &ra.Error{Kind: ra.KindNotFound, Err: fmt.Errorf("no key %s in the glossary (see 'keyward key list')", uri)}
	} else if err != nil {
		return err
	}
	if k.State == store.KeyDestroyed {
		return &ra.Error{Kind: ra.KindConflict, Err: fmt.Errorf("key %s was destroyed already at %s", uri, k.DestroyedAt.Format("2006-01-02T15:04:05Z07:00"))}
	}
	now := n.Now().UTC()
	held := k.Location != string(keystore.LocationDevice)
	return n.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.SetKeyState(ctx, uri, store.KeyDestroyed, now); err != nil {
			return err
		}
		details := map[string]string{"purpose": k.Purpose, "location": k.Location, "owner": k.Owner, "reason": reason}
		if !held {
			details["attested_by"] = actor
		}
		if ca, err := n.Store.GetCA(ctx, k.Owner); err == nil && ca.KeyURI == uri && ca.Status == store.CAStatusActive {
			if err := tx.SetCAStatus(ctx, ca.ID, store.CAStatusRetired); err != nil {
				return err
			}
			details["retired_ca"] = ca.ID
		}
		if err := tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: actor, Action: "key.destroy", Subject: uri, Outcome: audit.OutcomeSuccess, Details: details}); err != nil {
			return err
		}
		if held {
			// Last, so that a keystore failure rolls the records back with it.
			if err := n.Keys.Destroy(ctx, uri); err != nil {
				return fmt.Errorf("destroy %s in its keystore: %w", uri, err)
			}
		}
		return nil
	})
}

// OpenCeremony opens, creating it if needed, an offline ceremony workspace: a software keystore sealed under the
// ceremony passphrase (which must be given, never generated), PKCS#11 backends named by --keystore, and a SQLite
// audit log. Its hierarchy is the embedded default's organisation with no product lines.
func OpenCeremony(ctx context.Context, opts Options) (*Node, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	def, err := hierarchy.ParseConfig(hierarchy.DefaultConfig())
	if err != nil {
		return nil, err
	}
	cfg := &hierarchy.Config{Organization: def.Organization, Environments: map[string]*hierarchy.Environment{}}
	n := &Node{Dir: opts.Dir, Config: cfg, Logger: opts.Logger, Now: opts.Now}
	if n.Now == nil {
		n.Now = nowUTC
	}
	pass, err := readPassphrase(opts)
	if err != nil {
		return nil, err
	}
	if n.Soft, err = openSoft(filepath.Join(opts.Dir, KeysDir), pass); err != nil {
		return nil, err
	}
	n.Keys = multi.New(n.Soft)
	uris, err := ReadKeystores(opts.Dir)
	if err != nil {
		n.Close()
		return nil, err
	}
	for _, u := range uris {
		if _, err := n.Keystore(u); err != nil {
			n.Close()
			return nil, err
		}
	}
	if n.Store, err = sqlite.Open(ctx, filepath.Join(opts.Dir, CeremonyDB)); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}
