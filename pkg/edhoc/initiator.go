package edhoc

import (
	"crypto/ecdh"
	"fmt"
	"slices"
)

// Initiator runs the Initiator's side of one EDHOC session: Message1, ProcessMessage2, Message3 and,
// if the application uses it, ProcessMessage4. It is not safe for concurrent use.
type Initiator struct {
	keys
	cfg     Config
	p       *suiteParams
	suitesI []Suite
	x       *ecdh.PrivateKey
	state   int
	tr      Transcript
	gy      *ecdh.PublicKey
	pt2     *plaintext2
}

const (
	iStart = iota
	iWaitM2
	iVerifiedM2
	iSentM3
	iDone
	iAborted
)

// NewInitiator checks cfg and prepares a session.
func NewInitiator(cfg Config) (*Initiator, error) {
	if len(cfg.Suites) == 0 {
		return nil, fmt.Errorf("%w: no cipher suites", ErrConfig)
	}
	selected := cfg.Suites[0]
	if cfg.Selected != nil {
		selected = *cfg.Selected
	}
	idx := slices.Index(cfg.Suites, selected)
	if idx < 0 {
		return nil, fmt.Errorf("%w: selected suite %d is not among the Initiator's suites %v", ErrConfig, int(selected), cfg.Suites)
	}
	p, err := selected.params()
	if err != nil {
		return nil, err
	}
	if cfg.Method < 0 || cfg.Method > 3 {
		return nil, fmt.Errorf("%w: method %d (0 to 3)", ErrUnsupportedSuite, int(cfg.Method))
	}
	if err := checkLocal(cfg.Credential, cfg.Method.initiatorSigns(), p); err != nil {
		return nil, err
	}
	if cfg.Verifier == nil {
		return nil, fmt.Errorf("%w: no credential verifier for the Responder's credential", ErrConfig)
	}
	i := &Initiator{cfg: cfg, p: p, suitesI: slices.Clone(cfg.Suites[:idx+1])}
	i.suite, i.initiator = selected, true
	if cfg.ConnectionID != nil {
		if err := checkID(cfg.ConnectionID, "C_I"); err != nil {
			return nil, err
		}
		i.cI = slices.Clone(cfg.ConnectionID)
	} else if i.cI, err = randomID(func([]byte) bool { return false }); err != nil {
		return nil, err
	}
	return i, nil
}

// SelectSuite returns the suite to select after the Responder's error code 2 with SUITES_R: the
// Initiator's most preferred suite the Responder supports (RFC 9528 section 6.3.2). Keep prefs whole in
// the next Config.Suites so SUITES_I carries every more preferred suite and downgrades stay detectable.
func SelectSuite(prefs, suitesR []Suite) (Suite, bool) {
	for _, s := range prefs {
		if slices.Contains(suitesR, s) {
			return s, true
		}
	}
	return 0, false
}

func (i *Initiator) fail(err error) error {
	i.state = iAborted
	i.x = nil
	return err
}

// Message1 returns message_1 (RFC 9528 section 5.2). Calling it again returns the same bytes, for a
// retransmission.
func (i *Initiator) Message1() ([]byte, error) {
	if i.state == iWaitM2 {
		return slices.Clone(i.tr.Message1), nil
	}
	if i.state != iStart {
		return nil, fmt.Errorf("%w: message_1 after the session has moved on", ErrState)
	}
	if i.x == nil {
		var err error
		if i.x, err = newEphemeral(i.p.curve); err != nil {
			return nil, err
		}
	}
	b := appendInt(nil, int64(i.cfg.Method))
	b = appendSuites(b, i.suitesI)
	b = appendBstr(b, compact(i.x.PublicKey()))
	b = appendID(b, i.cI)
	b = appendEAD(b, i.cfg.EAD.send(1))
	if len(b) > maxMessage {
		return nil, i.fail(fmt.Errorf("%w: message_1 would be %d bytes", ErrConfig, len(b)))
	}
	i.tr.Message1 = b
	i.state = iWaitM2
	return slices.Clone(b), nil
}

