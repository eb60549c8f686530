package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/client"
)

func stationCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "station", Short: "Factory stations: add, list, suspend, resume, revoke"}
	c.AddCommand(stationAddCmd(g), stationListCmd(g),
		stationStateCmd(g, "suspend", store.StationSuspended, "Suspend a station: its next request is refused, until 'station resume'"),
		stationStateCmd(g, "resume", store.StationActive, "Resume a suspended station"),
		stationStateCmd(g, "revoke", store.StationRevoked, "Revoke a station for good: its next request is refused, and it never returns"))
	return c
}

// parseTime reads an RFC 3339 time, a date (2027-01-31, end of that day UTC excluded) or a duration from now
// (90d, 1y, 720h).
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	if d, err := hierarchy.ParseDuration(s); err == nil {
		return now.Add(d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339 (2027-01-31T00:00:00Z), a date (2027-01-31) or a duration from now (90d, 1y)", s)
}

func stationAddCmd(g *globals) *cobra.Command {
	var (
		o          ra.StationRequest
		validUntil string
		out        string
	)
	c := &cobra.Command{
		Use:   "add",
		Short: "Create a factory station: key, certificate under the environment's station CA, scope and quota",
		Long: `Create a factory station for --env, scoped to --site and the --product lines, with an optional --quota of
enrollments (0: no limit) and a validity window ending at --valid-until (default one year). The environment's
station CA is created under its root on first use. Writes to --out:

  station.pem   the station certificate and the station CA certificate (the TLS client chain)
  station.key   the station's private key, PKCS #8 PEM, mode 0600 (Keyward keeps only the public key)
  trust.pem     the anchor that validates the Keyward server's TLS certificate (DATA/tls/ca.pem)

The station authenticates to EST with mTLS (keyward device enroll --station station.pem --station-key station.key).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if out == "" {
				return usageError{errors.New("--out DIR is required")}
			}
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				return stationAddRemote(cmd, g, c, o, validUntil, out)
			}
			n, err := g.open(ctx)
			if err != nil {
				return err
			}
			defer n.Close()
			if validUntil != "" {
				if o.ValidUntil, err = parseTime(validUntil, n.Now()); err != nil {
					return usageError{fmt.Errorf("--valid-until: %w", err)}
				}
			}
			// The trust anchor first: a station that cannot validate the server is of no use.
			svc, err := n.RA.ServiceCA(ctx)
			if err != nil {
				return err
			}
			if err := stationDir(out); err != nil {
				return err
			}
			cred, err := n.RA.AddStation(ctx, principal(), o)
			if err != nil {
				return err
			}
			trust := pemBytes("CERTIFICATE", svc.CertDER)
			return writeStation(g, out, api.NewStation(cred.Station), cred.CertPEM, cred.KeyPEM(), trust)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Environment, "env", "dev", "environment the station enrolls for")
	f.StringVar(&o.Site, "site", "", "factory site (lower-case letters, digits, hyphens)")
	f.StringSliceVar(&o.ProductLines, "product", nil, "product line the station may enroll (repeat or comma-separate)")
	f.Int64Var(&o.Quota, "quota", 0, "enrollments allowed (0: no limit)")
	f.StringVar(&validUntil, "valid-until", "", "end of the station's validity: RFC 3339 time, date, or duration from now (default 1y)")
	f.StringVar(&o.Name, "name", "", "station id (default SITE-<random>)")
	f.StringVar(&out, "out", "", "directory to write station.pem, station.key and trust.pem to")
	g.addJSON(c)
	return c
}

func stationListCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List factory stations: scope, quota used, validity, state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []api.Station
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				sts, err := c.Stations(cmd.Context())
				if err != nil {
					return remoteErr(err)
				}
				if list, err = viewOf[[]api.Station](sts); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				rows, err := n.Store.ListStations(cmd.Context())
				if err != nil {
					return err
				}
				list = make([]api.Station, 0, len(rows))
				for _, s := range rows {
					list = append(list, api.NewStation(s))
				}
			}
			if g.json {
				return g.printJSON(list)
			}
			tw := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tENV\tSITE\tPRODUCTS\tUSED/QUOTA\tVALID UNTIL\tSTATE")
			for _, s := range list {
				q := "-"
				if s.Quota > 0 {
					q = fmt.Sprint(s.Quota)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%s\t%s\t%s\n", s.ID, s.Environment, s.Site, strings.Join(s.ProductLines, ","), s.Used, q, s.ValidUntil.Format(time.DateOnly), s.State)
			}
			return tw.Flush()
		},
	}
	g.addJSON(c)
	return c
}

func stationStateCmd(g *globals, verb, state, short string) *cobra.Command {
	c := &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st api.Station
			if c, err := g.client(cmd); err != nil {
				return err
			} else if c != nil {
				v, err := c.SetStationState(cmd.Context(), args[0], verb)
				if err != nil {
					return remoteErr(err)
				}
				if st, err = viewOf[api.Station](v); err != nil {
					return err
				}
			} else {
				n, err := g.open(cmd.Context())
				if err != nil {
					return err
				}
				defer n.Close()
				row, err := n.RA.SetStationState(cmd.Context(), principal(), args[0], state)
				if err != nil {
					return err
				}
				st = api.NewStation(row)
			}
			if g.json {
				return g.printJSON(st)
			}
			fmt.Fprintf(g.env.Stdout, "station %s is %s\n", st.ID, st.State)
			return nil
		},
	}
	g.addJSON(c)
	return c
}

// stationDir makes out, refusing one that holds a station's files already.
func stationDir(out string) error {
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	for _, f := range []string{"station.pem", "station.key", "trust.pem"} {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			return usageError{fmt.Errorf("%s exists already: choose an empty --out directory", filepath.Join(out, f))}
		}
	}
	return nil
}

// writeStation writes a new station's files to out and reports it.
func writeStation(g *globals, out string, st api.Station, certPEM, keyPEM, trustPEM []byte) error {
	if err := os.WriteFile(filepath.Join(out, "station.key"), keyPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "station.pem"), certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "trust.pem"), trustPEM, 0o644); err != nil {
		return err
	}
	if g.json {
		return g.printJSON(st)
	}
	fmt.Fprintf(g.env.Stdout, "station %s (%s, site %s, product lines %s, quota %d, valid until %s)\nwrote %s, %s (0600), %s\n",
		st.ID, st.Environment, st.Site, strings.Join(st.ProductLines, ","), st.Quota,
		st.ValidUntil.Format(time.RFC3339), filepath.Join(out, "station.pem"), filepath.Join(out, "station.key"), filepath.Join(out, "trust.pem"))
	return nil
}

// stationAddRemote is 'station add' against a server: the server makes the key and certificate and answers
// them, with its TLS anchor, once; they are written as the local command writes them.
func stationAddRemote(cmd *cobra.Command, g *globals, c *client.Client, o ra.StationRequest, validUntil, out string) error {
	req := client.StationRequest{Environment: o.Environment, Site: o.Site, ProductLines: o.ProductLines, Name: o.Name, Quota: o.Quota}
	if validUntil != "" {
		t, err := parseTime(validUntil, time.Now())
		if err != nil {
			return usageError{fmt.Errorf("--valid-until: %w", err)}
		}
		req.ValidUntil = &t
	}
	if err := stationDir(out); err != nil {
		return err
	}
	cred, err := c.AddStation(cmd.Context(), req)
	if err != nil {
		return remoteErr(err)
	}
	st, err := viewOf[api.Station](cred.Station)
	if err != nil {
		return err
	}
	return writeStation(g, out, st, []byte(cred.CertificatePEM), []byte(cred.KeyPEM), []byte(cred.TrustPEM))
}
