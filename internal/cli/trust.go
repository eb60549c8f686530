package cli

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/trust"
)

// 'keyward trust': a device's trust anchors (pkg/trust), as a device or its gateway holds them. These commands
// need no data directory: they run the public device-side code on files.

func trustCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "trust",
		Short: "Device trust anchors: apply a signed root-rollover update, show an anchors file",
		Long: `A device holds its environment's root CA certificates as trust anchors in an anchors file (anchors.pem:
PEM certificates, which 'openssl verify -CAfile' reads, and a KEYWARD TRUST STATE block with the environment
and version). A root rollover ceremony signs trust-anchor updates; 'trust apply' checks one as a device does
and writes the anchors it installs. See docs/trust-anchors.md.`,
	}
	c.AddCommand(trustApplyCmd(g), trustShowCmd(g))
	return c
}

// anchorJSON is one trust anchor in --json output.
type anchorJSON struct {
	Subject string `json:"subject"`
	// SHA256 is the certificate's fingerprint: SHA-256 of its DER, as 'openssl x509 -fingerprint -sha256'.
	SHA256 string `json:"sha256"`
	// SPKISHA256 is the SHA-256 of the key's SubjectPublicKeyInfo: the key id its update signatures carry.
	SPKISHA256 string    `json:"spki_sha256"`
	Algorithm  string    `json:"algorithm"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
}

func newAnchorJSON(c *x509.Certificate) anchorJSON {
	fp := sha256.Sum256(c.Raw)
	kid, err := trust.KeyID(c.PublicKey)
	if err != nil {
		h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		kid = h[:]
	}
	return anchorJSON{c.Subject.String(), hex.EncodeToString(fp[:]), hex.EncodeToString(kid), keyAlgorithm(c.PublicKey),
		c.NotBefore.UTC(), c.NotAfter.UTC()}
}

// keyAlgorithm names pub as the key glossary does, and the kinds it does not hold in the same style.
func keyAlgorithm(pub crypto.PublicKey) string {
	if a, err := keystore.AlgorithmOf(pub); err == nil {
		return string(a)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ecdsa-" + strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

// trustShowJSON is 'trust show --json'.
type trustShowJSON struct {
	// Environment is empty for a factory's initial set read without --env.
	Environment string       `json:"environment"`
	Version     uint64       `json:"version"`
	Anchors     []anchorJSON `json:"anchors"`
}

// trustApplyJSON is 'trust apply --json'.
type trustApplyJSON struct {
	Environment string       `json:"environment"`
	FromVersion uint64       `json:"from_version"`
	ToVersion   uint64       `json:"to_version"`
	Added       []anchorJSON `json:"added"`
	Removed     []anchorJSON `json:"removed"`
	Kept        []anchorJSON `json:"kept"`
	Out         string       `json:"out"`
}

// trustRefusal gives a refusal of pkg/trust its kind, for the one exit-code mapping: an update whose signatures
// do not authorise it (forged, tampered with, signed by only one of the two roots) is forbidden, exit 4, so
// that a fleet tells an attack or a botched ceremony from the operational mistakes (a stale, misdirected,
// expired or broken file) that are bad requests, exit 3. field is the request field (flag) at fault; path is
// the file.
func trustRefusal(field, path string, err error) error {
	kind := ra.KindBadRequest
	if errors.Is(err, trust.ErrBadSignature) || errors.Is(err, trust.ErrNotSignedByHeld) || errors.Is(err, trust.ErrNotSignedByNew) {
		kind = ra.KindForbidden
	}
	return ra.FieldErrorf(kind, field, "%s: %w", path, err)
}

// readAnchors reads the anchors file at path, of environment env if the file does not name one.
func readAnchors(path, env string) (*trust.Anchors, error) {
	data, err := readFileLimited(path)
	if err != nil {
		return nil, err
	}
	// The file alone first, so that what is wrong with it is put on --anchors and what --env adds on --env.
	a, err := trust.ParseAnchorsPEM(data, "")
	if err != nil {
		return nil, trustRefusal("anchors", path, err)
	}
	if env == "" {
		return a, nil
	}
	if a, err = trust.ParseAnchorsPEM(data, env); err != nil {
		return nil, trustRefusal("env", path, err)
	}
	return a, nil
}

func trustApplyCmd(g *globals) *cobra.Command {
	var anchorsFile, updateFile, out, env, now string
	c := &cobra.Command{
		Use:   "apply",
		Short: "Check a signed trust-anchor update as a device does and write the anchors it installs",
		Long: `Check the signed trust-anchor update --update against the anchors file --anchors as a device does
(pkg/trust): the update is for the anchors' environment, newer than their version, valid at --now (default:
now, 5 minutes of clock skew allowed), signed by an anchor held now and by every anchor it introduces, every
signature valid, every listed anchor a self-signed CA certificate. On success, write the anchors it installs to
--out (atomically; --out may be --anchors itself) and print what changed. On refusal nothing is written.

