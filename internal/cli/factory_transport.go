package cli

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/factory"
	"github.com/keyward/keyward/internal/keystore/pkcs11"
)

// factoryTransportKeyCmd is 'keyward factory transport-key': an AES transport key in the site HSM, under which
// 'keyward factory inject --wrap-with' exports device keys for the devices' secure elements.
func factoryTransportKeyCmd(g *globals) *cobra.Command {
	var ks, importFile, label string
	c := &cobra.Command{
		Use:   "transport-key",
		Short: "Create or import the AES transport key in the site HSM that device keys are wrapped under at injection",
		Long: `Creates an AES-256 transport key in the site HSM (--keystore pkcs11:...), or imports one from --import (a file
with 32 bytes in hex, as the secure-element vendor's key ceremony delivers it), and prints its URI for
'keyward factory inject --wrap-with'. The key can only wrap: it is sensitive, not extractable, cannot
encrypt, decrypt or unwrap. Keep the import file apart from the site and destroy it after the import.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !strings.HasPrefix(ks, "pkcs11:") {
				return usageError{errors.New("--keystore pkcs11:... (the site HSM) is required")}
			}
			hsm, err := pkcs11.Open(ks)
			if err != nil {
				return err
			}
			defer hsm.Close()
			var uri string
			if importFile != "" {
				data, err := os.ReadFile(importFile)
				if err != nil {
					return &exitError{ExitNotFound, fmt.Errorf("--import: %w", err)}
				}
				key, err := hex.DecodeString(strings.TrimSpace(string(data)))
				clear(data)
				if err != nil || len(key) != factory.TransportKeySize {
					clear(key)
					return usageError{fmt.Errorf("--import %s: want %d bytes in hex", importFile, factory.TransportKeySize)}
				}
				uri, err = hsm.ImportTransportKey(cmd.Context(), label, key)
				clear(key)
				if err != nil {
					return err
				}
			} else if uri, err = hsm.GenerateTransportKey(cmd.Context(), label); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]string{"uri": uri})
			}
			fmt.Fprintln(g.env.Stdout, uri)
			return nil
		},
	}
	c.Flags().StringVar(&ks, "keystore", "", "the site HSM (pkcs11: URI)")
	c.Flags().StringVar(&importFile, "import", "", "import this key (hex, 32 bytes) instead of generating one")
	c.Flags().StringVar(&label, "label", "transport", "label of the key in the HSM")
	g.addJSON(c)
	return c
}