// ProcessMessage2 processes message_2 (RFC 9528 section 5.3.3) or an error message in its place: it
// decrypts PLAINTEXT_2, resolves and checks ID_CRED_R with the Verifier, verifies Signature_or_MAC_2 and
// hands EAD_2 to the hooks. Any failure aborts the session. An error message with code 2 returns a
// *PeerError matching ErrWrongSuite; use SelectSuite and a new Initiator.
func (i *Initiator) ProcessMessage2(msg []byte) error {
	if i.state != iWaitM2 {
		return fmt.Errorf("%w: message_2 before message_1 or after message_2", ErrState)
	}
	if isErrorMessage(msg) {
		em, err := ParseError(msg)
		if err != nil {
			return i.fail(err)
		}
		return i.fail(&PeerError{Message: em})
	}
	gyRaw, ct, err := parseMessage2(msg, len(compact(i.x.PublicKey())))
	if err != nil {
		return i.fail(err)
	}
	gy, err := publicKey(i.p.curve, gyRaw)
	if err != nil {
		return i.fail(err)
	}
	gxy, err := ecdhShared(i.x, gy)
	if err != nil {
		return i.fail(err)
	}
	// TH_2 = H(G_Y, H(message_1)).
	th2 := hash(bstr(gyRaw), bstr(hash(i.tr.Message1)))
	prk2e := extract(th2, gxy)
	ks := kdf(prk2e, 0, th2, len(ct))
	pt := make([]byte, len(ct))
	for j := range ct {
		pt[j] = ct[j] ^ ks[j]
	}
	p2, err := parsePlaintext2(pt)
	if err != nil {
		return i.fail(err)
	}
	if err := i.cfg.EAD.receive(2, p2.ead); err != nil {
		return i.fail(err)
	}
	id, err := parseIDCred(p2.idCred)
	if err != nil {
		return i.fail(err)
	}
	id.StaticDH = !i.cfg.Method.responderSigns()
	peer, err := i.cfg.Verifier.VerifyCredential(id)
	if err != nil {
		return i.fail(err)
	}
	prk3e2m := prk2e
	if !i.cfg.Method.responderSigns() {
		gr, err := dhPublic(peer.PublicKey, i.p.curve)
		if err != nil {
			return i.fail(err)
		}
		grx, err := ecdhShared(i.x, gr)
		if err != nil {
			return i.fail(err)
		}
		i.tr.GRX, i.tr.Salt3e2m = grx, kdf(prk2e, 1, th2, hashLen)
		prk3e2m = extract(i.tr.Salt3e2m, grx)
	}
	context2 := slices.Concat(p2.cRWire, p2.idCred, bstr(th2), peer.Cred, p2.eadRaw)
	extAAD := slices.Concat(bstr(th2), peer.Cred, p2.eadRaw)
	mac2, err := checkSignatureOrMAC(i.p, i.cfg.Method.responderSigns(), peer, p2.idCred, prk3e2m, 2, context2, extAAD, p2.sig)
	if err != nil {
		return i.fail(err)
	}
	i.tr.GXY, i.tr.Context2, i.tr.SignatureOrMAC2, i.tr.Ciphertext2 = gxy, context2, p2.sig, slices.Clone(ct)
	i.tr.Message2, i.tr.TH2, i.tr.PRK2e, i.tr.PRK3e2m, i.tr.Keystream2, i.tr.MAC2, i.tr.Plaintext2 = slices.Clone(msg), th2, prk2e, prk3e2m, ks, mac2, pt
	i.gy, i.pt2, i.peer, i.cR = gy, p2, peer, p2.cR
	i.state = iVerifiedM2
	return nil
}

