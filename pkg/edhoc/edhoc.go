package edhoc

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"slices"
)

// Method is the EDHOC authentication method (RFC 9528 section 3.2).
type Method int

// The four methods: who authenticates with a signature key and who with a static DH key.
const (
	MethodSigSig Method = 0 // Initiator signature, Responder signature
	MethodSigDH  Method = 1 // Initiator signature, Responder static DH
	MethodDHSig  Method = 2 // Initiator static DH, Responder signature
	MethodDHDH   Method = 3 // Initiator static DH, Responder static DH
)

func (m Method) initiatorSigns() bool { return m == MethodSigSig || m == MethodSigDH }
func (m Method) responderSigns() bool { return m == MethodSigSig || m == MethodDHSig }

// maxMessage bounds every message this package parses, far above any real EDHOC message (an x5chain of
// Keyward certificates is under 2 KiB) and below what a constrained transport carries.
const maxMessage = 8192

// Config configures an Initiator or a Responder.
type Config struct {
	// Method is the Initiator's authentication method. A Responder accepts the methods in Methods.
	Method Method
	// Methods are the methods a Responder accepts; nil accepts every method its credential can serve.
	Methods []Method
	// Suites are the Initiator's cipher suites in order of preference, or the Responder's supported ones.
	Suites []Suite
	// Selected is the suite the Initiator selects; it must be in Suites. Zero value with Suites[0] != 0
	// means Suites[0]; use SelectSuite after an error with code 2.
	Selected *Suite
	// Credential is this endpoint's own credential.
	Credential *Credential
	// Verifier resolves and checks the peer's credential.
	Verifier CredentialVerifier
	// ConnectionID is C_I for an Initiator (random if nil); a Responder chooses C_R per session.
	ConnectionID []byte
	// EAD carries external authorization data.
	EAD EADHooks
}

// keys are the results of a completed session.
type keys struct {
	prkOut      []byte
	prkExporter []byte
	suite       Suite
	cI, cR      []byte
	initiator   bool
	peer        *PeerCredential
}

// PRKOut returns PRK_out (RFC 9528 section 4.1.3), the session's output keying material.
func (k *keys) PRKOut() []byte { return slices.Clone(k.prkOut) }

// Peer returns the peer's verified credential.
func (k *keys) Peer() *PeerCredential { return k.peer }

// Suite returns the selected cipher suite.
func (k *keys) Suite() Suite { return k.suite }

// ConnectionIDs returns C_I and C_R.
func (k *keys) ConnectionIDs() (cI, cR []byte) { return slices.Clone(k.cI), slices.Clone(k.cR) }

// Exporter is EDHOC_Exporter (RFC 9528 section 4.2.1): EDHOC_KDF(PRK_exporter, label, context, length).
func (k *keys) Exporter(label uint16, context []byte, length int) ([]byte, error) {
	if k.prkExporter == nil {
		return nil, fmt.Errorf("%w: the session is not complete", ErrState)
	}
	if length <= 0 || length > 255*hashLen {
		return nil, fmt.Errorf("%w: exporter length %d (1 to %d)", ErrConfig, length, 255*hashLen)
	}
	return kdf(k.prkExporter, int64(label), context, length), nil
}

// KeyUpdate derives a new PRK_out and PRK_exporter from the current ones and context (RFC 9528 appendix
// H): both endpoints must call it with the same context, and the old keys are gone.
func (k *keys) KeyUpdate(context []byte) error {
	if k.prkOut == nil {
		return fmt.Errorf("%w: the session is not complete", ErrState)
	}
	k.prkOut = kdf(k.prkOut, 11, context, hashLen)
	k.prkExporter = kdf(k.prkOut, 10, nil, hashLen)
	return nil
}

// OSCORE is an OSCORE security context's input parameters (RFC 8613 section 3.2) derived from EDHOC
// (RFC 9528 appendix A.1).
type OSCORE struct {
	MasterSecret []byte
	MasterSalt   []byte
	SenderID     []byte
	RecipientID  []byte
	// AEAD and Hash are the COSE algorithms of the suite's application AEAD and hash.
	AEAD, Hash int
}

// OSCORE derives the OSCORE Master Secret (exporter label 0) and Master Salt (label 1, 8 bytes); the
// Initiator's Sender ID is C_R and the Responder's is C_I (RFC 9528 appendix A.1).
func (k *keys) OSCORE() (*OSCORE, error) {
	p, err := k.suite.params()
	if err != nil {
		return nil, err
	}
	if slices.Equal(k.cI, k.cR) {
		return nil, fmt.Errorf("%w: C_I and C_R are equal, which would give both ends the same OSCORE Recipient ID (RFC 9528 section 3.3.3)", ErrConfig)
	}
	secret, err := k.Exporter(0, nil, p.keyLen)
	if err != nil {
		return nil, err
	}
	salt, _ := k.Exporter(1, nil, 8)
	o := &OSCORE{MasterSecret: secret, MasterSalt: salt, AEAD: p.aead, Hash: p.appHashAlg}
	if k.initiator {
		o.SenderID, o.RecipientID = slices.Clone(k.cR), slices.Clone(k.cI)
	} else {
		o.SenderID, o.RecipientID = slices.Clone(k.cI), slices.Clone(k.cR)
	}
	return o, nil
}

