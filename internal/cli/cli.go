package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/ra"
)

// Exit codes of keyward.
const (
	ExitOK          = 0
	ExitInternal    = 1  // an unexpected failure
	ExitUsage       = 2  // bad flags or arguments
	ExitBadRequest  = 3  // the input breaks a rule (profile, key quality, malformed file)
	ExitDenied      = 4  // unauthorised or forbidden
	ExitNotFound    = 5  // no such CA, certificate, key or profile
	ExitConflict    = 6  // conflicts with existing state (duplicate key, exists already)
	ExitUnavailable = 7  // a backend is unavailable or refused us (keystore cannot be unsealed, HSM, database)
	ExitAuditBroken = 8  // verification failed: 'audit verify', 'audit check-proof', 'evidence verify'
	ExitRevoked     = 9  // 'revocation check': the certificate or serial is revoked (the answer, not a failure)
	ExitFindings    = 10 // the check found problems: 'probe' FAIL, 'fleet scan' findings (the answer, not a failure)
)

// ExitCodes documents the exit codes; it is printed by 'keyward --help'.
const ExitCodes = `Exit codes:
  0  success
  1  internal error
  2  usage error (bad flags or arguments)
  3  bad request: the input breaks a rule (profile, key quality, malformed file)
  4  unauthorised or forbidden
  5  not found
  6  conflict with existing state (duplicate key, already exists)
  7  backend unavailable (keystore cannot be unsealed, PKCS#11 module or PIN, database)
  8  verification failed: the audit log (chain, Merkle tree, checkpoint, proof, or a table that disagrees with
     the log) or an evidence pack (a changed, missing or added file, a bad signature or proof)
  9  revoked: 'revocation check' answers that the certificate or serial is revoked (0 means not revoked)
  10 the check found problems: 'probe tls' had a case FAIL, 'fleet scan' has findings (0: every case PASS or
     N/A, no findings)`

// Env is what a command runs with: streams and the process environment, so tests can run commands in-process.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
	Stdin  io.Reader
}

type usageError struct{ error }

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Run executes keyward with args (without the program name) and returns the exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Stdout == nil {
		env.Stdout = os.Stdout
	}
	if env.Stderr == nil {
		env.Stderr = os.Stderr
	}
	if env.Stdin == nil {
		env.Stdin = os.Stdin
	}
	root := newRoot(env)
	root.SetArgs(args)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetContext(ctx)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if flag := flagOf(err); flag != "" {
		fmt.Fprintf(env.Stderr, "keyward: %v (%s)\n", err, flag)
	} else {
		fmt.Fprintf(env.Stderr, "keyward: %v\n", err)
	}
	return exitCode(err)
}

// exitCode maps an error to its exit code: the one place the CLI maps error kinds.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	if errors.Is(err, node.ErrNotInitialised) {
		return ExitNotFound
	}
	var mismatch *config.StoreMismatchError
	if errors.As(err, &mismatch) || errors.Is(err, node.ErrStoreUnknown) {
		return ExitUsage
	}
	var fe *config.FieldError
	if errors.As(err, &fe) {
		return ExitBadRequest
	}
	switch ra.KindOf(err) {
	case ra.KindBadRequest:
		return ExitBadRequest
	case ra.KindUnauthorized, ra.KindForbidden:
		return ExitDenied
	case ra.KindNotFound:
		return ExitNotFound
	case ra.KindConflict:
		return ExitConflict
	case ra.KindUnavailable:
		return ExitUnavailable
	case ra.KindIntegrity:
		return ExitAuditBroken
	}
	return ExitInternal
}

// fieldFlags names the flag of each request field the RA reports an error about, where the flag is not the
// field's name with hyphens.
var fieldFlags = map[string]string{
	"environment":   "--env",
	"product_line":  "--product",
	"product_lines": "--product",
	"issued_from":   "--issued-between",
	"issued_to":     "--issued-between",
	// Positional arguments: no flag to name.
	"serial": "",
}

// flagOf returns the command-line flag of the request field err is about, or "".
func flagOf(err error) string {
	f := ra.FieldOf(err)
	if f == "" {
		return ""
	}
	if flag, ok := fieldFlags[f]; ok {
		return flag // "" for a positional argument
	}
	return "--" + strings.ReplaceAll(f, "_", "-")
}

// global flags shared by every command.
type globals struct {
	env            Env
	data           string
	db             string
	passphraseFile string
	json           bool
	verbose        bool
	logLevel       string
	logFormat      string
	// service is set by the commands that run a server: their log level defaults to info (one access line per
	// request), every other command's to warn.
	service bool
	// dbSource says where db came from: "flag --db" or "env KEYWARD_DB".
	dbSource string
	// level is the log level of every logger made, which a configuration reload may change (config.go).
	level *slog.LevelVar
	// remote is remote mode: --server, --token-file (remote.go).
	remote remoteFlags
}

