package cli

// keyward key kdk ... and keyward key derive: key-derivation keys and the symmetric device keys they derive
// (internal/ra kdk.go).

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/keywrap"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
)

func keyKDKCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "kdk",
		Short: "Key-derivation keys: symmetric keys that derive each device's link and storage keys",
		Long: `Key-derivation keys (KDKs) derive each device's symmetric keys with the KDF in counter mode of NIST SP
800-108r1 (HMAC-SHA-256; label = purpose, context = environment, product line, device serial, KDK version and
length). A KDK belongs to one environment, product line and purpose (` + purposeList() + `) and is versioned:
the newest version derives the keys of new devices, earlier ones re-derive the keys of devices that have them.`,
	}
	c.AddCommand(kdkNewCmd(g, false), kdkNewCmd(g, true), kdkRetireCmd(g), kdkListCmd(g))
	return c
}

func purposeList() string {
	var s []string
	for _, p := range keystore.SymmetricPurposes {
		s = append(s, string(p))
	}
	return strings.Join(s, ", ")
}

func kdkNewCmd(g *globals, rotate bool) *cobra.Command {
	var req ra.KDKRequest
	var ks string
	use, short := "create", "Make version 1 of a key-derivation key (audited)"
	if rotate {
		use, short = "rotate", "Make the next version of a key-derivation key; earlier versions keep re-deriving (audited)"
	}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `. With --keystore pkcs11:... the key is generated in the HSM as a generic secret, sensitive,
never extractable, able only to compute HMAC-SHA-256 (C_Sign, CKM_SHA256_HMAC); "soft" (dev only) seals it in
the software keystore.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if req.Keys, err = n.Keystore(ks); err != nil {
				return err
			}
			f := n.RA.CreateKDK
			if rotate {
				f = n.RA.RotateKDK
			}
			v, err := f(cmd.Context(), principal(), req)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(v)
			}
			fmt.Fprintf(g.env.Stdout, "%s/%s %s key-derivation key version %d (%s, %s): %s\n", v.Environment, v.ProductLine, v.Purpose, v.Version, v.Algorithm, v.Location, v.URI)
			return nil
		},
	}
	kdkFlags(c, &req.Environment, &req.ProductLine, &req.Purpose)
	c.Flags().StringVar(&ks, "keystore", "soft", `where the key is generated: a pkcs11: URI, or "soft" (dev)`)
	g.addJSON(c)
	return c
}

func kdkFlags(c *cobra.Command, env, product, purpose *string) {
	f := c.Flags()
	f.StringVar(env, "env", "dev", "environment")
	f.StringVar(product, "product", "", "product line")
	f.StringVar(purpose, "purpose", "", "purpose: "+purposeList())
	_ = c.MarkFlagRequired("product")
	_ = c.MarkFlagRequired("purpose")
}

func kdkRetireCmd(g *globals) *cobra.Command {
	var env, product, purpose string
	var version int
	c := &cobra.Command{
		Use:   "retire",
		Short: "Retire a key-derivation key version: no new device keys, re-derivation only (audited)",
		Long: `Retire a key-derivation key version: it derives no key for a device that has none (new devices need an active
newest version: rotate), and it still re-derives the keys of devices that got theirs from it, until it is
destroyed with 'keyward key destroy URI'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if version < 1 {
				return usageError{fmt.Errorf("--version is required (see 'keyward key kdk list')")}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			v, err := n.RA.RetireKDK(cmd.Context(), principal(), env, product, purpose, version)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(v)
			}
			fmt.Fprintf(g.env.Stdout, "retired %s/%s %s key-derivation key version %d: %s\n", v.Environment, v.ProductLine, v.Purpose, v.Version, v.URI)
			return nil
		},
	}
	kdkFlags(c, &env, &product, &purpose)
	c.Flags().IntVar(&version, "version", 0, "the version to retire")
	g.addJSON(c)
	return c
}

func kdkListCmd(g *globals) *cobra.Command {
	var env, product, purpose string
	c := &cobra.Command{
		Use:   "list",
		Short: "List key-derivation key versions and their states",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			list, err := n.RA.ListKDKs(cmd.Context(), env, product, purpose)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(list)
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ENV\tPRODUCT\tPURPOSE\tVERSION\tSTATE\tLOCATION\tCREATED\tURI")
			for _, k := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", k.Environment, k.ProductLine, k.Purpose, k.Version, k.State, k.Location, k.CreatedAt.Format(time.RFC3339), k.URI)
			}
			return w.Flush()
		},
	}
	f := c.Flags()
	f.StringVar(&env, "env", "", "only this environment")
	f.StringVar(&product, "product", "", "only this product line")
	f.StringVar(&purpose, "purpose", "", "only this purpose")
	g.addJSON(c)
	return c
}

