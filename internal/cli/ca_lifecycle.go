package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/revocation"
)

// A CA's life after its creation: revocation, retirement, its state, and an offline root's CRL ceremony
// (internal/ra/califecycle.go).

func caRevokeCmd(g *globals) *cobra.Command {
	var reason, baseURL string
	c := &cobra.Command{
		Use:   "revoke CA-ID --reason R",
		Short: "Revoke an issuing, station, site or OCSP-responder CA: it stops issuing at once, on every node",
		Long: `Revoke a CA below a root (reasons of RFC 5280 5.3.1 that apply to a CA: ` + strings.Join(ra.CARevocationReasons, ", ") + `).
From the commit on it issues nothing, on every running node; OCSP answers revoked for every certificate it
issued; revocation filters list it as a revoked issuer, so offline verifiers refuse its whole subtree; and its
root's CRL lists it: an online root's CRL is re-signed at once, an offline root's in its next CRL ceremony
('keyward ca crl-request', 'keyward ca ceremony crl', 'keyward ca import-crl'). A root is not revoked: it is
replaced by a root rollover.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usageError{fmt.Errorf("--reason is required (%s)", strings.Join(ra.CARevocationReasons, ", "))}
			}
			n, svc, err := g.revocationService(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			row, err := n.RA.RevokeCA(cmd.Context(), principal(), args[0], reason)
			if err != nil {
				return err
			}
			crlNote := "its root is offline: its CRL lists the CA from the next CRL ceremony ('keyward ca crl-request')"
			if root, err := n.Store.GetCA(cmd.Context(), row.ParentID); err == nil && root.KeyURI != "" {
				crl, err := svc.PublishCRLs(cmd.Context(), root.ID, revocation.CRLConfig{BaseURL: baseURL, SpoolDir: n.Dir})
				if err != nil {
					return fmt.Errorf("CA %s is revoked, but re-signing the CRL of %s failed (a running server publishes it): %w", row.ID, root.ID, err)
				}
				crlNote = fmt.Sprintf("CRL %d of %s re-signed", crl.Number, root.ID)
			}
			if g.json {
				return g.printJSON(api.NewCA(row, false))
			}
			fmt.Fprintf(g.env.Stdout, "revoked CA %s (%s); %s\n", row.ID, reason, crlNote)
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "revocation reason: "+strings.Join(ra.CARevocationReasons, ", "))
	c.Flags().StringVar(&baseURL, "public-url", "http://127.0.0.1:8080", "public listener URL as certificates name it (for the root CRL's freshestCRL)")
	g.addJSON(c)
	return c
}

func caRetireCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "retire CA-ID",
		Short: "Retire a CA that no longer answers for any valid certificate: it signs nothing any more",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			row, err := n.RA.RetireCA(cmd.Context(), principal(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(api.NewCA(row, false))
			}
			fmt.Fprintf(g.env.Stdout, "retired CA %s; its key may now be destroyed ('keyward key destroy %s')\n", row.ID, row.KeyURI)
			return nil
		},
	}
	g.addJSON(c)
	return c
}

// caStatusJSON is one CA in 'keyward ca status --json'.
type caStatusJSON struct {
	api.CA
	ValidIssued int        `json:"valid_issued"`
	LastExpiry  *time.Time `json:"last_expiry,omitempty"`
	Offline     bool       `json:"offline,omitempty"`
	CRLNumber   int64      `json:"crl_number,omitempty"`
	CRLNext     *time.Time `json:"crl_next_update,omitempty"`
	CRLDueBy    *time.Time `json:"crl_ceremony_due_by,omitempty"`
	Responder   string     `json:"ocsp_responder,omitempty"`
	ResponderTo *time.Time `json:"ocsp_responder_not_after,omitempty"`
}

// caRequestJSON is a pending CA request in 'keyward ca status --json'.
type caRequestJSON struct {
	CA          string    `json:"ca"`
	Kind        string    `json:"kind"`
	Environment string    `json:"environment"`
	ProductLine string    `json:"product_line,omitempty"`
	Site        string    `json:"site,omitempty"`
	Generation  int       `json:"generation"`
	Replaces    string    `json:"replaces,omitempty"`
	Key         string    `json:"key_uri"`
	Since       time.Time `json:"since"`
}

func caStatusCmd(g *globals) *cobra.Command {
	var env string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show every CA's state, what it still answers for, and when an offline root's next CRL ceremony is due",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			states, pending, err := n.RA.CAStatus(cmd.Context(), env)
			if err != nil {
				return err
			}
			out := make([]caStatusJSON, 0, len(states))
			for _, st := range states {
				v := caStatusJSON{CA: api.NewCA(st.CA, false), ValidIssued: st.ValidIssued, Offline: st.Offline, CRLDueBy: st.CRLDueBy}
				if !st.LastExpiry.IsZero() {
					v.LastExpiry = &st.LastExpiry
				}
				if st.CRL != nil {
					v.CRLNumber, v.CRLNext = st.CRL.Number, &st.CRL.NextUpdate
				}
				if st.Responder != nil {
					v.Responder, v.ResponderTo = st.Responder.ID, &st.Responder.NotAfter
				}
				out = append(out, v)
			}
			reqs := make([]caRequestJSON, 0, len(pending))
			for _, q := range pending {
				reqs = append(reqs, caRequestJSON{q.CAID, q.Kind, q.Environment, q.ProductLine, q.Site, q.Generation, q.Replaces, q.KeyURI, q.CreatedAt})
			}
			if g.json {
				return g.printJSON(map[string]any{"cas": out, "pending_requests": reqs})
			}
			w := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tKIND\tGEN\tSTATUS\tNOT AFTER\tANSWERS FOR\tNOTES")
			for _, v := range out {
				notes := ""
				switch {
				case v.RevokedAt != nil:
					notes = fmt.Sprintf("revoked %s (%s)", v.RevokedAt.Format(time.DateOnly), v.RevocationReason)
				case v.Offline && v.CRLDueBy != nil:
					notes = fmt.Sprintf("offline; CRL %d until %s, next CRL ceremony due by %s", v.CRLNumber, v.CRLNext.Format(time.DateOnly), v.CRLDueBy.Format(time.DateOnly))
				case v.Offline:
					notes = "offline; no CRL installed: hold a CRL ceremony ('keyward ca crl-request')"
				}
				if v.Responder != "" {
					notes += fmt.Sprintf("; OCSP responder %s until %s", v.Responder, v.ResponderTo.Format(time.DateOnly))
				}
				answers := "-"
				if v.ValidIssued > 0 {
					answers = fmt.Sprintf("%d until %s", v.ValidIssued, v.LastExpiry.Format(time.DateOnly))
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", v.ID, v.Kind, v.Generation, v.Status, v.NotAfter.Format(time.DateOnly), answers, dash(notes))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			for _, q := range reqs {
				fmt.Fprintf(g.env.Stdout, "pending: %s CA %s (generation %d) since %s, key %s\n", q.Kind, q.CA, q.Generation, q.Since.Format(time.RFC3339), q.Key)
			}
			return nil
		},
	}
	c.Flags().StringVar(&env, "env", "", "only this environment")
	g.addJSON(c)
	return c
}

func caCRLRequestCmd(g *globals) *cobra.Command {
	var env, root, out string
	c := &cobra.Command{
		Use:   "crl-request",
		Short: "Export what an offline root's next CRL must hold, for its CRL ceremony",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{fmt.Errorf("--out is required")}
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			q, err := n.RA.RootCRLRequest(cmd.Context(), env, root)
			if err != nil {
				return err
			}
			data, err := json.MarshalIndent(q, "", "  ")
			if err != nil {
				return err
			}
			if err := writeFileAtomic(out, append(data, '\n'), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "CRL request for %s written to %s: %d revoked CAs, number at least %d; sign it with 'keyward ca ceremony crl'\n", q.Root, out, len(q.Revoked), q.MinNumber)
			return nil
		},
	}
	c.Flags().StringVar(&env, "env", "production", "environment")
	c.Flags().StringVar(&root, "root", "", "root CA id, if not the environment's current root (an earlier generation)")
	c.Flags().StringVar(&out, "out", "", "request output file (JSON)")
	return c
}

func caImportCRLCmd(g *globals) *cobra.Command {
	var env string
	c := &cobra.Command{
		Use:   "import-crl CRL-FILE",
		Short: "Install an offline root's CRL signed in a ceremony; the public listener serves it at the root's CRL URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			der, err := readPEMOrDER(args[0], "X509 CRL")
			if err != nil {
				return err
			}
			n, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			row, err := n.RA.ImportRootCRL(cmd.Context(), principal(), env, der)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"ca": row.IssuerID, "number": row.Number, "entries": row.Entries, "this_update": row.ThisUpdate, "next_update": row.NextUpdate})
			}
			fmt.Fprintf(g.env.Stdout, "installed CRL %d of %s: %d entries, next update %s\n", row.Number, row.IssuerID, row.Entries, row.NextUpdate.Format(time.RFC3339))
			return nil
		},
	}
	c.Flags().StringVar(&env, "env", "production", "environment")
	g.addJSON(c)
	return c
}

func ceremonyCRLCmd(g *globals) *cobra.Command {
	var dir, env, reqFile, nextUpdate, out string
	var witnesses []string
	c := &cobra.Command{
		Use:   "crl",
		Short: "Sign an offline root's CRL from a request ('keyward ca crl-request') in a ceremony",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || reqFile == "" || out == "" {
				return usageError{errors.New("--dir, --request and --out are required")}
			}
			validity, err := hierarchy.ParseDuration(nextUpdate)
			if err != nil {
				return usageError{fmt.Errorf("--next-update: %w", err)}
			}
			data, err := readFileLimited(reqFile)
			if err != nil {
				return err
			}
			q, err := ra.ParseCRLRequest(data)
			if err != nil {
				return err
			}
			n, err := ceremonyNode(cmd, g, dir)
			if err != nil {
				return err
			}
			defer n.Close()
			fmt.Fprintf(g.env.Stdout, "about to sign the CRL of %s (number at least %d, valid %s) listing %d revoked CAs:\n", q.Root, q.MinNumber, nextUpdate, len(q.Revoked))
			for _, e := range q.Revoked {
				fmt.Fprintf(g.env.Stdout, "  %s serial %s revoked %s (%s)\n", dash(e.CA), e.Serial, e.RevokedAt.Format(time.RFC3339), e.Reason)
			}
			t := &ra.Transcript{Command: "ca ceremony crl", Inputs: map[string][]byte{"request": data}}
			if err := withWitnesses(t, witnesses); err != nil {
				return err
			}
			der, head, err := n.RA.CeremonyCRL(cmd.Context(), principal(), env, q, validity, t)
			if err != nil {
				return err
			}
			if err := writeCeremonyOutput(out, "X509 CRL", der, head, env); err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "signed, written to %s; transcript event %d. Install it with 'keyward ca import-crl'\n", out, head.Seq)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "ceremony workspace directory")
	c.Flags().StringVar(&env, "env", "production", "environment")
	c.Flags().StringVar(&reqFile, "request", "", "CRL request from 'keyward ca crl-request' (JSON)")
	c.Flags().StringVar(&nextUpdate, "next-update", "180d", "how long the CRL is valid: the next CRL ceremony must come before")
	c.Flags().StringVar(&out, "out", "", "CRL output file (PEM)")
	addWitnessFlag(c, &witnesses)
	return c
}

func caRolloverCmd(g *globals) *cobra.Command {
	var req ra.RolloverRequest
	var ks string
	c := &cobra.Command{
		Use:   "rollover",
		Short: "Make the next generation of an issuing (or station) CA and switch issuance to it, on every node",
		Long: `Generate a new key, have the environment's root certify the next generation of the CA, and switch issuance to it
in one transaction: from then on every node issues, and renews devices, with the new generation. The previous
generation is superseded: it keeps signing CRLs and OCSP answers for what it issued until the last of those
certificates expires; then 'keyward ca retire' and 'keyward key destroy' are allowed. cacerts, 'ca export' and
the public listener serve both generations meanwhile. Under an offline root the next generation comes from a
ceremony instead: 'keyward ca csr --kind issuing --product P', 'keyward ca ceremony sign', 'keyward ca import'.`,
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
			row, err := n.RA.Rollover(cmd.Context(), principal(), req)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(api.NewCA(row, false))
			}
			fmt.Fprintf(g.env.Stdout, "rolled over to %s (generation %d, key %s); the previous generation answers for what it issued until it expires\n", row.ID, row.Generation, row.KeyURI)
			return nil
		},
	}
	c.Flags().StringVar(&req.Environment, "env", "dev", "environment")
	c.Flags().StringVar(&req.ProductLine, "product", "", "product line (issuing CAs)")
	c.Flags().StringVar(&req.Kind, "kind", "issuing", "kind of CA: issuing or station")
	c.Flags().StringVar(&ks, "keystore", "soft", `where the new key is generated: "soft" or a PKCS#11 URI`)
	g.addJSON(c)
	return c
}
