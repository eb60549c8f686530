package edhoc

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Responder answers EDHOC sessions. It keeps the sessions in progress by C_R and a record of every
// message_1 it processed within ReplayWindow, so that a retransmitted message_1 of a session in progress
// gets the same message_2 again (RFC 9528 appendix G: never a second instance) and any other repetition
// is refused with ErrReplay. It is safe for concurrent use.
type Responder struct {
	cfg Config
	// ReplayWindow is how long a processed message_1 is remembered; default 10 minutes. A Responder
	// restarted or a message_1 older than the window is answered again, but its session cannot complete
	// without the Initiator's ephemeral private key: EDHOC's own protection.
	ReplayWindow time.Duration
	// MaxSessions bounds the sessions in progress and the replay record; default 4096. Beyond it a new
	// message_1 is refused until older entries expire.
	MaxSessions int
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	sessions map[string]*ResponderSession // by C_R
	seen     map[[32]byte]*seenEntry      // by H(message_1)

	// Test hooks for RFC 9529: the ephemeral key and C_R of the next session.
	nextY  *ecdh.PrivateKey
	nextCR []byte
}

type seenEntry struct {
	at      time.Time
	session *ResponderSession
	err     error // why the message_1 was refused, so a retransmission gets the same answer
}

// NewResponder checks cfg and returns a Responder.
func NewResponder(cfg Config) (*Responder, error) {
	if len(cfg.Suites) == 0 {
		return nil, fmt.Errorf("%w: no supported cipher suites", ErrConfig)
	}
	for _, s := range cfg.Suites {
		if _, err := s.params(); err != nil {
			return nil, err
		}
	}
	if cfg.Verifier == nil {
		return nil, fmt.Errorf("%w: no credential verifier for the Initiator's credential", ErrConfig)
	}
	if cfg.Credential == nil {
		return nil, fmt.Errorf("%w: no credential", ErrConfig)
	}
	if _, err := parseIDCred(cfg.Credential.IDCred); err != nil {
		return nil, fmt.Errorf("%w: own ID_CRED: %v", ErrConfig, err)
	}
	return &Responder{cfg: cfg, sessions: map[string]*ResponderSession{}, seen: map[[32]byte]*seenEntry{}}, nil
}

func (r *Responder) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Responder) window() time.Duration {
	if r.ReplayWindow > 0 {
		return r.ReplayWindow
	}
	return 10 * time.Minute
}

func (r *Responder) max() int {
	if r.MaxSessions > 0 {
		return r.MaxSessions
	}
	return 4096
}

// prune drops replay records and sessions older than the window. Called with mu held.
func (r *Responder) prune(now time.Time) {
	for k, e := range r.seen {
		if now.Sub(e.at) > r.window() {
			delete(r.seen, k)
			if e.session != nil && r.sessions[string(e.session.cR)] == e.session {
				delete(r.sessions, string(e.session.cR))
			}
		}
	}
}

// ResponderSession is the Responder's side of one session after message_1.
type ResponderSession struct {
	keys
	r      *Responder
	p      *suiteParams
	method Method
	y      *ecdh.PrivateKey
	gx     *ecdh.PublicKey
	state  int
	tr     Transcript
	reply4 []byte
}

const (
	rWaitM3 = iota
	rDone
	rAborted
)