// Transcript holds the intermediate values of a session, for tests against RFC 9529 and for debugging
// a peer. It holds secrets: never log it.
type Transcript struct {
	Message1, Message2, Message3, Message4 []byte
	TH2, TH3, TH4                          []byte
	GXY, GRX, GIY                          []byte // ECDH outputs; GRX and GIY only for static DH
	Salt3e2m, Salt4e3m                     []byte // only for static DH
	PRK2e, PRK3e2m, PRK4e3m, PRKExporter   []byte
	Context2, Context3                     []byte
	Keystream2, MAC2, MAC3                 []byte
	SignatureOrMAC2, SignatureOrMAC3       []byte
	Plaintext2, Plaintext3                 []byte
	Ciphertext2, Ciphertext3, Ciphertext4  []byte
	K3, IV3, K4, IV4                       []byte
}

// randomID returns a fresh connection identifier: one byte, sent as a one-byte integer when it is one.
func randomID(avoid func([]byte) bool) ([]byte, error) {
	for range 64 {
		b := make([]byte, 1)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if !avoid(b) {
			return b, nil
		}
	}
	for {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if !avoid(b) {
			return b, nil
		}
	}
}

func checkID(id []byte, what string) error {
	if len(id) > 32 {
		return fmt.Errorf("%w: %s of %d bytes (at most 32)", ErrConfig, what, len(id))
	}
	return nil
}

// encrypt and decrypt are the AEAD of messages 3 and 4 with A = ["Encrypt0", h”, TH] (RFC 9528 5.4.2).
func encrypt0AAD(th []byte) []byte {
	b := []byte{0x83}
	b = appendTstr(b, "Encrypt0")
	b = appendBstr(b, nil)
	return appendBstr(b, th)
}

func seal(p *suiteParams, key, iv, plaintext, th []byte) ([]byte, error) {
	a, err := p.newAEAD(key)
	if err != nil {
		return nil, err
	}
	return a.Seal(nil, iv, plaintext, encrypt0AAD(th)), nil
}

func open(p *suiteParams, key, iv, ciphertext, th []byte, what string) ([]byte, error) {
	a, err := p.newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < a.Overhead() {
		return nil, fmt.Errorf("%w: %s of %d bytes is shorter than the AEAD tag", ErrMalformed, what, len(ciphertext))
	}
	pt, err := a.Open(nil, iv, ciphertext, encrypt0AAD(th))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrDecrypt, what)
	}
	return pt, nil
}

// message1 is a parsed message_1.
type message1 struct {
	method Method
	suites []Suite
	gx     []byte
	cI     []byte
	ead    []EAD
}