func newRoot(env Env) *cobra.Command {
	g := &globals{env: env}
	root := &cobra.Command{
		Use:   "keyward",
		Short: "Keyward: private PKI and key lifecycle for connected medical devices",
		Long: `Keyward runs a private CA hierarchy (an offline root per environment, issuing CAs per product line),
issues device identities under certificate profiles, keeps keys in a sealed software keystore or a PKCS#11 HSM,
and records every change in a hash-chained audit trail.

` + ExitCodes,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defData := os.Getenv("KEYWARD_DATA")
	if defData == "" {
		defData = "keyward-data"
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.data, "data", defData, "data directory (env KEYWARD_DATA)")
	pf.StringVar(&g.db, "db", os.Getenv("KEYWARD_DB"), "database: empty for SQLite in the data directory, or postgres://... (env KEYWARD_DB)")
	pf.StringVar(&g.passphraseFile, "passphrase-file", "", "file holding the software keystore passphrase (default: $KEYWARD_PASSPHRASE, else DATA/passphrase)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log at debug level")
	pf.StringVar(&g.logLevel, "log-level", "", "debug, info, warn or error (default: info for servers, warn for other commands; -v is debug)")
	pf.StringVar(&g.logFormat, "log-format", "", "json or text (default: json unless standard error is a terminal)")
	g.remote.add(pf)
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		g.dbSource = "flag --db"
		if !pf.Changed("db") && g.db != "" {
			g.dbSource = "env KEYWARD_DB"
		}
		if _, _, err := g.logSettings(); err != nil {
			return err
		}
		return g.refuseRemote(cmd)
	}
	root.AddCommand(
		initCmd(g), serveCmd(g), caCmd(g), keyCmd(g), certCmd(g), auditCmd(g), profileCmd(g), tokenCmd(g), benchCmd(g), versionCmd(g),
		stationCmd(g), deviceCmd(g),
		firmwareCmd(g),
		revocationCmd(g),
		factoryCmd(g),
		trustCmd(g),
		fleetCmd(g),
		probeCmd(g),
		configCmd(g),
		manCmd(g),
		evidenceCmd(g),
	)
	if env.Stdout != nil {
		root.SetOut(env.Stdout) // before enforceUsage: cobra's completion commands keep the writer they see then
	}
	enforceUsage(root)
	return root
}

// addJSON adds --json to a command.
func (g *globals) addJSON(c *cobra.Command) {
	c.Flags().BoolVar(&g.json, "json", false, "print machine-readable JSON")
}

func (g *globals) logger() *slog.Logger {
	lvl, json, err := g.logSettings()
	if err != nil { // refused before any command ran (PersistentPreRunE); the defaults, should one get here
		lvl, json = slog.LevelWarn, false
	}
	if g.level == nil {
		g.level = new(slog.LevelVar)
		g.level.Set(lvl)
	}
	opts := &slog.HandlerOptions{Level: g.level}
	if json {
		return slog.New(slog.NewJSONHandler(g.env.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.env.Stderr, opts))
}

// logSettings returns the log level and whether to log JSON, from --log-level, --log-format and -v.
func (g *globals) logSettings() (slog.Level, bool, error) {
	lvl := slog.LevelWarn
	if g.service {
		lvl = slog.LevelInfo
	}
	if g.verbose {
		lvl = slog.LevelDebug
	}
	switch g.logLevel {
	case "":
	case "debug", "info", "warn", "error":
		_ = lvl.UnmarshalText([]byte(g.logLevel))
	default:
		return 0, false, usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)}
	}
	switch g.logFormat {
	case "json":
		return lvl, true, nil
	case "text":
		return lvl, false, nil
	case "":
		f, ok := g.env.Stderr.(*os.File)
		return lvl, !ok || !term.IsTerminal(int(f.Fd())), nil
	}
	return 0, false, usageError{fmt.Errorf("--log-format %q: use json or text", g.logFormat)}
}

// setLevel changes the level of every logger made (a configuration reload).
func (g *globals) setLevel(l slog.Level) {
	if g.level != nil {
		g.level.Set(l)
	}
}

func (g *globals) options() node.Options {
	return node.Options{Dir: g.data, DB: g.db, DBSource: g.dbSource, PassphraseFile: g.passphraseFile, Logger: g.logger(), Warn: g.env.Stderr}
}

func (g *globals) open(ctx context.Context) (*node.Node, error) {
	if g.remote.server != "" {
		return nil, usageError{errors.New("this command runs only on the data directory and cannot run against a remote server: unset --server (KEYWARD_SERVER) and run it on the server's host")}
	}
	return node.Open(ctx, g.options())
}

// principal is who runs a local CLI command: the operating-system user, acting as administrator, since they can
// read the data directory and its keystore.
func principal() ra.Principal {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return ra.Principal{ID: "cli:" + name, Role: ra.RoleAdmin}
}

func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