// Message3 returns message_3 (RFC 9528 section 5.4). Once it returns, PRK_out, the exporter and the
// OSCORE parameters are available; the Responder has them after processing it. A retransmission returns
// the same bytes, never a fresh encryption under the same key and IV (RFC 9528 appendix G).
func (i *Initiator) Message3() ([]byte, error) {
	if i.state == iSentM3 || i.state == iDone {
		return slices.Clone(i.tr.Message3), nil
	}
	if i.state != iVerifiedM2 {
		return nil, fmt.Errorf("%w: message_3 before message_2 was verified", ErrState)
	}
	cred := i.cfg.Credential
	th3 := hash(bstr(i.tr.TH2), i.tr.Plaintext2, i.peer.Cred)
	prk4e3m := i.tr.PRK3e2m
	if !i.cfg.Method.initiatorSigns() {
		priv, err := dhPrivate(cred.Key, i.p.curve)
		if err != nil {
			return nil, i.fail(err)
		}
		giy, err := ecdhShared(priv, i.gy)
		if err != nil {
			return nil, i.fail(err)
		}
		i.tr.GIY, i.tr.Salt4e3m = giy, kdf(i.tr.PRK3e2m, 5, th3, hashLen)
		prk4e3m = extract(i.tr.Salt4e3m, giy)
	}
	ead3 := appendEAD(nil, i.cfg.EAD.send(3))
	context3 := slices.Concat(cred.IDCred, bstr(th3), cred.Cred, ead3)
	extAAD := slices.Concat(bstr(th3), cred.Cred, ead3)
	mac3, sig3, err := signatureOrMAC(i.p, i.cfg.Method.initiatorSigns(), cred, prk4e3m, 6, context3, extAAD)
	if err != nil {
		return nil, i.fail(err)
	}
	pt3 := appendIDCredWire(nil, cred.IDCred)
	pt3 = appendBstr(pt3, sig3)
	pt3 = append(pt3, ead3...)
	k3 := kdf(i.tr.PRK3e2m, 3, th3, i.p.keyLen)
	iv3 := kdf(i.tr.PRK3e2m, 4, th3, i.p.ivLen)
	ct3, err := seal(i.p, k3, iv3, pt3, th3)
	if err != nil {
		return nil, i.fail(err)
	}
	msg3 := bstr(ct3)
	th4 := hash(bstr(th3), pt3, cred.Cred)
	i.prkOut = kdf(prk4e3m, 7, th4, hashLen)
	i.prkExporter = kdf(i.prkOut, 10, nil, hashLen)
	i.tr.Context3, i.tr.SignatureOrMAC3, i.tr.Ciphertext3, i.tr.PRKExporter = context3, sig3, ct3, i.prkExporter
	i.tr.Message3, i.tr.TH3, i.tr.PRK4e3m, i.tr.MAC3, i.tr.Plaintext3, i.tr.K3, i.tr.IV3, i.tr.TH4 = msg3, th3, prk4e3m, mac3, pt3, k3, iv3, th4
	i.x = nil // forward secrecy: the ephemeral key is no longer needed
	i.state = iSentM3
	return slices.Clone(msg3), nil
}

// ProcessMessage4 processes message_4 (RFC 9528 section 5.5), which gives the Initiator key confirmation,
// or an error message in its place.
func (i *Initiator) ProcessMessage4(msg []byte) error {
	if i.state != iSentM3 {
		return fmt.Errorf("%w: message_4 before message_3 or twice", ErrState)
	}
	if isErrorMessage(msg) {
		em, err := ParseError(msg)
		if err != nil {
			return i.fail(err)
		}
		return i.fail(&PeerError{Message: em})
	}
	ct, err := parseCiphertext(msg, "message_4")
	if err != nil {
		return i.fail(err)
	}
	k4 := kdf(i.tr.PRK4e3m, 8, i.tr.TH4, i.p.keyLen)
	iv4 := kdf(i.tr.PRK4e3m, 9, i.tr.TH4, i.p.ivLen)
	pt, err := open(i.p, k4, iv4, ct, i.tr.TH4, "CIPHERTEXT_4")
	if err != nil {
		return i.fail(err)
	}
	d := newDecoder(pt)
	items, _ := d.ead("EAD_4")
	d.end("PLAINTEXT_4")
	if d.err != nil {
		return i.fail(d.err)
	}
	if err := i.cfg.EAD.receive(4, items); err != nil {
		return i.fail(err)
	}
	i.tr.Message4, i.tr.Ciphertext4, i.tr.K4, i.tr.IV4 = slices.Clone(msg), ct, k4, iv4
	i.state = iDone
	return nil
}

// Complete reports whether the Initiator has keys (message_3 sent).
func (i *Initiator) Complete() bool { return i.state == iSentM3 || i.state == iDone }

// Transcript returns the session's intermediate values. It holds secrets.
func (i *Initiator) Transcript() Transcript { return i.tr }