func parseMessage1(b []byte) (*message1, error) {
	if len(b) > maxMessage {
		return nil, fmt.Errorf("%w: message_1 of %d bytes exceeds %d", ErrMalformed, len(b), maxMessage)
	}
	d := newDecoder(b)
	m := &message1{}
	method := d.integer("METHOD")
	if d.err == nil && (method < 0 || method > 3) {
		d.fail("METHOD %d (0 to 3)", method)
	}
	m.method = Method(method)
	m.suites = d.suites("SUITES_I")
	m.gx = d.bytes("G_X")
	m.cI = d.id("C_I")
	m.ead, _ = d.ead("EAD_1")
	d.end("message_1")
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

// parseMessage2 returns G_Y and CIPHERTEXT_2 of message_2 = bstr(G_Y || CIPHERTEXT_2).
func parseMessage2(b []byte, keyLen int) (gy, ct []byte, err error) {
	if len(b) > maxMessage {
		return nil, nil, fmt.Errorf("%w: message_2 of %d bytes exceeds %d", ErrMalformed, len(b), maxMessage)
	}
	d := newDecoder(b)
	v := d.bytes("G_Y_CIPHERTEXT_2")
	d.end("message_2")
	if d.err != nil {
		return nil, nil, d.err
	}
	// The shortest PLAINTEXT_2: C_R (1), ID_CRED_R (1), an 8-byte MAC (9).
	if len(v) < keyLen+11 {
		return nil, nil, fmt.Errorf("%w: G_Y_CIPHERTEXT_2 of %d bytes is too short", ErrMalformed, len(v))
	}
	return v[:keyLen], v[keyLen:], nil
}

// plaintext2 is a parsed PLAINTEXT_2.
type plaintext2 struct {
	cR     []byte // the identifier's bytes
	cRWire []byte // its encoding
	idCred []byte // the ID_CRED_R map
	sig    []byte
	ead    []EAD
	eadRaw []byte
}

func parsePlaintext2(b []byte) (*plaintext2, error) {
	d := newDecoder(b)
	p := &plaintext2{}
	start := d.off
	p.cR = d.id("C_R")
	p.cRWire = d.b[start:d.off]
	p.idCred = d.idCredWire("ID_CRED_R")
	p.sig = d.bytes("Signature_or_MAC_2")
	if d.err == nil && len(p.sig) < 8 {
		d.fail("Signature_or_MAC_2 of %d bytes (at least 8, RFC 9528 section 9.3)", len(p.sig))
	}
	p.ead, p.eadRaw = d.ead("EAD_2")
	d.end("PLAINTEXT_2")
	if d.err != nil {
		return nil, d.err
	}
	return p, nil
}

// plaintext3 is a parsed PLAINTEXT_3.
type plaintext3 struct {
	idCred []byte
	sig    []byte
	ead    []EAD
	eadRaw []byte
}

func parsePlaintext3(b []byte) (*plaintext3, error) {
	d := newDecoder(b)
	p := &plaintext3{}
	p.idCred = d.idCredWire("ID_CRED_I")
	p.sig = d.bytes("Signature_or_MAC_3")
	if d.err == nil && len(p.sig) < 8 {
		d.fail("Signature_or_MAC_3 of %d bytes (at least 8, RFC 9528 section 9.3)", len(p.sig))
	}
	p.ead, p.eadRaw = d.ead("EAD_3")
	d.end("PLAINTEXT_3")
	if d.err != nil {
		return nil, d.err
	}
	return p, nil
}

// parseCiphertext reads message_3 or message_4: one byte string.
func parseCiphertext(b []byte, what string) ([]byte, error) {
	if len(b) > maxMessage {
		return nil, fmt.Errorf("%w: %s of %d bytes exceeds %d", ErrMalformed, what, len(b), maxMessage)
	}
	d := newDecoder(b)
	v := d.bytes(what)
	d.end(what)
	if d.err != nil {
		return nil, d.err
	}
	return v, nil
}

// isErrorMessage tells an error message from message_2, 3 or 4, which are a single byte string: an error
// starts with an integer (RFC 9528 section 6).
func isErrorMessage(b []byte) bool {
	return len(b) > 0 && (b[0]>>5 == majorUint || b[0]>>5 == majorNeg)
}

// macAndSig computes MAC_x and Signature_or_MAC_x for the sender (RFC 9528 sections 5.3.2 and 5.4.2).
// context is the CBOR sequence the MAC covers; extAAD is << TH_x, CRED_x, ? EAD_x >>.
func signatureOrMAC(p *suiteParams, signs bool, key *Credential, prk []byte, label int64, context, extAAD []byte) (mac, sigOrMAC []byte, err error) {
	macLen := p.macLen
	if signs {
		macLen = hashLen
	}
	mac = kdf(prk, label, context, macLen)
	if !signs {
		return mac, mac, nil
	}
	s, err := checkSigningKey(key.Key, p)
	if err != nil {
		return nil, nil, err
	}
	sig, err := sign(s, p, sigStructure(key.IDCred, extAAD, mac))
	if err != nil {
		return nil, nil, fmt.Errorf("edhoc: sign: %w", err)
	}
	return mac, sig, nil
}

// checkSignatureOrMAC verifies the peer's Signature_or_MAC_x.
func checkSignatureOrMAC(p *suiteParams, signs bool, peer *PeerCredential, idCred, prk []byte, label int64, context, extAAD, got []byte) ([]byte, error) {
	macLen := p.macLen
	if signs {
		macLen = hashLen
	}
	mac := kdf(prk, label, context, macLen)
	if !signs {
		if !macEqual(mac, got) {
			return nil, fmt.Errorf("%w: MAC does not verify", ErrAuthentication)
		}
		return mac, nil
	}
	if err := verify(peer.PublicKey, p, sigStructure(idCred, extAAD, mac), got); err != nil {
		return nil, err
	}
	return mac, nil
}

// checkLocal checks that cred can serve the role in method m with suite p.
func checkLocal(cred *Credential, signs bool, p *suiteParams) error {
	if cred == nil || cred.Key == nil || len(cred.IDCred) == 0 || len(cred.Cred) == 0 {
		return fmt.Errorf("%w: no credential (IDCred, Cred and Key are required)", ErrConfig)
	}
	if _, err := parseIDCred(cred.IDCred); err != nil {
		return fmt.Errorf("%w: own ID_CRED: %v", ErrConfig, err)
	}
	if signs {
		_, err := checkSigningKey(cred.Key, p)
		return err
	}
	_, err := dhPrivate(cred.Key, p.curve)
	return err
}

// newEphemeral makes an ephemeral key pair on the suite's curve from crypto/rand. For P-256 only x
// travels; either y gives the same ECDH x-coordinate (RFC 9528 section 3.7).
func newEphemeral(curve ecdh.Curve) (*ecdh.PrivateKey, error) {
	return curve.GenerateKey(rand.Reader)
}