func keyDeriveCmd(g *globals) *cobra.Command {
	var env, product, purpose, serial, wrapWith, ks string
	c := &cobra.Command{
		Use:   "derive",
		Short: "Derive a registered device's symmetric key, wrapped under a transport key (audited)",
		Long: `Derive a device's symmetric key of --purpose, for a repair depot or a re-provisioning line, and print it
wrapped under the transport key --wrap-with; the clear key is never written. The device must be registered and
not decommissioned. A device that has a key of this purpose gets it again, from the KDK version it came from;
one that has none gets one from the newest version, recorded in the key glossary.

--wrap-with takes a transport key in a PKCS#11 token (a pkcs11:...;type=secret-key URI of purpose kek, see
'keyward factory transport-key'; the token wraps with C_WrapKey, RFC 5649 where it offers it), or in dev a file
holding an AES key in hex (file:PATH; wrapped with AES key wrap with padding, RFC 5649).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if wrapWith == "" {
				return usageError{fmt.Errorf("--wrap-with is required: a derived key leaves Keyward only wrapped")}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			wrap, err := deriveWrapper(cmd.Context(), n, env, wrapWith, ks)
			if err != nil {
				return err
			}
			d, err := n.RA.DeriveDeviceKey(cmd.Context(), principal(), ra.DeriveRequest{
				Device: ra.DeviceRef{Environment: env, ProductLine: product, Serial: serial}, Purpose: purpose, Wrap: wrap})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(d)
			}
			fmt.Fprintf(g.env.Stdout, "%s key of device %s (%s/%s), KDK version %d, wrapped with %s:\n%s\n",
				d.Purpose, d.Device, d.Environment, d.ProductLine, d.KDKVersion, d.KeyWrap, hex.EncodeToString(d.Wrapped))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&env, "env", "dev", "environment")
	f.StringVar(&product, "product", "", "product line")
	f.StringVar(&serial, "device", "", "device serial (its identity's common name)")
	f.StringVar(&purpose, "purpose", "", "purpose: "+purposeList())
	f.StringVar(&wrapWith, "wrap-with", "", "transport key: a pkcs11: secret-key URI, or file:PATH (hex AES key; dev)")
	f.StringVar(&ks, "keystore", "", "the PKCS#11 token of --wrap-with, if this data directory does not name it already")
	for _, name := range []string{"product", "device", "purpose", "wrap-with"} {
		_ = c.MarkFlagRequired(name)
	}
	g.addJSON(c)
	return c
}

// secretWrapper is a token that wraps derived keys (internal/keystore/pkcs11 WrapSecret).
type secretWrapper interface {
	WrapSecret(ctx context.Context, secret []byte, transportURI string) ([]byte, string, error)
}

// deriveWrapper returns the wrapping of --wrap-with.
func deriveWrapper(ctx context.Context, n *node.Node, env, wrapWith, ks string) (func([]byte) ([]byte, string, error), error) {
	if path, ok := strings.CutPrefix(wrapWith, "file:"); ok {
		if env != "dev" {
			return nil, usageError{fmt.Errorf("--wrap-with file: holds the transport key in a file, which only dev allows; name a transport key in the HSM (pkcs11:...)")}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--wrap-with: %w", err)
		}
		kek, err := hex.DecodeString(strings.TrimSpace(string(data)))
		clear(data)
		if err != nil || (len(kek) != 16 && len(kek) != 24 && len(kek) != 32) {
			return nil, usageError{fmt.Errorf("--wrap-with %s: want an AES key (16, 24 or 32 bytes) in hex", path)}
		}
		return func(key []byte) ([]byte, string, error) {
			w, err := keywrap.Wrap(kek, key)
			clear(kek)
			return w, "AES key wrap with padding (RFC 5649) under " + wrapWith, err
		}, nil
	}
	if !strings.HasPrefix(wrapWith, "pkcs11:") {
		return nil, usageError{fmt.Errorf("--wrap-with %q: want a pkcs11: transport key URI or file:PATH", wrapWith)}
	}
	var b keystore.Keystore
	var err error
	if ks != "" {
		b, err = n.Keystore(ks)
	} else {
		b, err = n.Keys.Backend(wrapWith)
	}
	if err != nil {
		return nil, fmt.Errorf("--wrap-with: %w (name its token with --keystore pkcs11:...?module-path=...)", err)
	}
	w, ok := b.(secretWrapper)
	if !ok {
		return nil, usageError{fmt.Errorf("--wrap-with: the %s keystore cannot wrap keys", b.Location())}
	}
	return func(key []byte) ([]byte, string, error) { return w.WrapSecret(ctx, key, wrapWith) }, nil
}
