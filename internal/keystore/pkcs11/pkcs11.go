package pkcs11

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ThalesGroup/crypto11"
	p11 "github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/keystore"
)

var _ keystore.Keystore = (*Store)(nil)

// PINEnv names the environment variable read for the user PIN when the configuration URI has neither pin-value
// nor pin-source.
const PINEnv = "KEYWARD_PKCS11_PIN"

// labelPrefix starts the CKA_LABEL of every key pair Keyward generates.
const labelPrefix = "keyward:"

// idLen is the length of the random CKA_ID of a key pair.
const idLen = 16

// Store is a keystore.Keystore on one PKCS#11 token. It is safe for concurrent use.
type Store struct {
	ctx      *crypto11.Context
	selector URI    // token, serial or slot-id: the one attribute that selects the token, as configured
	module   string // module path, for error messages
	name     string // how errors name the token, e.g. `PKCS#11 token "keyward-prod"`

	mu    sync.RWMutex
	cache map[string]*entry // by hex CKA_ID; found or generated key pairs

	// pin logs in raw's sessions should the token not be logged in already (see wrap.go). crypto11 keeps its
	// own copy in its Config for the life of the Context, so holding it here exposes nothing more.
	pin string
	raw rawModule // this Store's own handle on the module, for C_WrapKey and secret keys (wrap.go)

	closeOnce sync.Once
}

// entry is a key pair known to the Store, its purpose read from its label.
type entry struct {
	id        []byte
	label     string
	purpose   keystore.Purpose
	signer    crypto11.Signer
	destroyed atomic.Bool
}

// Open loads the PKCS#11 module named by configURI, finds the token it selects (token=, serial= or slot-id=,
// exactly one) and logs in as the user. The PIN comes from pin-value, else pin-source (a "file:" URI or an
// absolute path; one trailing newline is trimmed), else the environment variable KEYWARD_PKCS11_PIN.
//
// A missing module, an unknown token or a refused PIN yield errors wrapping keystore.ErrBackend; no error ever
// contains the PIN. Close the Store when done: it holds sessions and keeps the module loaded.
//
// crypto11 accepts CKR_USER_ALREADY_LOGGED_IN, and PKCS#11 login state is per process and token: while another
// Store of this process is open on the same token, Open does not check the PIN again.
func Open(configURI string) (*Store, error) {
	u, err := ParseURI(configURI)
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 configuration URI: %w", err)
	}
	sel := URI{Token: u.Token, Serial: u.Serial, SlotID: u.SlotID}
	n := 0
	for _, set := range []bool{u.Token != "", u.Serial != "", u.SlotID != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("PKCS#11 configuration URI must select the token with exactly one of token=, serial= or slot-id=")
	}
	if u.Object != "" || u.ID != nil || u.Type != "" {
		return nil, errors.New("PKCS#11 configuration URI selects a token, not an object: remove object=, id= and type=")
	}
	if u.ModulePath == "" {
		return nil, errors.New("PKCS#11 configuration URI needs module-path=, e.g. module-path=/usr/lib/softhsm/libsofthsm2.so")
	}
	pin, err := readPIN(u)
	if err != nil {
		return nil, err
	}

	s := &Store{selector: sel, module: u.ModulePath, name: describe(sel), cache: map[string]*entry{}, pin: pin}
	if _, err := os.Stat(u.ModulePath); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, backendErr(fmt.Sprintf("cannot load PKCS#11 module %s", u.ModulePath), err)
	}

	cfg := &crypto11.Config{Path: u.ModulePath, TokenLabel: sel.Token, TokenSerial: sel.Serial, Pin: pin}
	if sel.SlotID != nil {
		if *sel.SlotID > uint64(^uint(0)>>1) {
			return nil, fmt.Errorf("PKCS#11 configuration URI: slot-id %d is out of range", *sel.SlotID)
		}
		slot := int(*sel.SlotID)
		cfg.SlotNumber = &slot
	}
	// C_GetSlotList is called twice, for the count and then the list; a token initialised in between (a new
	// SoftHSM2 slot appears) makes the second call fail with CKR_BUFFER_TOO_SMALL, and PKCS#11 (v2.40 5.5)
	// expects the caller to ask again.
	for attempt := 0; ; attempt++ {
		s.ctx, err = crypto11.Configure(cfg)
		if err == nil || attempt == 4 || !strings.Contains(err.Error(), "CKR_BUFFER_TOO_SMALL") {
			break
		}
	}
	if err != nil {
		return nil, s.classifyOpenErr(err)
	}
	return s, nil
}

