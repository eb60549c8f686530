package ca

import (
	"context"
	"crypto"

	"github.com/keyward/keyward/internal/keystore"
	"github.com/keyward/keyward/pkg/trust"
)

// Trust-anchor updates (pkg/trust): a root rollover's signed list of the anchors devices hold, signed by the
// roots devices hold now and by every root the update introduces. Which roots sign, and when, is the
// ceremony's decision.

// SignAnchorUpdate signs u with each of the environment root keys at rootURIs (purpose root-signing): the
// outgoing root's and the incoming one's during a rollover. A URI given twice signs once.
func (c *Custodian) SignAnchorUpdate(ctx context.Context, u *trust.Update, rootURIs ...string) ([]byte, error) {
	signers := make([]crypto.Signer, 0, len(rootURIs))
	for _, uri := range rootURIs {
		s, err := c.signer(ctx, uri, keystore.PurposeRootSigning, false)
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	}
	return trust.Sign(u, signers...)
}
