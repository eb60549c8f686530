package cli

// Remote mode: with --server URL (or KEYWARD_SERVER) the commands that have an API route run against that
// server through pkg/client, authenticated by the operator token in --token-file (or KEYWARD_TOKEN_FILE), and
// are decided, authorised and audited there as the token's operator. The commands that need the data directory
// itself (init, serve, ceremonies, keystores, batches, ...) refuse to run remotely, with exit 2.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/pkg/client"
)

// remoteFlags are the global flags of remote mode.
type remoteFlags struct {
	server, tokenFile, serverCA string
}

func (r *remoteFlags) add(pf *pflag.FlagSet) {
	pf.StringVar(&r.server, "server", os.Getenv("KEYWARD_SERVER"), "run against this Keyward server (https://HOST:PORT) instead of a data directory (env KEYWARD_SERVER)")
	pf.StringVar(&r.tokenFile, "token-file", os.Getenv("KEYWARD_TOKEN_FILE"), "with --server: file holding the operator token (env KEYWARD_TOKEN_FILE)")
	pf.StringVar(&r.serverCA, "server-ca", os.Getenv("KEYWARD_SERVER_CA"), "with --server: the server's TLS CA, DATA/tls/ca.pem (env KEYWARD_SERVER_CA; default: that file in --data)")
}

// errLocalOnly refuses a command that needs the data directory when remote mode is on.
func errLocalOnly(cmd *cobra.Command) error {
	return usageError{fmt.Errorf("'%s' runs only on the data directory and cannot run against a remote server: unset --server (KEYWARD_SERVER) and run it on the server's host", cmd.CommandPath())}
}

// localOnlyCommands open the data directory without globals.open; they refuse remote mode up front.
var localOnlyCommands = []string{"keyward init", "keyward serve", "keyward ca ceremony", "keyward factory serve"}

// refuseRemote is run before every command: a command that opens the data directory by other means than
// globals.open is refused in remote mode here.
func (g *globals) refuseRemote(cmd *cobra.Command) error {
	if g.remote.server == "" {
		return nil
	}
	p := cmd.CommandPath()
	for _, c := range localOnlyCommands {
		if p == c || len(p) > len(c) && p[:len(c)+1] == c+" " {
			return errLocalOnly(cmd)
		}
	}
	return nil
}

// client returns the API client of remote mode, or nil when the command runs on the data directory.
func (g *globals) client(cmd *cobra.Command) (*client.Client, error) {
	return g.clientWithToken(cmd, "")
}

// clientWithToken is client with the token read from tokenFile instead of --token-file, if not empty (a release
// signer's own token for 'firmware release approve').
func (g *globals) clientWithToken(_ *cobra.Command, tokenFile string) (*client.Client, error) {
	r := g.remote
	if r.server == "" {
		return nil, nil
	}
	if tokenFile == "" {
		tokenFile = r.tokenFile
	}
	if tokenFile == "" {
		return nil, usageError{errors.New("--server needs --token-file FILE (or KEYWARD_TOKEN_FILE): the operator token to act with")}
	}
	tok, err := readTokenFile(tokenFile)
	if err != nil {
		return nil, err
	}
	if tok == "" {
		return nil, usageError{fmt.Errorf("token file %s is empty", tokenFile)}
	}
	caFile := r.serverCA
	if caFile == "" {
		caFile = filepath.Join(g.data, node.TLSDir, "ca.pem")
		if _, err := os.Stat(caFile); err != nil {
			return nil, usageError{fmt.Errorf("--server needs the server's TLS CA: --server-ca FILE (or KEYWARD_SERVER_CA); %s does not exist", caFile)}
		}
	}
	caPEM, err := readFileLimited(caFile)
	if err != nil {
		return nil, err
	}
	c, err := client.New(r.server, tok, caPEM)
	if err != nil {
		return nil, usageError{fmt.Errorf("--server %s: %w", r.server, err)}
	}
	return c, nil
}

// remoteErr maps an error of the API client to the error kinds the CLI's exit codes and flag names come from
// (exitCode, flagOf): the server's refusal keeps its message and field; a server that cannot be reached is
// unavailable.
func remoteErr(err error) error {
	if err == nil {
		return nil
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return &exitError{code: ExitUnavailable, err: fmt.Errorf("server: %w", err)}
	}
	kind := ra.KindInternal
	switch ce.Kind {
	case client.KindBadRequest:
		kind = ra.KindBadRequest
	case client.KindUnauthorized:
		kind = ra.KindUnauthorized
	case client.KindForbidden:
		kind = ra.KindForbidden
	case client.KindNotFound:
		kind = ra.KindNotFound
	case client.KindConflict:
		kind = ra.KindConflict
	case client.KindUnavailable, client.KindTooManyRequests:
		kind = ra.KindUnavailable
	}
	return &ra.Error{Kind: kind, Field: ce.Field, Err: fmt.Errorf("server: %s", ce.Message)}
}

// viewOf converts a record of the API client to the CLI's view type of the same JSON (internal/api), so that remote
// and local commands print through the same code.
func viewOf[T any](v any) (T, error) {
	var out T
	b, err := json.Marshal(v)
	if err != nil {
		return out, err
	}
	return out, json.Unmarshal(b, &out)
}

// resolveDevice completes ref from the registry when its environment or product line is not given, as the RA's
// FindDevice does locally: the serial must name one device.
func resolveDevice(ctx context.Context, c *client.Client, ref ra.DeviceRef) (client.DeviceRef, error) {
	out := client.DeviceRef{Environment: ref.Environment, ProductLine: ref.ProductLine, Serial: ref.Serial}
	if out.Environment != "" && out.ProductLine != "" {
		return out, nil
	}
	list, err := c.Devices(ctx, client.DeviceFilter{Environment: ref.Environment, ProductLine: ref.ProductLine, Serial: ref.Serial, Limit: 2})
	if err != nil {
		return out, remoteErr(err)
	}
	switch len(list) {
	case 0:
		return out, ra.FieldErrorf(ra.KindNotFound, "serial", "no device %q in the registry", ref.Serial)
	case 1:
		return client.DeviceRef{Environment: list[0].Environment, ProductLine: list[0].ProductLine, Serial: list[0].Serial}, nil
	}
	return out, ra.FieldErrorf(ra.KindBadRequest, "product_line", "device serial %q is in several product lines: give --env and --product", ref.Serial)
}
