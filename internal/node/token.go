package node

import (
	"context"
	"os"
	"path/filepath"

	"github.com/keyward/keyward/internal/ra"
)

// EnsureAdminToken writes a new admin operator token to Dir/admin.token (mode 0600), of which only the hash is
// stored, unless the file exists already. It returns the file's path when it wrote one.
func (n *Node) EnsureAdminToken(ctx context.Context, actor string) (string, error) {
	path := filepath.Join(n.Dir, TokenFile)
	if _, err := os.Stat(path); err == nil {
		return "", nil
	}
	tok, err := n.RA.CreateToken(ctx, ra.Principal{ID: actor, Role: ra.RoleAdmin}, ra.TokenRequest{Name: "admin", Role: ra.RoleAdmin})
	if err != nil {
		return "", err
	}
	if err := writeIfMissing(path, []byte(tok+"\n")); err != nil {
		return "", err
	}
	return path, nil
}