// ProcessMessage1 processes message_1 (RFC 9528 section 5.2.3) and returns the new session and
// message_2. A refused cipher suite returns a *SuiteError (ErrWrongSuite); send ErrorReply(err). A
// retransmission of a message_1 whose session awaits message_3 returns that session and the same
// message_2; any other message_1 seen within ReplayWindow is refused with ErrReplay.
func (r *Responder) ProcessMessage1(msg []byte) (*ResponderSession, []byte, error) {
	m1, err := parseMessage1(msg)
	if err != nil {
		return nil, nil, err
	}
	key := sha256.Sum256(msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.prune(now)
	if e := r.seen[key]; e != nil {
		if e.session != nil && e.session.state == rWaitM3 {
			return e.session, slices.Clone(e.session.tr.Message2), nil
		}
		if e.err != nil {
			// A retransmission of a refused message_1: the same refusal, not a second processing.
			return nil, nil, e.err
		}
		return nil, nil, fmt.Errorf("%w: message_1 was processed %s ago", ErrReplay, now.Sub(e.at).Round(time.Millisecond))
	}
	if len(r.seen) >= r.max() {
		return nil, nil, fmt.Errorf("edhoc: %d sessions in progress or remembered; refusing message_1 until some expire", len(r.seen))
	}
	// Record the message before anything can fail, so a refused message_1 cannot be replayed either.
	entry := &seenEntry{at: now}
	r.seen[key] = entry
	s, err := r.respond(m1, msg)
	if err != nil {
		entry.err = err
		return nil, nil, err
	}
	entry.session = s
	r.sessions[string(s.cR)] = s
	return s, slices.Clone(s.tr.Message2), nil
}

// checkSuites implements the Responder's negotiation rule (RFC 9528 sections 5.2.3 and 6.3.2): accept
// only if the selected suite, the last of SUITES_I, is the first one in SUITES_I that it supports.
func (r *Responder) checkSuites(suitesI []Suite) (Suite, error) {
	selected := suitesI[len(suitesI)-1]
	for _, s := range suitesI {
		if slices.Contains(r.cfg.Suites, s) {
			if s == selected {
				return s, nil
			}
			return 0, &SuiteError{Selected: selected, Supported: []Suite{s}}
		}
	}
	return 0, &SuiteError{Selected: selected, Supported: slices.Clone(r.cfg.Suites)}
}

func (r *Responder) respond(m1 *message1, msg []byte) (*ResponderSession, error) {
	suite, err := r.checkSuites(m1.suites)
	if err != nil {
		return nil, err
	}
	if r.cfg.Methods != nil && !slices.Contains(r.cfg.Methods, m1.method) {
		return nil, fmt.Errorf("%w: method %d is not accepted here (accepted: %v)", ErrUnsupportedSuite, int(m1.method), r.cfg.Methods)
	}
	p, _ := suite.params()
	gx, err := publicKey(p.curve, m1.gx)
	if err != nil {
		return nil, err
	}
	if err := r.cfg.EAD.receive(1, m1.ead); err != nil {
		return nil, err
	}
	s := &ResponderSession{r: r, p: p, method: m1.method, gx: gx}
	s.suite, s.cI = suite, m1.cI
	s.y, r.nextY = r.nextY, nil
	if s.y == nil {
		if s.y, err = newEphemeral(p.curve); err != nil {
			return nil, err
		}
	}
	// The shared secret first: a low-order X25519 point is refused here (RFC 9528 section 9.2).
	gxy, err := ecdhShared(s.y, gx)
	if err != nil {
		return nil, err
	}
	cred := r.cfg.Credential
	if err := checkLocal(cred, m1.method.responderSigns(), p); err != nil {
		return nil, fmt.Errorf("%w: method %d: %v", ErrUnsupportedSuite, int(m1.method), err)
	}
	if r.nextCR != nil {
		s.cR, r.nextCR = r.nextCR, nil
	} else if s.cR, err = randomID(func(id []byte) bool { return bytes.Equal(id, m1.cI) || r.sessions[string(id)] != nil }); err != nil {
		return nil, err
	}
	gyRaw := compact(s.y.PublicKey())
	th2 := hash(bstr(gyRaw), bstr(hash(msg)))
	prk2e := extract(th2, gxy)
	prk3e2m := prk2e
	if !m1.method.responderSigns() {
		priv, err := dhPrivate(cred.Key, p.curve)
		if err != nil {
			return nil, err
		}
		grx, err := ecdhShared(priv, gx)
		if err != nil {
			return nil, err
		}
		s.tr.GRX, s.tr.Salt3e2m = grx, kdf(prk2e, 1, th2, hashLen)
		prk3e2m = extract(s.tr.Salt3e2m, grx)
	}
	cRWire := appendID(nil, s.cR)
	ead2 := appendEAD(nil, r.cfg.EAD.send(2))
	context2 := slices.Concat(cRWire, cred.IDCred, bstr(th2), cred.Cred, ead2)
	extAAD := slices.Concat(bstr(th2), cred.Cred, ead2)
	mac2, sig2, err := signatureOrMAC(p, m1.method.responderSigns(), cred, prk3e2m, 2, context2, extAAD)
	if err != nil {
		return nil, err
	}
	pt2 := slices.Concat(cRWire, appendIDCredWire(nil, cred.IDCred), bstr(sig2), ead2)
	ks := kdf(prk2e, 0, th2, len(pt2))
	ct := make([]byte, len(pt2))
	for j := range pt2 {
		ct[j] = pt2[j] ^ ks[j]
	}
	msg2 := bstr(slices.Concat(gyRaw, ct))
	if len(msg2) > maxMessage {
		return nil, fmt.Errorf("%w: message_2 would be %d bytes", ErrConfig, len(msg2))
	}
	s.tr.Message1, s.tr.Message2, s.tr.TH2, s.tr.GXY, s.tr.PRK2e, s.tr.PRK3e2m = slices.Clone(msg), msg2, th2, gxy, prk2e, prk3e2m
	s.tr.Context2, s.tr.Keystream2, s.tr.MAC2, s.tr.SignatureOrMAC2, s.tr.Plaintext2, s.tr.Ciphertext2 = context2, ks, mac2, sig2, pt2, ct
	return s, nil
}

// ProcessMessage3 processes message_3 (RFC 9528 section 5.4.3): it decrypts PLAINTEXT_3, hands EAD_3
// to the hooks, resolves and checks ID_CRED_I, and verifies Signature_or_MAC_3. On success the session
// has its keys. Any failure, including a message_3 of another session (ErrDecrypt), ends the session.
// A retransmission of the message_3 that completed the session succeeds again without reprocessing.
func (s *ResponderSession) ProcessMessage3(msg []byte) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	switch s.state {
	case rDone:
		if bytes.Equal(msg, s.tr.Message3) {
			return nil
		}
		return fmt.Errorf("%w: the session is complete", ErrReplay)
	case rAborted:
		return fmt.Errorf("%w: the session was aborted", ErrState)
	}
	if err := s.message3(msg); err != nil {
		s.state = rAborted
		s.y = nil
		delete(s.r.sessions, string(s.cR))
		return err
	}
	s.state = rDone
	s.y = nil
	return nil
}

