package cli

// One configuration: the store a data directory remembers, and the settings of 'keyward serve' from flags,
// KEYWARD_* variables and the serve: section of keyward.yaml (internal/config), with 'keyward config show'
// and 'keyward config check', and the reload on SIGHUP.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyward/keyward/internal/config"
	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/internal/node"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/server"
)

// globalServeSettings are the global flags that are also settings of serve (its log).
var globalServeSettings = []string{"log-level", "log-format"}

// runtimeSettings are the serve settings a SIGHUP applies; every other change takes a restart.
var runtimeSettings = []string{"rate-limit", "commit-window", "log-level"}

// serveSettingNames are the keys of the serve: section: every flag of serve by its long name, and the log
// flags.
func serveSettingNames() []string {
	c := &cobra.Command{Use: "serve"}
	addServeFlags(c, &serveOptions{})
	var names []string
	c.Flags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	return append(names, globalServeSettings...)
}

// secretSetting reports the settings whose value may hold credentials.
func secretSetting(name string) bool { return name == "audit-sink" }

// configFile reads the store: and serve: sections of the data directory's keyward.yaml; nil if there is none
// yet.
func (g *globals) configFile() (*config.File, error) {
	f, err := config.Load(g.data)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return f, err // f holds what parsed when err lists mistakes
}

// resolveServe gives every serve setting not on the command line its value from the environment or the file,
// validates them all, and returns where each came from.
func (g *globals) resolveServe(c *cobra.Command, o *serveOptions, f *config.File) ([]config.Setting, error) {
	settings, err := config.Apply(c.Flags(), serveSettingNames(), f, os.Getenv, secretSetting)
	var errs config.Errors
	if err != nil {
		errors.As(err, &errs)
	}
	// The values that were applied are checked too, so that one pass reports every mistake.
	if err := o.validate(settings); err != nil {
		var more config.Errors
		if errors.As(err, &more) {
			errs = append(errs, more...)
		}
	}
	errs = append(errs, g.validateLog(settings)...)
	if len(errs) > 0 {
		return nil, usageError{errs}
	}
	showDefaults(settings)
	return settings, nil
}

// showDefaults spells out the log settings whose empty default means something.
func showDefaults(settings []config.Setting) {
	for i, s := range settings {
		switch {
		case s.Key == "serve.log-level" && s.Value == "":
			settings[i].Value = "info"
		case s.Key == "serve.log-format" && s.Value == "":
			settings[i].Value = "json unless standard error is a terminal"
		}
	}
}

func (g *globals) validateLog(settings []config.Setting) []error {
	var errs []error
	switch g.logLevel {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, settingError(settings, "log-level", fmt.Sprintf("%q is not a level", g.logLevel), "use debug, info, warn or error"))
	}
	switch g.logFormat {
	case "", "json", "text":
	default:
		errs = append(errs, settingError(settings, "log-format", fmt.Sprintf("%q is not a format", g.logFormat), "use json or text"))
	}
	return errs
}

func configCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "The effective configuration: show it, check it",
		Long: `Keyward's settings come from flags, KEYWARD_* environment variables and the data directory's keyward.yaml
(its store: and serve: sections), in that order of precedence. 'config show' prints every setting in effect and
where it came from; 'config check' validates keyward.yaml, the profiles and the settings without starting
anything. Both take serve's flags, to show or check a command line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(configShowCmd(g), configCheckCmd(g))
	return c
}

func configShowCmd(g *globals) *cobra.Command {
	var o serveOptions
	c := &cobra.Command{
		Use:   "show [serve flags]",
		Short: "Print each setting in effect, its value (secrets redacted) and where it came from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			settings, err := g.effective(cmd, &o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"settings": settings})
			}
			tw := tabwriter.NewWriter(g.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
			for _, s := range settings {
				v := s.Value
				if v == "" {
					v = `""`
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, v, s.Where())
			}
			return tw.Flush()
		},
	}
	addServeFlags(c, &o)
	g.addJSON(c)
	return c
}

func configCheckCmd(g *globals) *cobra.Command {
	var o serveOptions
	c := &cobra.Command{
		Use:   "check [serve flags]",
		Short: "Validate keyward.yaml, the profiles and the serve settings without starting anything (exit 3 on a mistake)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var errs []error
			path := filepath.Join(g.data, node.ConfigFile)
			data, err := os.ReadFile(path)
			if errors.Is(err, os.ErrNotExist) {
				return &exitError{code: ExitNotFound, err: fmt.Errorf("%s: %w (run 'keyward init --data %s')", g.data, node.ErrNotInitialised, g.data)}
			} else if err != nil {
				return err
			}
			var nprofiles int
			h, err := hierarchy.ParseConfigFile(path, data)
			if err != nil {
				errs = append(errs, err)
			}
			profiles, err := profile.LoadDir(filepath.Join(g.data, node.ProfilesDir))
			if err != nil {
				errs = append(errs, err)
			}
			nprofiles = len(profiles)
			if h != nil && profiles != nil {
				for _, env := range h.EnvironmentNames() {
					for _, pl := range h.ProductLineNames(env) {
						for _, name := range h.Environments[env].ProductLines[pl].Profiles {
							if profiles[name] == nil {
								errs = append(errs, fmt.Errorf("%s: environments.%s.product_lines.%s.profiles names %q, which is not in %s; fix: add %s.yaml there or remove the name",
									path, env, pl, name, filepath.Join(g.data, node.ProfilesDir), name))
							}
						}
					}
				}
			}
			if _, err := node.ReadKeystores(g.data); err != nil {
				msg := strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), node.KeystoresFile+": ")), " ")
				errs = append(errs, fmt.Errorf("%s: %s; fix: it lists PKCS#11 token URIs as 'pkcs11: [URI, ...]'", filepath.Join(g.data, node.KeystoresFile), msg))
			}
			if err := g.passphraseAvailable(); err != nil {
				errs = append(errs, err)
			}
			if _, err := g.effective(cmd, &o); err != nil {
				errs = append(errs, configErrors(err)...)
			}
			if len(errs) > 0 {
				for _, err := range errs {
					for _, line := range strings.Split(err.Error(), "\n") {
						fmt.Fprintln(g.env.Stdout, line)
					}
				}
				return badInput(fmt.Errorf("%s: %d mistake(s) in the configuration", g.data, countLines(errs)))
			}
			if g.json {
				return g.printJSON(map[string]any{"ok": true, "file": path, "profiles": nprofiles})
			}
			fmt.Fprintf(g.env.Stdout, "ok: %s, %d profiles and the serve settings are valid\n", path, nprofiles)
			return nil
		},
	}
	addServeFlags(c, &o)
	g.addJSON(c)
	return c
}

func countLines(errs []error) int {
	n := 0
	for _, err := range errs {
		n += strings.Count(err.Error(), "\n") + 1
	}
	return n
}

// effective resolves every setting as serve would, without opening anything: the data directory, the store,
// the keystore passphrase's source, and the serve settings.
func (g *globals) effective(cmd *cobra.Command, o *serveOptions) ([]config.Setting, error) {
	f, err := g.configFile()
	var errs config.Errors
	if err != nil {
		if !errors.As(err, &errs) {
			errs = config.Errors{err}
		}
		if f == nil {
			return nil, usageError{errs}
		}
	}
	var out []config.Setting
	out = append(out, globalSetting(cmd, "data", g.data, "KEYWARD_DATA"))
	var explicit string
	if g.db != "" {
		explicit = g.db
	}
	choice, err := config.ResolveStore(g.data, explicit, g.dbSource, f)
	if err != nil {
		errs = append(errs, err)
	}
	st := config.Setting{Key: "store.db", Value: config.Redact(choice.DB)}
	switch {
	case choice.Source == "default":
		st.Source, st.Value = config.SourceDefault, "sqlite:"+filepath.Join(g.data, "keyward.db")
	case strings.HasPrefix(choice.Source, "file "):
		st.Source, st.From, st.Line = config.SourceFile, strings.TrimPrefix(choice.Source, "file "), f.Store.Line
		if choice.DB == "" {
			st.Value = "sqlite:" + filepath.Join(g.data, "keyward.db")
		}
	default:
		src, from, _ := strings.Cut(choice.Source, " ")
		st.Source, st.From = src, from
	}
	out = append(out, st)
	pass := config.Setting{Key: "passphrase"}
	switch {
	case os.Getenv(node.PassphraseEnv) != "":
		pass.Value, pass.Source, pass.From = "(set; never shown)", config.SourceEnv, node.PassphraseEnv
	case g.passphraseFile != "":
		pass.Value, pass.Source, pass.From = g.passphraseFile, config.SourceFlag, "--passphrase-file"
	default:
		pass.Value, pass.Source = filepath.Join(g.data, node.PassphraseFile), config.SourceDefault
	}
	out = append(out, pass)
	settings, err := g.resolveServe(cmd, o, f)
	if err != nil {
		errs = append(errs, configErrors(err)...)
	}
	if len(errs) > 0 {
		return nil, usageError{errs.Sorted()}
	}
	return append(out, settings...), nil
}

// passphraseAvailable checks that the software keystore's passphrase can be had as serve would look for it,
// without printing or keeping it.
func (g *globals) passphraseAvailable() error {
	if os.Getenv(node.PassphraseEnv) != "" {
		return nil
	}
	file, how := g.passphraseFile, "--passphrase-file"
	if file == "" {
		file, how = filepath.Join(g.data, node.PassphraseFile), "the default passphrase file"
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("keystore passphrase: %s %s cannot be read (%w); fix: set %s or --passphrase-file", how, file, errors.Unwrap(err), node.PassphraseEnv)
	}
	empty := len(strings.TrimSpace(string(data))) == 0
	clear(data)
	if empty {
		return fmt.Errorf("keystore passphrase: %s %s is empty; fix: write the passphrase there, or set %s", how, file, node.PassphraseEnv)
	}
	return nil
}

// configErrors returns the mistakes err lists (a usage error holding config.Errors), or err alone.
func configErrors(err error) config.Errors {
	var ue usageError
	var list config.Errors
	if errors.As(err, &ue) && errors.As(ue.error, &list) {
		return list
	}
	if errors.As(err, &list) {
		return list
	}
	return config.Errors{err}
}

// globalSetting is the setting of a global flag with an environment variable as its default.
func globalSetting(cmd *cobra.Command, name, value, env string) config.Setting {
	s := config.Setting{Key: name, Value: value}
	switch {
	case cmd.Flags().Changed(name):
		s.Source, s.From = config.SourceFlag, "--"+name
	case os.Getenv(env) != "":
		s.Source, s.From = config.SourceEnv, env
	default:
		s.Source = config.SourceDefault
	}
	return s
}

// reloadOnSIGHUP reloads the configuration on each SIGHUP until ctx ends or the returned stop is called:
// the profiles and what may change in keyward.yaml's hierarchy (node.ReloadPolicy), and the serve settings
// that may change at run time (runtimeSettings), all at once or, if anything is wrong, none. Every change it
// refuses is logged with the reason.
func (g *globals) reloadOnSIGHUP(ctx context.Context, cmd *cobra.Command, n *node.Node, api *server.Server, settings []config.Setting) func() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	cur := slices.Clone(settings)
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				cur = g.reload(ctx, cmd, n, api, cur)
			}
		}
	}()
	return func() { signal.Stop(ch); cancel(); <-done }
}

// reload runs one reload and returns the settings now in effect.
func (g *globals) reload(ctx context.Context, cmd *cobra.Command, n *node.Node, api *server.Server, cur []config.Setting) []config.Setting {
	log := n.Logger
	refuse := func(err error) []config.Setting {
		log.ErrorContext(ctx, "configuration reload refused: nothing changed", "err", err.Error())
		return cur
	}
	prep, err := n.PrepareReload()
	if err != nil {
		return refuse(err)
	}
	// The serve settings as a fresh start would resolve them: the same command line and environment, the new
	// file.
	fresh := &cobra.Command{Use: "serve"}
	var o serveOptions
	addServeFlags(fresh, &o)
	var logLevel, logFormat string
	fresh.Flags().StringVar(&logLevel, "log-level", "", "")
	fresh.Flags().StringVar(&logFormat, "log-format", "", "")
	for _, name := range serveSettingNames() {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			copyFlag(fresh.Flags().Lookup(name), fl)
		}
	}
	next, err := config.Apply(fresh.Flags(), serveSettingNames(), prep.File, os.Getenv, secretSetting)
	if err == nil {
		err = o.validate(next)
	}
	if err == nil {
		lg := &globals{logLevel: logLevel, logFormat: logFormat}
		if errs := lg.validateLog(next); len(errs) > 0 {
			err = config.Errors(errs)
		}
	}
	if err != nil {
		return refuse(err)
	}
	showDefaults(next)
	var lvl slog.Level
	if logLevel != "" {
		_ = lvl.UnmarshalText([]byte(logLevel))
	}
	// Everything checked: from here nothing fails.
	if err := n.CommitReload(prep); err != nil {
		return refuse(err)
	}
	for _, r := range prep.Refused {
		log.WarnContext(ctx, "configuration reload: change not applied; it takes a restart", "change", r)
	}
	if prep.StoreRefused != "" {
		log.WarnContext(ctx, "configuration reload: change not applied; it takes a restart", "setting", "store.db", "change", prep.StoreRefused)
	}
	out := slices.Clone(cur)
	var applied []string
	for i, s := range out {
		ns := settingOf(next, strings.TrimPrefix(s.Key, "serve."))
		if ns.Value == s.Value {
			out[i] = ns // the same value, perhaps from another source now
			continue
		}
		name := strings.TrimPrefix(s.Key, "serve.")
		if !slices.Contains(runtimeSettings, name) {
			log.WarnContext(ctx, "configuration reload: setting not changed; it takes a restart", "setting", s.Key, "running", s.Value, "configured", ns.Value, "configured_in", ns.Where())
			continue
		}
		switch name {
		case "rate-limit":
			api.SetRateLimit(o.rate)
		case "commit-window":
			_ = n.RA.SetCommitWindow(o.commitWindow) // validated above
		case "log-level":
			if logLevel == "" {
				lvl = slog.LevelInfo // the default of servers
			}
			g.setLevel(lvl)
		}
		applied = append(applied, s.Key+"="+ns.Value)
		out[i] = ns
	}
	log.InfoContext(ctx, "configuration reloaded", "profiles_added", prep.Added, "profiles_changed", prep.Changed, "profiles_removed", prep.Removed,
		"hierarchy_changed", prep.Hierarchy, "settings_changed", applied)
	return out
}

// copyFlag gives dst the value src was set to on the command line, marked as set there.
func copyFlag(dst, src *pflag.Flag) {
	if dst == nil {
		return
	}
	if sv, ok := src.Value.(pflag.SliceValue); ok {
		if dv, ok := dst.Value.(pflag.SliceValue); ok {
			_ = dv.Replace(sv.GetSlice())
		}
	} else {
		_ = dst.Value.Set(src.Value.String())
	}
	dst.Changed = true
}
