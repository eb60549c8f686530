package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/bench"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/client"
	"github.com/keyward/keyward/pkg/firmware/verify"
)

func firmwareCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "firmware",
		Short: "Firmware signing: releases with m-of-n approval, signed manifests, trust for devices, device-side verification",
		Long: `Firmware images are released per environment and product line: 'release create' records a draft, release
signers approve it ('release approve ID --as NAME') until the product line's threshold (keyward.yaml
product_lines.<name>.firmware) is met, and 'release sign' then produces the signed manifest (COSE, see
docs/firmware-manifest.md). Devices pin the environment's firmware trust ('firmware trust') and check every
update with the public verifier, which 'firmware verify' runs.`,
	}
	c.AddCommand(firmwareInitCmd(g), firmwareTrustCmd(g), firmwareReleaseCmd(g), firmwareKeyCmd(g), firmwareVerifyCmd(g))
	return c
}

func firmwareInitCmd(g *globals) *cobra.Command {
	var env, ks string
	c := &cobra.Command{
		Use:   "init",
		Short: "Create an environment's firmware root and signing keys (trust version 1)",
		Long: `Create the firmware root of --env (ECDSA P-256, self-signed, certifying only firmware-signing keys), an
ML-DSA-65 root beside it, an ECDSA P-256 and an ML-DSA-65 firmware-signing key certified by them. ECDSA keys go
to --keystore (a PKCS#11 URI keeps them in an HSM); ML-DSA keys stay in the software keystore, the only backend
that has ML-DSA. dev and staging create this on first use; production only with this command.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			k, err := n.Keystore(ks)
			if err != nil {
				return err
			}
			fr, err := n.RA.InitFirmware(cmd.Context(), principal(), env, k)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(api.NewFirmwareTrust(fr))
			}
			fmt.Fprintf(g.env.Stdout, "created firmware trust %s version %d: root key %s, ML-DSA-65 root key %s\n", env, fr.Version, fr.KeyURI, fr.PQKeyURI)
			return nil
		},
	}
	c.Flags().StringVar(&env, "env", "dev", "environment")
	c.Flags().StringVar(&ks, "keystore", "soft", `where the ECDSA root and signing keys are generated: "soft" or a PKCS#11 URI`)
	g.addJSON(c)
	return c
}

func firmwareTrustCmd(g *globals) *cobra.Command {
	var env, out, updatesDir string
	c := &cobra.Command{
		Use:   "trust",
		Short: "Print the firmware trust (PEM) that devices of an environment pin",
		Long: `Print the current firmware trust of --env as PEM: the firmware root certificate (which openssl reads), the
ML-DSA-65 root public key and a KEYWARD FIRMWARE TRUST block (environment, trust version, revoked signing keys).
New devices pin it. With --updates-dir, also write every signed trust update (trust-update-vN.cbor) that moves
a device pinned to an older version forward; apply them in order ('firmware verify --trust-update').`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			if _, err := n.RA.EnsureFirmware(cmd.Context(), principal(), env); err != nil {
				return err
			}
			t, updates, err := n.RA.FirmwareTrust(cmd.Context(), env)
			if err != nil {
				return err
			}
			pemData, err := t.PEM()
			if err != nil {
				return err
			}
			if updatesDir != "" {
				if err := os.MkdirAll(updatesDir, 0o755); err != nil {
					return err
				}
				for i, u := range updates {
					if err := os.WriteFile(filepath.Join(updatesDir, fmt.Sprintf("trust-update-v%d.cbor", i+2)), u, 0o644); err != nil {
						return err
					}
				}
			}
			if out != "" {
				return os.WriteFile(out, pemData, 0o644)
			}
			_, err = g.env.Stdout.Write(pemData)
			return err
		},
	}
	c.Flags().StringVar(&env, "env", "dev", "environment")
	c.Flags().StringVar(&out, "out", "", "write the PEM to this file instead of stdout")
	c.Flags().StringVar(&updatesDir, "updates-dir", "", "also write the signed trust updates to this directory")
	return c
}

func firmwareReleaseCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "release", Short: "Create, approve, sign and list firmware releases"}

	var env, product, version, image, minBoot string
	create := &cobra.Command{
		Use:   "create",
		Short: "Record a draft release of an image; prints its id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if product == "" || version == "" || image == "" {
				return usageError{errors.New("--product, --version and --image are required")}
			}
			f, err := os.Open(image)
			if err != nil {
				return &exitError{code: ExitBadRequest, err: fmt.Errorf("--image: %w", err)}
			}
			defer f.Close()
			var r api.FirmwareRelease
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				v, err := c.CreateRelease(cmd.Context(), client.ReleaseRequest{Environment: env, ProductLine: product, Version: version, MinBootloader: minBoot}, f)
				if err != nil {
					return remoteErr(err)
				}
				if r, err = viewOf[api.FirmwareRelease](v); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				row, err := n.RA.CreateRelease(cmd.Context(), principal(), ra.FirmwareReleaseRequest{Environment: env, ProductLine: product, Version: version,
					MinBootloader: minBoot, Image: f})
				if err != nil {
					return err
				}
				r = api.NewFirmwareRelease(row, nil)
			}
			if g.json {
				return g.printJSON(r)
			}
			fmt.Fprintln(g.env.Stdout, r.ID)
			fmt.Fprintf(g.env.Stderr, "draft release %s: %s/%s %s, sequence %d, %d bytes; needs %d approvals ('keyward firmware release approve %s --as SIGNER')\n",
				r.ID, r.Environment, r.ProductLine, r.Version, r.Sequence, r.ImageSize, r.Threshold, r.ID)
			return nil
		},
	}
	create.Flags().StringVar(&env, "env", "dev", "environment")
	create.Flags().StringVar(&product, "product", "", "product line (device class)")
	create.Flags().StringVar(&version, "version", "", "semantic version of the image, e.g. 1.4.2")
	create.Flags().StringVar(&image, "image", "", "image file")
	create.Flags().StringVar(&minBoot, "min-bootloader", "", "lowest bootloader version (semver) that can boot the image")
	g.addJSON(create)

	var as, tokenFile string
	approve := &cobra.Command{
		Use:   "approve ID",
		Short: "Approve a release as one release signer, proven by that signer's own token",
		Long: `Record the approval of release ID by one release signer of its product line. The approval is proven by the
signer's own operator token (role release-signer, named as keyward.yaml lists the signer): --token-file names
the file holding it, and it is checked against the store like a bearer token on the API (unknown, revoked or
expired: refused). --as, if given, must be the token's name. The audit event names the token's operator and the
operating-system user who presented it. Each signer approves once; the release is approved when the product
line's threshold of distinct signers is reached, so one person holding one token cannot approve twice.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Remotely the server takes the approver from the token it authenticates: --token-file here is the
			// release signer's own, else the global one.
			if c, err := g.clientWithToken(cmd, tokenFile); err != nil {
				return err
			} else if c != nil {
				if as != "" {
					return usageError{errors.New("--as applies on the data directory only: over the API the approver is the operator whose token --token-file holds")}
				}
				v, err := c.ApproveRelease(cmd.Context(), args[0])
				if err != nil {
					return remoteErr(err)
				}
				r, err := viewOf[api.FirmwareRelease](v)
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(r)
				}
				fmt.Fprintf(g.env.Stdout, "release %s approved by %s: %d of %d approvals, status %s\n", r.ID, r.Approvers[len(r.Approvers)-1], len(r.Approvers), r.Threshold, r.Status)
				return nil
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			p := principal()
			if tokenFile != "" {
				if p, err = signerPrincipal(cmd.Context(), n.RA, tokenFile, "firmware release approve"); err != nil {
					return err
				}
			}
			// Without a token the RA refuses, audited: the attempt to approve in a signer's name is evidence.
			r, approvals, err := n.RA.ApproveRelease(cmd.Context(), p, args[0], as)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(api.NewFirmwareRelease(r, approvals))
			}
			fmt.Fprintf(g.env.Stdout, "release %s approved by %s: %d of %d approvals, status %s\n", r.ID, approvals[len(approvals)-1].Signer, len(approvals), r.Threshold, r.Status)
			return nil
		},
	}
	approve.Flags().StringVar(&tokenFile, "token-file", "", "file holding the approving release signer's own operator token (required)")
	approve.Flags().StringVar(&as, "as", "", "release signer name; must be the token's")
	g.addJSON(approve)

	var out string
	sign := &cobra.Command{
		Use:   "sign ID",
		Short: "Sign an approved release and write its manifest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{errors.New("--out FILE is required")}
			}
			var m []byte
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				if m, err = c.SignRelease(cmd.Context(), args[0]); err != nil {
					return remoteErr(err)
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				if m, err = n.RA.SignRelease(cmd.Context(), principal(), args[0]); err != nil {
					return err
				}
			}
			if err := os.WriteFile(out, m, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "signed manifest of %s written to %s (%d bytes)\n", args[0], out, len(m))
			return nil
		},
	}
	sign.Flags().StringVar(&out, "out", "", "manifest file to write")

	var lenv, lproduct string
	list := &cobra.Command{
		Use:   "list",
		Short: "List releases",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := []api.FirmwareRelease{}
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				rs, err := c.Releases(cmd.Context(), lenv, lproduct)
				if err != nil {
					return remoteErr(err)
				}
				if out, err = viewOf[[]api.FirmwareRelease](rs); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				read := n.RA.Reader()
				rs, err := read.ListFirmwareReleases(cmd.Context(), lenv, lproduct)
				if err != nil {
					return err
				}
				for _, r := range rs {
					as, err := read.FirmwareApprovals(cmd.Context(), r.ID)
					if err != nil {
						return err
					}
					out = append(out, api.NewFirmwareRelease(r, as))
				}
			}
			if g.json {
				return g.printJSON(out)
			}
			for _, r := range out {
				fmt.Fprintf(g.env.Stdout, "%-20s %-8s %-16s %-10s seq %-5d %-8s %d/%d approvals %v\n", r.ID, r.Environment, r.ProductLine, r.Version, r.Sequence, r.Status, len(r.Approvers), r.Threshold, r.Approvers)
			}
			return nil
		},
	}
	list.Flags().StringVar(&lenv, "env", "", "only this environment")
	list.Flags().StringVar(&lproduct, "product", "", "only this product line")
	g.addJSON(list)

	c.AddCommand(create, approve, sign, list)
	return c
}

func firmwareKeyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "key", Short: "Firmware signing keys: list, rotate, recover from compromise"}
	var env, ks string
	var newRoot, compromised bool
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the signing keys (and roots) and publish the next signed trust version",
		Long: `Generate new firmware-signing keys (and, with --new-root, new firmware roots) and publish trust version N+1,
signed by the roots of version N and of version N+1. With --compromised the replaced signing keys are revoked:
every later trust version lists them, and updated devices refuse manifests they signed whatever their sequence.
Without it they are retired and their manifests stay valid. Distribute the update with
'keyward firmware trust --env E --updates-dir DIR'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			k, err := n.Keystore(ks)
			if err != nil {
				return err
			}
			fr, err := n.RA.RotateFirmware(cmd.Context(), principal(), ra.FirmwareRotation{Environment: env, NewRoot: newRoot, Compromised: compromised, Keystore: k})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(api.NewFirmwareTrust(fr))
			}
			fmt.Fprintf(g.env.Stdout, "published firmware trust %s version %d (%d revoked signing keys)\n", env, fr.Version, len(fr.Revoked))
			return nil
		},
	}
	rotate.Flags().StringVar(&env, "env", "dev", "environment")
	rotate.Flags().StringVar(&ks, "keystore", "soft", `where new ECDSA keys are generated: "soft" or a PKCS#11 URI`)
	rotate.Flags().BoolVar(&newRoot, "new-root", false, "also replace the firmware roots")
	rotate.Flags().BoolVar(&compromised, "compromised", false, "revoke the replaced signing keys")
	g.addJSON(rotate)

	var lenv string
	list := &cobra.Command{
		Use:   "list",
		Short: "List firmware signing keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			keys, err := n.RA.Reader().FirmwareSigningKeys(cmd.Context(), lenv)
			if err != nil {
				return err
			}
			out := []api.FirmwareKey{}
			for _, k := range keys {
				out = append(out, api.NewFirmwareKey(k))
			}
			if g.json {
				return g.printJSON(out)
			}
			for _, k := range out {
				fmt.Fprintf(g.env.Stdout, "%s %-8s %-10s v%-3d %-8s %s\n", k.KID[:16], k.Environment, k.Algorithm, k.RootVersion, k.Status, k.URI)
			}
			return nil
		},
	}
	list.Flags().StringVar(&lenv, "env", "", "only this environment")
	g.addJSON(list)
	c.AddCommand(rotate, list)
	return c
}

