package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCmd writes a man page for every command of the tree it belongs to: what scripts/package.sh installs under
// /usr/share/man/man1. The pages come from the same cobra tree as --help, so they cannot drift from it.
func manCmd(g *globals) *cobra.Command {
	var out string
	var section string
	c := &cobra.Command{
		Use:   "man --out DIR",
		Short: "Write a man page for every keyward command into DIR",
		Long: `Writes one troff man page per command (keyward.1, keyward-cert-issue.1, ...) into DIR, creating it if
needed, from the same command tree that --help prints. The page date is SOURCE_DATE_EPOCH when set (reproducible
builds), else today. Flag defaults read from the environment (--data from KEYWARD_DATA, --db from KEYWARD_DB) are
written as they are in this process: generate pages with those variables unset.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if section == "" || strings.ContainsAny(section, "/ \t\n") {
				return usageError{fmt.Errorf("--section %q: use a man section such as 1 or 8", section)}
			}
			if st, err := os.Stat(out); err == nil && !st.IsDir() {
				return usageError{fmt.Errorf("--out %s: exists and is not a directory", out)}
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			header := &doc.GenManHeader{
				Title:   "KEYWARD",
				Section: section,
				Source:  "Keyward " + buildVersion().Version,
				Manual:  "Keyward Manual",
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // no "Auto generated ... on <date>" footer: the header carries the date
			if err := doc.GenManTree(root, header, out); err != nil {
				return fmt.Errorf("write man pages to %s: %w", out, err)
			}
			fmt.Fprintf(g.env.Stdout, "wrote %d man pages to %s\n", manPages(root), out)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "directory to write the pages to (created if missing)")
	c.Flags().StringVar(&section, "section", "1", "man section of the pages")
	_ = c.MarkFlagRequired("out")
	return c
}

// manPages counts the pages doc.GenManTree writes for c and its subcommands: one per available command that is
// not a help topic.
func manPages(c *cobra.Command) int {
	if !c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand() {
		return 0
	}
	n := 1
	for _, sub := range c.Commands() {
		n += manPages(sub)
	}
	return n
}