// classifyOpenErr turns a crypto11.Configure failure into an error that says what to fix.
func (s *Store) classifyOpenErr(err error) error {
	var code p11.Error
	msg := err.Error()
	switch {
	case strings.HasSuffix(msg, "failed to open module"):
		// miekg/pkcs11 reports no dlopen detail.
		return backendErr(fmt.Sprintf("cannot load PKCS#11 module %s (not a shared library for this platform, or a library it needs is missing)", s.module), err)
	case strings.HasPrefix(msg, "failed to create module context"):
		return backendErr(fmt.Sprintf("cannot load PKCS#11 module %s", s.module), err)
	case errors.As(err, &code) && (code == p11.CKR_PIN_INCORRECT || code == p11.CKR_PIN_LEN_RANGE):
		return backendErr(fmt.Sprintf("%s refused the PIN; check pin-value, pin-source or %s", s.name, PINEnv), err)
	case errors.As(err, &code) && code == p11.CKR_PIN_LOCKED:
		return backendErr(fmt.Sprintf("%s has locked the user PIN; the security officer must reset it", s.name), err)
	case msg == "could not find PKCS#11 token":
		return backendErr(fmt.Sprintf("%s not found in module %s (list tokens with: pkcs11-tool --module %s -L)",
			s.name, s.module, s.module), err)
	}
	return backendErr(fmt.Sprintf("open %s with module %s", s.name, s.module), err)
}

// readPIN returns the user PIN from the URI or the environment.
func readPIN(u *URI) (string, error) {
	switch {
	case u.PINValue != "" && u.PINSource != "":
		return "", errors.New("PKCS#11 configuration URI has both pin-value and pin-source; keep one")
	case u.PINValue != "":
		return u.PINValue, nil
	case u.PINSource != "":
		path := u.PINSource
		switch {
		case strings.HasPrefix(path, "file://"):
			path = strings.TrimPrefix(path, "file://") // file:///etc/pin: empty authority
		case strings.HasPrefix(path, "file:"):
			path = strings.TrimPrefix(path, "file:")
		}
		if !strings.HasPrefix(path, "/") {
			return "", fmt.Errorf("PKCS#11 pin-source %q: want a file: URI or an absolute path", u.PINSource)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read PKCS#11 PIN from pin-source: %w", err)
		}
		pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pin == "" {
			return "", fmt.Errorf("PKCS#11 pin-source %s is empty", path)
		}
		return pin, nil
	}
	if pin, ok := os.LookupEnv(PINEnv); ok && pin != "" {
		return pin, nil
	}
	return "", fmt.Errorf("no PKCS#11 PIN: add pin-source=file:/path or pin-value= to the configuration URI, or set %s", PINEnv)
}

// describe names a token selector for messages.
func describe(sel URI) string {
	switch {
	case sel.Token != "":
		return fmt.Sprintf("PKCS#11 token %q", sel.Token)
	case sel.Serial != "":
		return fmt.Sprintf("PKCS#11 token with serial %q", sel.Serial)
	default:
		return fmt.Sprintf("PKCS#11 token in slot %d", *sel.SlotID)
	}
}

// Location reports keystore.LocationPKCS11.
func (s *Store) Location() keystore.Location { return keystore.LocationPKCS11 }

// Handles reports whether uri is a PKCS#11 URI that selects this Store's token the same way its configuration
// does (same token label, serial or slot-id). It accepts key URIs and configuration URIs alike.
func (s *Store) Handles(uri string) bool {
	u, err := ParseURI(uri)
	return err == nil && s.sameToken(u)
}

func (s *Store) sameToken(u *URI) bool {
	if u.Token != s.selector.Token || u.Serial != s.selector.Serial || (u.SlotID == nil) != (s.selector.SlotID == nil) {
		return false
	}
	return u.SlotID == nil || *u.SlotID == *s.selector.SlotID
}

// keyURI formats the reference of the key pair with id and label on this token.
func (s *Store) keyURI(id []byte, label string) string {
	u := s.selector
	u.ID = id
	u.Object = label
	return u.String()
}

// Generate creates a key pair on the token for purpose. ECDSA P-256 and P-384 and RSA 3072 and 4096 are
// generated through crypto11; Ed25519, which crypto11 v1.5.0 lacks, through the raw module handle
// (ed25519.go, CKM_EC_EDWARDS_KEY_PAIR_GEN). The label argument is not recorded on the token: CKA_LABEL
// carries the purpose.
func (s *Store) Generate(ctx context.Context, purpose keystore.Purpose, alg keystore.Algorithm, label string) (keystore.Key, error) {
	return s.generate(ctx, purpose, alg, false)
}