func (s *ResponderSession) message3(msg []byte) error {
	if isErrorMessage(msg) {
		em, err := ParseError(msg)
		if err != nil {
			return err
		}
		return &PeerError{Message: em}
	}
	ct, err := parseCiphertext(msg, "message_3")
	if err != nil {
		return err
	}
	cred := s.r.cfg.Credential
	th3 := hash(bstr(s.tr.TH2), s.tr.Plaintext2, cred.Cred)
	k3 := kdf(s.tr.PRK3e2m, 3, th3, s.p.keyLen)
	iv3 := kdf(s.tr.PRK3e2m, 4, th3, s.p.ivLen)
	pt3, err := open(s.p, k3, iv3, ct, th3, "CIPHERTEXT_3")
	if err != nil {
		return err
	}
	p3, err := parsePlaintext3(pt3)
	if err != nil {
		return err
	}
	if err := s.r.cfg.EAD.receive(3, p3.ead); err != nil {
		return err
	}
	id, err := parseIDCred(p3.idCred)
	if err != nil {
		return err
	}
	id.StaticDH = !s.method.initiatorSigns()
	peer, err := s.r.cfg.Verifier.VerifyCredential(id)
	if err != nil {
		return err
	}
	prk4e3m := s.tr.PRK3e2m
	if !s.method.initiatorSigns() {
		gi, err := dhPublic(peer.PublicKey, s.p.curve)
		if err != nil {
			return err
		}
		giy, err := ecdhShared(s.y, gi)
		if err != nil {
			return err
		}
		s.tr.GIY, s.tr.Salt4e3m = giy, kdf(s.tr.PRK3e2m, 5, th3, hashLen)
		prk4e3m = extract(s.tr.Salt4e3m, giy)
	}
	context3 := slices.Concat(p3.idCred, bstr(th3), peer.Cred, p3.eadRaw)
	extAAD := slices.Concat(bstr(th3), peer.Cred, p3.eadRaw)
	mac3, err := checkSignatureOrMAC(s.p, s.method.initiatorSigns(), peer, p3.idCred, prk4e3m, 6, context3, extAAD, p3.sig)
	if err != nil {
		return err
	}
	th4 := hash(bstr(th3), pt3, peer.Cred)
	s.prkOut = kdf(prk4e3m, 7, th4, hashLen)
	s.prkExporter = kdf(s.prkOut, 10, nil, hashLen)
	s.peer = peer
	s.tr.Context3, s.tr.SignatureOrMAC3, s.tr.Ciphertext3, s.tr.PRKExporter = context3, p3.sig, ct, s.prkExporter
	s.tr.Message3, s.tr.TH3, s.tr.PRK4e3m, s.tr.MAC3, s.tr.Plaintext3, s.tr.K3, s.tr.IV3, s.tr.TH4 = slices.Clone(msg), th3, prk4e3m, mac3, pt3, k3, iv3, th4
	return nil
}

