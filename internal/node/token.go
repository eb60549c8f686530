package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
)

// tokenPrefix marks Keyward operator tokens so secret scanners can find leaked ones.
const tokenPrefix = "kwt_"

// HashToken returns the stored form of an operator token: SHA-256 is enough because tokens are 256 random bits,
// not passwords.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// EnsureAdminToken writes a new admin operator token to Dir/admin.token (mode 0600) and stores only its hash,
// unless the file exists already. It returns the file's path when it wrote one.
func (n *Node) EnsureAdminToken(ctx context.Context, actor string) (string, error) {
	path := filepath.Join(n.Dir, TokenFile)
	if _, err := os.Stat(path); err == nil {
		return "", nil
	}
	tok, err := n.CreateToken(ctx, actor, "admin", ra.RoleAdmin)
	if err != nil {
		return "", err
	}
	if err := writeIfMissing(path, []byte(tok+"\n")); err != nil {
		return "", err
	}
	return path, nil
}

// CreateToken creates an operator token with a role and returns it; only its hash is stored.
func (n *Node) CreateToken(ctx context.Context, actor, name, role string) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	h := HashToken(tok)
	now := n.Now().UTC()
	id := hex.EncodeToString(h[:8])
	err := n.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertToken(ctx, &store.Token{ID: id, Name: name, Role: role, Hash: h, CreatedAt: now}); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, &audit.Event{Time: now, Actor: actor, Action: "token.create", Subject: "token:" + id, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"name": name, "role": role}})
	})
	if err != nil {
		return "", fmt.Errorf("create token %q: %w", name, err)
	}
	return tok, nil
}

// ErrBadToken is returned by Authenticate for an unknown, malformed or revoked token.
var ErrBadToken = errors.New("unknown or revoked operator token")

// Authenticate returns the principal an operator token stands for.
func (n *Node) Authenticate(ctx context.Context, token string) (ra.Principal, error) {
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 128 {
		return ra.Principal{}, ErrBadToken
	}
	h := HashToken(token)
	t, err := n.Store.TokenByHash(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return ra.Principal{}, ErrBadToken
	} else if err != nil {
		return ra.Principal{}, err
	}
	if subtle.ConstantTimeCompare(t.Hash, h) != 1 || t.RevokedAt != nil {
		return ra.Principal{}, ErrBadToken
	}
	return ra.Principal{ID: "operator:" + t.Name, Role: t.Role}, nil
}