// generate makes a key pair for purpose; exportable selects the template of GenerateWrappable (wrap.go).
func (s *Store) generate(ctx context.Context, purpose keystore.Purpose, alg keystore.Algorithm, exportable bool) (keystore.Key, error) {
	if err := ctx.Err(); err != nil {
		return keystore.Key{}, err
	}
	if !purpose.Valid() {
		return keystore.Key{}, fmt.Errorf("generate key on %s: unknown purpose %q; known: %v", s.name, purpose, keystore.Purposes)
	}
	if purpose.Symmetric() {
		return keystore.Key{}, fmt.Errorf("generate key on %s: %s keys are key-derivation keys; make them with GenerateKDK: %w", s.name, purpose, keystore.ErrWrongPurpose)
	}
	id := make([]byte, idLen)
	if _, err := io.ReadFull(rand.Reader, id); err != nil {
		return keystore.Key{}, fmt.Errorf("generate key id: %w", err)
	}
	objLabel := labelPrefix + string(purpose) + ":" + hex.EncodeToString(id)

	pub, priv, err := attributeSets(id, objLabel, exportable)
	if err != nil {
		return keystore.Key{}, err
	}
	var signer crypto11.Signer
	switch alg {
	case keystore.ECDSAP256:
		signer, err = s.ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P256())
	case keystore.ECDSAP384:
		signer, err = s.ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P384())
	case keystore.RSA3072:
		signer, err = s.ctx.GenerateRSAKeyPairWithAttributes(pub, priv, 3072)
	case keystore.RSA4096:
		signer, err = s.ctx.GenerateRSAKeyPairWithAttributes(pub, priv, 4096)
	case keystore.Ed25519:
		if exportable {
			return keystore.Key{}, fmt.Errorf("generate %s key on %s: an exportable (wrappable) Ed25519 key is not supported; use ecdsa-p256 or ecdsa-p384: %w",
				alg, s.name, errors.ErrUnsupported)
		}
		var ed *edSigner
		if ed, err = s.generateEd25519(id, objLabel); err == nil {
			signer = ed
		}
	default:
		return keystore.Key{}, fmt.Errorf("generate key on %s: unknown key algorithm %q; supported: %v", s.name, alg, keystore.Algorithms)
	}
	if err != nil {
		return keystore.Key{}, backendErr(fmt.Sprintf("generate %s key on %s", alg, s.name), err)
	}
	e := &entry{id: id, label: objLabel, purpose: purpose, signer: signer}
	s.mu.Lock()
	s.cache[hex.EncodeToString(id)] = e
	s.mu.Unlock()
	return keystore.Key{URI: s.keyURI(id, objLabel), Purpose: purpose, Algorithm: alg, Public: signer.Public()}, nil
}

