package cli

// Usage mistakes exit 2 (ExitUsage), whoever notices them: pflag (an unknown flag, a value that does not parse),
// cobra (an unknown command or subcommand, a wrong number of arguments, a required flag left out) or a command's
// own checks. Cobra reports most of these as plain errors, and answers a group given an unknown subcommand
// ('keyward cert isue') with its help and success; enforceUsage rewires the command tree once so that each of
// them becomes a usageError instead.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// enforceUsage walks the tree under root (with cobra's help and completion commands added first, so they are
// covered too) and makes every usage mistake a usageError:
//
//   - a group ('keyward cert') runs: with no argument it prints its help (exit 0, like 'keyward' alone); with an
//     argument that is no subcommand it fails, naming the argument and the closest subcommands;
//   - every argument validator's error is a usage error, and a command that takes no arguments says so;
//   - required flags and flag groups are checked before the command runs, as usage errors;
//   - 'keyward help TOPIC' for an unknown topic is a usage error.
func enforceUsage(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	root.SetFlagErrorFunc(flagError)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Name() == "help" && c.HasParent() && !c.Parent().HasParent() {
			c.Run = nil
			c.RunE = helpTopic
			c.Args = nil
			return
		}
		if c.HasSubCommands() && !c.Runnable() {
			c.Args = cobra.NoArgs
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
			c.DisableFlagsInUseLine = true // its usage line is "keyward cert", beside "keyward cert [command]"
		}
		c.Args = usageArgs(c.Args)
		pre, preE := c.PreRun, c.PreRunE
		c.PreRun = nil
		c.PreRunE = func(cmd *cobra.Command, args []string) error {
			switch {
			case preE != nil:
				if err := preE(cmd, args); err != nil {
					return err
				}
			case pre != nil:
				pre(cmd, args)
			}
			// Cobra checks these itself only after PreRunE, and reports them as plain errors.
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return usageError{err}
			}
			if err := cmd.ValidateFlagGroups(); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	walk(root)
}

// flagError makes a flag that does not parse a usage error. A group's unknown flag most often belongs to a
// subcommand the group does not know ('keyward cert isue --profile P'): that subcommand is the mistake to report.
func flagError(cmd *cobra.Command, err error) error {
	if args := cmd.Flags().Args(); cmd.HasSubCommands() && len(args) > 0 {
		return unknownSubcommand(cmd, args[0])
	}
	return usageError{err}
}

// usageArgs wraps a command's argument validator so that what it refuses is a usage error. A nil validator takes
// no arguments: every Keyward command that takes some says so.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	if v == nil {
		v = cobra.NoArgs
	}
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			if cmd.HasSubCommands() && len(args) > 0 {
				return unknownSubcommand(cmd, args[0])
			}
			if len(args) > 0 && isNoArgs(v, cmd) {
				return usageError{fmt.Errorf("%s takes no arguments; got %q", cmd.CommandPath(), strings.Join(args, " "))}
			}
			return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
}

// isNoArgs reports whether v refuses every argument, the way cobra.NoArgs does.
func isNoArgs(v cobra.PositionalArgs, cmd *cobra.Command) bool {
	return v(cmd, []string{"x"}) != nil && v(cmd, nil) == nil
}

// unknownSubcommand is the error for 'keyward GROUP NAME' when GROUP has no subcommand NAME: it names both and
// suggests the closest subcommands, or lists them all when none is close.
func unknownSubcommand(group *cobra.Command, name string) error {
	if group.SuggestionsMinimumDistance <= 0 {
		group.SuggestionsMinimumDistance = 2
	}
	var hint string
	if s := group.SuggestionsFor(name); len(s) > 0 {
		hint = "; did you mean " + quoteJoin(s, " or ") + "?"
	} else {
		var names []string
		for _, sub := range group.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		if len(names) > 0 {
			hint = "; its commands are " + strings.Join(names, ", ")
		}
	}
	return usageError{fmt.Errorf("unknown command %q for %q%s", name, group.CommandPath(), hint)}
}

// quoteJoin quotes each distinct name and joins them with sep.
func quoteJoin(names []string, sep string) string {
	var q []string
	for _, n := range names {
		if s := fmt.Sprintf("%q", n); !slices.Contains(q, s) {
			q = append(q, s)
		}
	}
	return strings.Join(q, sep)
}

// helpTopic is 'keyward help [COMMAND...]': the help of a command, or a usage error for one that does not exist.
func helpTopic(cmd *cobra.Command, args []string) error {
	target, rest, err := cmd.Root().Find(args)
	if err != nil {
		return usageError{err}
	}
	for _, a := range rest {
		if !strings.HasPrefix(a, "-") {
			return unknownSubcommand(target, a)
		}
	}
	return target.Help()
}