--env names the environment of an anchors file without a KEYWARD TRUST STATE block (a factory's initial set,
version 0); when the file has one, --env may be given and must agree.

Exit 3: the update is malformed, for another environment, not newer (a replay or a rollback), outside its
validity, or lists an anchor that is not a self-signed CA. Exit 4: a signature is forged or unknown, or a root
that must sign did not (the held root, or a new root it introduces).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if anchorsFile == "" || updateFile == "" || out == "" {
				return usageError{errors.New("--anchors, --update and --out are required")}
			}
			at := time.Now()
			if now != "" {
				t, err := time.Parse(time.RFC3339, now)
				if err != nil {
					return usageError{fmt.Errorf("--now %q: use RFC 3339, e.g. 2026-03-14T15:09:26Z", now)}
				}
				at = t
			}
			held, err := readAnchors(anchorsFile, env)
			if err != nil {
				return err
			}
			if held.Environment == "" {
				return usageError{fmt.Errorf("--env is required: %s has no %s block (a factory's initial set), so it does not name its environment", anchorsFile, trust.PEMState)}
			}
			update, err := readFileLimited(updateFile)
			if err != nil {
				return err
			}
			next, err := held.Apply(update, at)
			if err != nil {
				return trustRefusal("update", updateFile, err)
			}
			data, err := next.MarshalPEM()
			if err != nil {
				return err
			}
			if err := writeFileAtomic(out, data, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", out, err)
			}
			res := trustApplyJSON{Environment: next.Environment, FromVersion: held.Version, ToVersion: next.Version, Out: out,
				Added: []anchorJSON{}, Removed: []anchorJSON{}, Kept: []anchorJSON{}}
			before, after := held.Certificates(), next.Certificates()
			for _, c := range after {
				if containsCert(before, c) {
					res.Kept = append(res.Kept, newAnchorJSON(c))
				} else {
					res.Added = append(res.Added, newAnchorJSON(c))
				}
			}
			for _, c := range before {
				if !containsCert(after, c) {
					res.Removed = append(res.Removed, newAnchorJSON(c))
				}
			}
			if g.json {
				return g.printJSON(res)
			}
			w := g.env.Stdout
			fmt.Fprintf(w, "applied trust-anchor update to %s: version %d -> %d\n", res.Environment, res.FromVersion, res.ToVersion)
			for _, l := range []struct {
				what    string
				anchors []anchorJSON
			}{{"added", res.Added}, {"removed", res.Removed}, {"kept", res.Kept}} {
				for _, a := range l.anchors {
					fmt.Fprintf(w, "  %-8s %s  sha256:%s\n", l.what, a.Subject, a.SHA256)
				}
			}
			fmt.Fprintf(w, "wrote %s: %d anchors\n", out, len(after))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&anchorsFile, "anchors", "", "anchors file the device holds (anchors.pem)")
	f.StringVar(&updateFile, "update", "", "signed trust-anchor update (COSE)")
	f.StringVar(&out, "out", "", "where to write the new anchors file")
	f.StringVar(&env, "env", "", "environment of an anchors file without a state block (a factory's initial set)")
	f.StringVar(&now, "now", "", "device time, RFC 3339 (default: now)")
	g.addJSON(c)
	return c
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

func trustShowCmd(g *globals) *cobra.Command {
	var anchorsFile, env string
	c := &cobra.Command{
		Use:   "show",
		Short: "Show the environment, version and anchors of an anchors file",
		Long: `Show the anchors file --anchors: its environment and version (from its KEYWARD TRUST STATE block; a file
without one is a factory's initial set, version 0, of --env if given) and each anchor's subject, SHA-256
fingerprint, key and validity.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if anchorsFile == "" {
				return usageError{errors.New("--anchors is required")}
			}
			a, err := readAnchors(anchorsFile, env)
			if err != nil {
				return err
			}
			res := trustShowJSON{Environment: a.Environment, Version: a.Version}
			for _, c := range a.Certificates() {
				res.Anchors = append(res.Anchors, newAnchorJSON(c))
			}
			if g.json {
				return g.printJSON(res)
			}
			w := g.env.Stdout
			name := res.Environment
			if name == "" {
				name = "(not named: a factory's initial set; give --env)"
			}
			fmt.Fprintf(w, "environment %s, version %d, %d anchors\n", name, res.Version, len(res.Anchors))
			for _, an := range res.Anchors {
				fmt.Fprintf(w, "  %s\n    sha256:%s  %s  valid %s to %s\n", an.Subject, an.SHA256, an.Algorithm,
					an.NotBefore.Format(time.RFC3339), an.NotAfter.Format(time.RFC3339))
			}
			return nil
		},
	}
	c.Flags().StringVar(&anchorsFile, "anchors", "", "anchors file (anchors.pem)")
	c.Flags().StringVar(&env, "env", "", "environment of an anchors file without a state block")
	g.addJSON(c)
	return c
}