// attributeSets returns the public and private key templates: a token object, sign/verify only, the private
// half sensitive, never extractable and not modifiable (PKCS#11 v2.40 section 4.9, 4.1.2).
//
// exportable is the template of a key made to leave the token, wrapped, for a device (GenerateWrappable): the
// private half is still sensitive, so C_GetAttributeValue never reveals it, but extractable, so C_WrapKey may
// export it (PKCS#11 v2.40 section 4.9, and C_WrapKey in section 5.14); and it may not sign, since the site never
// uses a device's key.
func attributeSets(id []byte, label string, exportable bool) (pub, priv crypto11.AttributeSet, err error) {
	pub, priv = crypto11.NewAttributeSet(), crypto11.NewAttributeSet()
	set := func(a crypto11.AttributeSet, attrs map[crypto11.AttributeType]any) {
		for t, v := range attrs {
			if err == nil {
				err = a.Set(t, v)
			}
		}
	}
	common := map[crypto11.AttributeType]any{
		crypto11.CkaId:         id,
		crypto11.CkaLabel:      []byte(label),
		crypto11.CkaToken:      true,
		crypto11.CkaModifiable: false,
	}
	set(pub, common)
	set(priv, common)
	// A signing key never decrypts, unwraps or derives: crypto11 (for RSA) and SoftHSM2 (for EC) would otherwise
	// default CKA_DECRYPT and CKA_ENCRYPT to true.
	set(pub, map[crypto11.AttributeType]any{crypto11.CkaVerify: true, crypto11.CkaEncrypt: false, crypto11.CkaWrap: false})
	set(priv, map[crypto11.AttributeType]any{
		crypto11.CkaPrivate:     true,
		crypto11.CkaSensitive:   true,
		crypto11.CkaExtractable: exportable,
		crypto11.CkaSign:        !exportable,
		crypto11.CkaDecrypt:     false,
		crypto11.CkaUnwrap:      false,
		crypto11.CkaDerive:      false,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("build PKCS#11 key template: %w", err)
	}
	return pub, priv, nil
}

// Signer returns a signer for the key pair at uri, refusing with keystore.ErrWrongPurpose unless its label names
// purpose. Found key pairs are cached, so later calls cost no token round trip. The signer stops working once
// the key is destroyed through this Store or the Store is closed.
func (s *Store) Signer(ctx context.Context, uri string, purpose keystore.Purpose) (crypto.Signer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e, ref, err := s.find(uri)
	if err != nil {
		return nil, err
	}
	if e.purpose != purpose {
		return nil, keystore.PurposeError(ref, e.purpose, purpose)
	}
	return &signer{e: e}, nil
}

// Destroy deletes the private and public key objects of the key pair at uri from the token, or the transport
// key at uri if uri names type=secret-key (as GenerateTransportKey's URIs do). A key that is not there returns an
// error wrapping keystore.ErrNotFound. What erasure means inside the token is up to the token.
func (s *Store) Destroy(ctx context.Context, uri string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if u, err := ParseURI(uri); err == nil && u.Type == "secret-key" {
		u, ref, err := s.resolve(uri, "secret-key")
		if err != nil {
			return err
		}
		return s.destroySecret(u, ref)
	}
	e, ref, err := s.find(uri)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.destroyed.Load() {
		return fmt.Errorf("destroy %s: %w", ref, keystore.ErrNotFound)
	}
	if err := e.signer.Delete(); err != nil {
		return backendErr(fmt.Sprintf("destroy %s", ref), err)
	}
	e.destroyed.Store(true)
	delete(s.cache, hex.EncodeToString(e.id))
	return nil
}

// find resolves uri to a key pair on this token, from the cache or the token. ref is uri re-formatted without any
// query attribute, safe for error messages.
func (s *Store) find(uri string) (e *entry, ref string, err error) {
	u, ref, err := s.resolve(uri, "private")
	if err != nil {
		return nil, ref, err
	}
	matches := func(e *entry) bool { return u.Object == "" || u.Object == e.label }

	key := hex.EncodeToString(u.ID)
	s.mu.RLock()
	e = s.cache[key]
	s.mu.RUnlock()
	if e != nil {
		if !matches(e) {
			return nil, ref, fmt.Errorf("key %s: object label differs from the token's: %w", ref, keystore.ErrNotFound)
		}
		return e, ref, nil
	}

	// Miss: look the key up under the write lock, so a concurrent Destroy cannot be undone by a stale insert.
	s.mu.Lock()
	defer s.mu.Unlock()
	if e = s.cache[key]; e != nil {
		if !matches(e) {
			return nil, ref, fmt.Errorf("key %s: object label differs from the token's: %w", ref, keystore.ErrNotFound)
		}
		return e, ref, nil
	}
	var label []byte
	if u.Object != "" {
		label = []byte(u.Object)
	}
	found, err := s.ctx.FindKeyPairs(u.ID, label)
	if err != nil || len(found) == 0 {
		// crypto11 knows no Ed25519 key (it fails on one, "unsupported key type"): look for one directly.
		ed, ederr := s.findEd25519(u.ID)
		switch {
		case ederr == nil && (u.Object == "" || u.Object == ed.label):
			found, err = []crypto11.Signer{ed}, nil
		case err != nil:
			return nil, ref, backendErr(fmt.Sprintf("find key %s", ref), err)
		}
	}
	switch len(found) {
	case 0:
		return nil, ref, fmt.Errorf("key %s: %w", ref, keystore.ErrNotFound)
	case 1:
	default:
		return nil, ref, fmt.Errorf("key %s: %s holds %d key pairs with this id; refusing an ambiguous key", ref, s.name, len(found))
	}
	var objLabel string
	if ed, ok := found[0].(*edSigner); ok {
		objLabel = ed.label
	} else {
		attr, err := s.ctx.GetAttribute(found[0], crypto11.CkaLabel)
		if err != nil {
			return nil, ref, backendErr(fmt.Sprintf("read label of key %s", ref), err)
		}
		objLabel = string(attr.Value)
	}
	purpose, err := purposeFromLabel(objLabel, u.ID)
	if err != nil {
		return nil, ref, fmt.Errorf("key %s: %w", ref, err)
	}
	e = &entry{id: u.ID, label: objLabel, purpose: purpose, signer: found[0]}
	s.cache[key] = e
	return e, ref, nil
}

// resolve parses the key URI uri and checks that it names an object of this token by id, of type typ ("private"
// or "secret-key") if it names a type at all. ref is uri re-formatted without any query attribute, safe for error
// messages. Errors wrap keystore.ErrNotFound.
func (s *Store) resolve(uri, typ string) (u *URI, ref string, err error) {
	u, err = ParseURI(uri)
	if err != nil {
		return nil, "", fmt.Errorf("malformed PKCS#11 key URI: %v: %w", err, keystore.ErrNotFound)
	}
	bare := *u
	bare.ModulePath, bare.PINValue, bare.PINSource = "", "", ""
	ref = bare.String()
	switch {
	case !s.sameToken(u):
		return nil, ref, fmt.Errorf("key %s: not on %s: %w", ref, s.name, keystore.ErrNotFound)
	case u.ModulePath != "" || u.PINValue != "" || u.PINSource != "":
		return nil, ref, fmt.Errorf("key %s: a key URI must not carry module-path, pin-value or pin-source: %w", ref, keystore.ErrNotFound)
	case len(u.ID) == 0:
		return nil, ref, fmt.Errorf("key %s: key URI has no id: %w", ref, keystore.ErrNotFound)
	case u.Type != "" && u.Type != typ:
		what := map[string]string{"private": "a private key", "secret-key": "a secret key"}[typ]
		return nil, ref, fmt.Errorf("key %s: type=%s is not %s: %w", ref, u.Type, what, keystore.ErrNotFound)
	}
	return u, ref, nil
}

// purposeFromLabel reads the purpose from a CKA_LABEL "keyward:<purpose>:<hex id>", checking that the id in the
// label is the object's own.
func purposeFromLabel(label string, id []byte) (keystore.Purpose, error) {
	rest, ok := strings.CutPrefix(label, labelPrefix)
	p, hexID, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || !keystore.Purpose(p).Valid() || hexID != hex.EncodeToString(id) {
		return "", fmt.Errorf("label %s does not read keyward:<purpose>:<hex id> for this id, so the key has no Keyward purpose; refused: %w",
			strconv.Quote(truncate(label)), keystore.ErrWrongPurpose)
	}
	return keystore.Purpose(p), nil
}

// Close logs out, closes the sessions and unloads the module once no other Store uses it. Signers obtained from
// the Store stop working. Close is idempotent; it waits for wrapping operations in flight.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		for _, e := range s.cache {
			e.destroyed.Store(true) // not destroyed, but no longer usable through this Store
		}
		s.cache = map[string]*entry{}
		s.mu.Unlock()
		// The raw handle goes first: its sessions must be closed while crypto11 still holds the module
		// initialised, and crypto11 may C_Finalize it below if this is the last Context on it.
		s.raw.close()
		if cerr := s.ctx.Close(); cerr != nil {
			err = backendErr(fmt.Sprintf("close %s", s.name), cerr)
		}
	})
	return err
}

// signer is the crypto.Signer handed out: it hides crypto11's Delete and Decrypt and refuses after Destroy.
type signer struct{ e *entry }

func (g *signer) Public() crypto.PublicKey { return g.e.signer.Public() }

func (g *signer) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if g.e.destroyed.Load() {
		return nil, fmt.Errorf("sign with PKCS#11 key %s: key destroyed or store closed: %w", g.e.label, keystore.ErrNotFound)
	}
	sig, err := g.e.signer.Sign(rand, digest, opts)
	if err != nil {
		return nil, backendErr(fmt.Sprintf("sign with PKCS#11 key %s", g.e.label), err)
	}
	return sig, nil
}

// backendError reads "<msg>: <cause>" and matches both keystore.ErrBackend and the cause with errors.Is/As.
type backendError struct {
	msg   string
	cause error
}

func backendErr(msg string, cause error) error { return &backendError{msg: msg, cause: cause} }

func (e *backendError) Error() string   { return e.msg + ": " + e.cause.Error() }
func (e *backendError) Unwrap() []error { return []error{keystore.ErrBackend, e.cause} }