// Message4 returns message_4 (RFC 9528 section 5.5) for a completed session, the same bytes on every
// call.
func (s *ResponderSession) Message4() ([]byte, error) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.state != rDone {
		return nil, fmt.Errorf("%w: message_4 before message_3 was verified", ErrState)
	}
	if s.reply4 == nil {
		k4 := kdf(s.tr.PRK4e3m, 8, s.tr.TH4, s.p.keyLen)
		iv4 := kdf(s.tr.PRK4e3m, 9, s.tr.TH4, s.p.ivLen)
		ct, err := seal(s.p, k4, iv4, appendEAD(nil, s.r.cfg.EAD.send(4)), s.tr.TH4)
		if err != nil {
			return nil, err
		}
		s.reply4 = bstr(ct)
		s.tr.Message4, s.tr.Ciphertext4, s.tr.K4, s.tr.IV4 = s.reply4, ct, k4, iv4
	}
	return slices.Clone(s.reply4), nil
}

// Complete reports whether the session has its keys.
func (s *ResponderSession) Complete() bool {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	return s.state == rDone
}

// Transcript returns the session's intermediate values. It holds secrets.
func (s *ResponderSession) Transcript() Transcript {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	return s.tr
}

// Session returns the session in progress or complete with connection identifier cR, or nil.
func (r *Responder) Session(cR []byte) *ResponderSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions[string(cR)]
}

// Handle serves one request of the CoAP transport of RFC 9528 appendix A.2: a payload of CBOR true
// followed by message_1 starts a session and is answered with message_2; a payload of C_R followed by
// message_3 is answered with message_4 (withMessage4) or an empty payload. A failure returns the error
// and the EDHOC error message to send in its place (ErrorReply), which carries no secret.
func (r *Responder) Handle(req []byte, withMessage4 bool) (reply []byte, err error) {
	if len(req) == 0 {
		return errorReply(ErrMalformed), fmt.Errorf("%w: empty request", ErrMalformed)
	}
	if req[0] == cborTrue {
		_, m2, err := r.ProcessMessage1(req[1:])
		if err != nil {
			return errorReply(err), err
		}
		return m2, nil
	}
	d := newDecoder(req)
	cR := d.id("C_R")
	if d.err != nil {
		return errorReply(d.err), d.err
	}
	rest := req[d.off:]
	s := r.Session(cR)
	if s == nil {
		err := fmt.Errorf("%w: C_R h'%x'", ErrUnknownConnection, cR)
		return errorReply(err), err
	}
	if err := s.ProcessMessage3(rest); err != nil {
		return errorReply(err), err
	}
	if !withMessage4 {
		return []byte{}, nil
	}
	m4, err := s.Message4()
	if err != nil {
		return errorReply(err), err
	}
	return m4, nil
}

// ErrorReply returns the EDHOC error message (RFC 9528 section 6) to send for an error this package
// returned: code 2 with SUITES_R for a refused suite, code 3 for an unknown credential, code 1 with a
// short fixed text otherwise. It never carries a secret or the details of a refusal.
func ErrorReply(err error) []byte { return errorReply(err) }

// Message1Request and Message3Request frame messages for the transport of RFC 9528 appendix A.2.
func Message1Request(m1 []byte) []byte { return append([]byte{cborTrue}, m1...) }

// Message3Request prepends C_R to message_3.
func Message3Request(cR, m3 []byte) []byte { return append(appendID(nil, cR), m3...) }