func firmwareVerifyCmd(g *globals) *cobra.Command {
	var (
		manifestFile, imageFile, trustFile, deviceClass, bootloader, now string
		updates                                                          []string
		installed                                                        uint64
		requireHybrid                                                    bool
	)
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check a signed manifest and image as a device does (no data directory needed)",
		Long: `Run the public device-side verifier (package pkg/firmware/verify): the signature chain to the pinned firmware
trust (--trust, after applying any --trust-update files in order), the device class, anti-rollback (the
manifest sequence must exceed --installed-sequence), the validity window, the minimum bootloader, revoked
signing keys, and the image's size and SHA-256, streamed. Exit 0 when the device may install the image,
3 with the reason otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if manifestFile == "" || imageFile == "" || trustFile == "" || deviceClass == "" || !cmd.Flags().Changed("installed-sequence") {
				return usageError{errors.New("--manifest, --image, --trust, --device-class and --installed-sequence are required")}
			}
			bad := func(err error) error { return &exitError{code: ExitBadRequest, err: err} }
			env, err := os.ReadFile(manifestFile)
			if err != nil {
				return bad(fmt.Errorf("--manifest: %w", err))
			}
			trustPEM, err := os.ReadFile(trustFile)
			if err != nil {
				return bad(fmt.Errorf("--trust: %w", err))
			}
			trust, err := verify.ParseTrustPEM(trustPEM)
			if err != nil {
				return bad(fmt.Errorf("--trust %s: %w", trustFile, err))
			}
			for _, u := range updates {
				data, err := os.ReadFile(u)
				if err != nil {
					return bad(fmt.Errorf("--trust-update: %w", err))
				}
				if trust, err = trust.Apply(data); err != nil {
					return bad(fmt.Errorf("--trust-update %s: %w", u, err))
				}
			}
			o := verify.Options{DeviceClass: deviceClass, InstalledSequence: installed, BootloaderVersion: bootloader, RequireHybrid: requireHybrid}
			if now != "" {
				if o.Now, err = time.Parse(time.RFC3339, now); err != nil {
					return usageError{fmt.Errorf("--now: %w", err)}
				}
			}
			img, err := os.Open(imageFile)
			if err != nil {
				return bad(fmt.Errorf("--image: %w", err))
			}
			defer img.Close()
			m, err := verify.Verify(env, img, trust, o)
			if err != nil {
				return bad(err)
			}
			if g.json {
				return g.printJSON(map[string]any{"ok": true, "device_class": m.DeviceClass, "sequence": m.Sequence, "version": m.Version,
					"image_size": m.ImageSize, "hybrid": m.Hybrid(), "trust_version": trust.Version, "not_after": m.NotAfter})
			}
			fmt.Fprintf(g.env.Stdout, "OK: %s %s (sequence %d, %d bytes) may be installed; trust version %d\n", m.DeviceClass, m.Version, m.Sequence, m.ImageSize, trust.Version)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&manifestFile, "manifest", "", "signed manifest (COSE)")
	f.StringVar(&imageFile, "image", "", "image file")
	f.StringVar(&trustFile, "trust", "", "pinned firmware trust PEM ('keyward firmware trust')")
	f.StringArrayVar(&updates, "trust-update", nil, "signed trust update to apply first (repeat, in version order)")
	f.StringVar(&deviceClass, "device-class", "", "the device's product line")
	f.Uint64Var(&installed, "installed-sequence", 0, "sequence number of the installed firmware")
	f.StringVar(&bootloader, "bootloader", "", "the device's bootloader version (semver)")
	f.BoolVar(&requireHybrid, "require-hybrid", false, "refuse manifests without a valid ML-DSA-65 signature")
	f.StringVar(&now, "now", "", "device time, RFC 3339 (default: now)")
	g.addJSON(c)
	return c
}

// firmwareBenchCmd is 'keyward bench firmware'.
func firmwareBenchCmd(g *globals) *cobra.Command {
	var o bench.FirmwareOptions
	var sizesMiB []int
	c := &cobra.Command{
		Use:   "firmware",
		Short: "Firmware verification beside plain SHA-256, manifest verification, signing throughput",
		Long: `Verify signed manifests with images of --image-mib sizes (default 1 and 256 MiB) and print each time beside
plain SHA-256 over the same bytes measured in the same run (the target is within 10%), the manifest-only
verification time (classical and hybrid), and manifests signed per second through --keystore ("soft" or a
PKCS#11 URI such as a SoftHSM2 token) beside bare ECDSA signatures with the same key. --json prints one object.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, m := range sizesMiB {
				if m <= 0 {
					return usageError{fmt.Errorf("--image-mib %d: sizes are positive", m)}
				}
				o.ImageSizes = append(o.ImageSizes, m<<20)
			}
			res, err := bench.Firmware(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			w := g.env.Stdout
			for _, im := range res.Images {
				fmt.Fprintf(w, "verify %4d MiB: %8.1f MB/s (%.4fs); SHA-256 limit %8.1f MB/s (%.4fs); ratio %.3f (image check alone %.3f, from a file %.3f)\n",
					im.Bytes>>20, im.VerifyMBps, im.VerifySeconds, im.SHA256MBps, im.SHA256Seconds, im.Ratio, im.ImageRatio, im.FileRatio)
			}
			fmt.Fprintf(w, "manifest verification: %.0f µs classical (%d bytes), %.0f µs hybrid (%d bytes)\n", res.ManifestMicros, res.ManifestBytes, res.HybridManifestMicros, res.HybridManifestBytes)
			fmt.Fprintf(w, "signing through %s keystore: %.0f manifests/s; bare ECDSA limit %.0f/s; ratio %.2f; hybrid %.0f manifests/s\n",
				res.Keystore, res.SignPerSecond, res.RawSignPerSecond, res.SignRatio, res.HybridSignPerSecond)
			return nil
		},
	}
	c.Flags().IntSliceVar(&sizesMiB, "image-mib", nil, "image sizes in MiB (default 1,256)")
	c.Flags().StringVar(&o.Keystore, "keystore", "soft", `signing key backend: "soft" or a PKCS#11 URI`)
	c.Flags().IntVar(&o.Signatures, "signatures", 500, "manifests to sign for the throughput figure")
	g.addJSON(c)
	return c
}
