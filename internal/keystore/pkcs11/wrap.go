package pkcs11

// Device-key export for injection at the production line. A factory batch pre-generates device keys in the
// contract manufacturer's site HSM; `keyward factory inject` must then hand each key to its device. Keys made by
// Generate can never leave the token, so injection keys are made by GenerateWrappable instead: still sensitive
// (C_GetAttributeValue never reveals them) but extractable, so that C_WrapKey can export them encrypted under a
// transport key, AES-256, that the device's secure element holds as well. The clear key exists only inside the
// HSM and inside the secure element.
//
// In production the per-device transport key comes from the secure-element vendor's process (derived from a
// vendor master key and the element's identity, or provisioned by the vendor over a separate channel) and is
// brought into the HSM with ImportTransportKey; GenerateTransportKey suits a transport key that is carried to
// the device some other way, and tests use ImportTransportKey with key bytes they know.
//
// crypto11 exposes neither C_WrapKey nor secret keys with Keyward's templates, so a Store keeps a second handle
// on the same module (github.com/miekg/pkcs11) for them, opened on first use. C_Initialize on it returns
// CKR_CRYPTOKI_ALREADY_INITIALIZED, as crypto11 initialised the module; the handle shares that instance and so
// the user login of crypto11's sessions, as login state belongs to the application (PKCS#11 v2.40 section 5.6,
// C_Login). It never calls C_Finalize or C_Logout, which would tear the module or the login down under crypto11,
// and Close releases it before crypto11's Context.
//
// CKA_WRAP_WITH_TRUSTED is not set on wrappable keys, although SoftHSM2 honours it (C_WrapKey under a wrapping
// key without CKA_TRUSTED fails with CKR_KEY_NOT_WRAPPABLE; TestWrapWithTrustedSoftHSM2 records this): only the
// security officer may set CKA_TRUSTED (a user gets CKR_ATTRIBUTE_READ_ONLY), an SO session can create only
// public objects (CKA_PRIVATE true fails with CKR_USER_NOT_LOGGED_IN), and the SO cannot log in while this
// Store's user is (CKR_USER_ANOTHER_ALREADY_LOGGED_IN). The transport keys this Store creates would therefore
// never be trusted, and device keys marked so could not be exported at all. Without it, anyone holding the
// user PIN can import a transport key of their choosing and export every wrappable key under it: the user PIN
// of the site HSM guards the device keys of every batch on it. A security-officer ceremony that marks vendor
// transport keys trusted, run while no user is logged in, would close that gap.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/keyward/keyward/internal/keystore"
)

// TransportKeySize is the size in bytes of a transport key: AES-256.
const TransportKeySize = 32

// ErrNotWrappable is wrapped by WrapKey's error when the token refuses to export the key: it was generated
// non-extractable (by Generate), or the token demands a wrapping key it trusts.
var ErrNotWrappable = errors.New("key cannot be exported wrapped")

// ckmAESKeyWrapKWP is CKM_AES_KEY_WRAP_KWP, AES key wrap with padding as RFC 5649 defines it (PKCS #11 v3.0,
// "AES Key Wrap" mechanisms). github.com/miekg/pkcs11 v1.1.1 predates it.
const ckmAESKeyWrapKWP = 0x0000210B

// wrapMechanisms are the AES key-wrap mechanisms WrapKey may use, best first.
//
// CKM_AES_KEY_WRAP_KWP is RFC 5649 by definition. SoftHSM2 2.x offers RFC 5649 as CKM_AES_KEY_WRAP_PAD instead
// (SoftHSMv2 issue #726; TestWrapKey checks its output against an RFC 5649 unwrap that passes the RFC's
// section 6 vectors), as does Entrust nShield; PKCS #11 v3.0 however defines CKM_AES_KEY_WRAP_PAD as PKCS #7
// padding followed by RFC 3394, so on any other token check what it produces before trusting it.
//
// CKM_AES_KEY_WRAP (RFC 3394) is the last resort: it wraps only whole 8-byte blocks (RFC 3394 section 2), and
// the length of a key's PKCS #8 encoding cannot be learnt before wrapping, since the key is sensitive. A token
// that follows PKCS #11 v2.40 section 5.14 refuses other lengths with CKR_KEY_SIZE_RANGE, which WrapKey reports;
// SoftHSM2 instead pads them with zero bytes (SoftHSMv2 pull request #307), which the device must then strip,
// reading the length from the outer DER header.
var wrapMechanisms = []uint{ckmAESKeyWrapKWP, p11.CKM_AES_KEY_WRAP_PAD, p11.CKM_AES_KEY_WRAP}

// mechanismName names a wrap mechanism for messages.
func mechanismName(m uint) string {
	switch m {
	case ckmAESKeyWrapKWP:
		return "CKM_AES_KEY_WRAP_KWP (RFC 5649)"
	case p11.CKM_AES_KEY_WRAP_PAD:
		return "CKM_AES_KEY_WRAP_PAD"
	case p11.CKM_AES_KEY_WRAP:
		return "CKM_AES_KEY_WRAP (RFC 3394)"
	}
	return fmt.Sprintf("mechanism %#x", m)
}

// wrappablePurposes are the purposes whose keys belong on a device, not in Keyward (the key glossary's
// location "device"): only these may be generated exportable. A CA, OCSP, CRL, firmware, audit or TLS key never
// leaves the token, and a KEK is a secret key.
var wrappablePurposes = []keystore.Purpose{keystore.PurposeDeviceIdentity, keystore.PurposeFactoryStation}

func wrappable(p keystore.Purpose) bool {
	for _, q := range wrappablePurposes {
		if p == q {
			return true
		}
	}
	return false
}

// GenerateWrappable creates a key pair on the token that WrapKey can export for injection into a device. It is
// Generate with another template for the private key: CKA_SENSITIVE true, so the token never reveals its value,
// but CKA_EXTRACTABLE true, so C_WrapKey may export it encrypted; and CKA_SIGN false, since the site never signs
// with a device's key. Token object, random CKA_ID, CKA_LABEL "keyward:<purpose>:<hex id>" and the algorithms
// are those of Generate. Only purposes whose keys live on a device are accepted: device-identity and
// factory-station. The label argument is not recorded on the token.
func (s *Store) GenerateWrappable(ctx context.Context, purpose keystore.Purpose, alg keystore.Algorithm, label string) (keystore.Key, error) {
	if purpose.Valid() && !wrappable(purpose) {
		return keystore.Key{}, fmt.Errorf("generate wrappable key on %s: %s keys never leave the token; only %v keys are made for export: %w",
			s.name, purpose, wrappablePurposes, keystore.ErrWrongPurpose)
	}
	return s.generate(ctx, purpose, alg, true)
}

// GenerateTransportKey creates a transport key on the token, a random AES-256 key that can wrap keys for
// export and do nothing else, and returns its URI ("pkcs11:token=...;id=...;object=keyward:kek:<hex id>;
// type=secret-key"). The key is a token object, private, sensitive, never extractable and not modifiable,
// with CKA_WRAP true and CKA_UNWRAP, CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY and CKA_DERIVE false; its
// CKA_LABEL carries the purpose kek. As it cannot leave the token, its twin must reach the device by other
// means; usually the device's transport key comes from its vendor and is brought in with ImportTransportKey.
// The label argument is not recorded on the token.
func (s *Store) GenerateTransportKey(ctx context.Context, label string) (uri string, err error) {
	return s.newTransportKey(ctx, nil)
}

// ImportTransportKey stores key, AES-256 key bytes known outside the token, as a transport key with the
// attributes of GenerateTransportKey (the token records CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE false,
// as is right for a key known outside it), and returns its URI. It is how a secure element's transport key, derived or provisioned by the element vendor's
// process, enters the HSM, and how tests make a transport key they can unwrap with. key is neither kept nor
// reported in errors, and the Store keeps no copy; the caller should clear it. The label argument is not recorded on the token.
func (s *Store) ImportTransportKey(ctx context.Context, label string, key []byte) (uri string, err error) {
	if len(key) != TransportKeySize {
		return "", fmt.Errorf("import transport key into %s: key is %d bytes; a transport key is AES-256, %d bytes",
			s.name, len(key), TransportKeySize)
	}
	return s.newTransportKey(ctx, key)
}

// newTransportKey generates (value nil) or imports a transport key.
func (s *Store) newTransportKey(ctx context.Context, value []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	id := make([]byte, idLen)
	if _, err := io.ReadFull(rand.Reader, id); err != nil {
		return "", fmt.Errorf("generate key id: %w", err)
	}
	objLabel := labelPrefix + string(keystore.PurposeKEK) + ":" + hex.EncodeToString(id)
	// A transport key wraps keys on their way out and does nothing else (usage attributes: PKCS#11 v2.40 sections
	// 4.7 and 4.10). CKA_COPYABLE false: C_CopyObject could otherwise make a copy with other usage flags.
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_ID, id),
		p11.NewAttribute(p11.CKA_LABEL, objLabel),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_MODIFIABLE, false),
		p11.NewAttribute(p11.CKA_COPYABLE, false),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_WRAP, true),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, false),
		p11.NewAttribute(p11.CKA_DECRYPT, false),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_VERIFY, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
	}
	sh, release, err := s.session()
	if err != nil {
		return "", err
	}
	defer release()
	if value == nil {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_VALUE_LEN, TransportKeySize))
		_, err = s.raw.ctx.GenerateKey(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, tmpl)
	} else {
		_, err = s.raw.ctx.CreateObject(sh, append(tmpl, p11.NewAttribute(p11.CKA_VALUE, value)))
	}
	if err != nil {
		verb := "generate"
		if value != nil {
			verb = "import"
		}
		return "", backendErr(fmt.Sprintf("%s transport key on %s", verb, s.name), err)
	}
	u := s.selector
	u.ID, u.Object, u.Type = id, objLabel, "secret-key"
	return u.String(), nil
}

// WrapKey exports the private key at keyURI, encrypted under the transport key at transportURI: C_WrapKey of
// its PKCS #8 PrivateKeyInfo, which the token encodes, with AES key wrap with padding (RFC 5649) where the token
// offers it, else AES key wrap (RFC 3394, see wrapMechanisms). An unwrapper tells the two apart by the integrity
// check value it recovers: A65959A6 followed by the length for RFC 5649 (section 3), A6A6A6A6A6A6A6A6 for RFC
// 3394 (section 2.2.3.1).
//
// The key must be a device-identity or factory-station key made by GenerateWrappable, and the transport key one
// made by GenerateTransportKey or ImportTransportKey. A key made by Generate is refused with an error wrapping
// ErrNotWrappable; a transport key that is not a kek secret key, or may not wrap, with keystore.ErrWrongPurpose;
// a key that is not on the token with keystore.ErrNotFound. No error carries key material.
func (s *Store) WrapKey(ctx context.Context, keyURI, transportURI string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ku, kref, err := s.resolve(keyURI, "private")
	if err != nil {
		return nil, fmt.Errorf("wrap: %w", err)
	}
	tu, tref, err := s.resolve(transportURI, "secret-key")
	if err != nil {
		return nil, fmt.Errorf("wrap %s: transport %w", kref, err)
	}
	sh, release, err := s.session()
	if err != nil {
		return nil, err
	}
	defer release()

	key, purpose, err := s.lookup(sh, ku, p11.CKO_PRIVATE_KEY)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return nil, fmt.Errorf("wrap key %s: no private key with this id on %s: %w", kref, s.name, err)
	case err != nil:
		return nil, fmt.Errorf("wrap key %s: %w", kref, err)
	case !wrappable(purpose):
		return nil, fmt.Errorf("wrap key %s: it has purpose %q; only %v keys leave the token: %w",
			kref, purpose, wrappablePurposes, keystore.ErrWrongPurpose)
	}

	tk, tpurpose, err := s.lookup(sh, tu, p11.CKO_SECRET_KEY)
	if errors.Is(err, keystore.ErrNotFound) {
		// Say what the URI names instead, when it names something: a CA key, the device key itself.
		if _, other, oerr := s.lookup(sh, tu, 0); oerr == nil {
			return nil, fmt.Errorf("wrap key %s: transport key %s is a %s key pair, not a transport key; make one with GenerateTransportKey or ImportTransportKey: %w",
				kref, tref, other, keystore.ErrWrongPurpose)
		}
		return nil, fmt.Errorf("wrap key %s: transport key %s: no secret key with this id on %s: %w", kref, tref, s.name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("wrap key %s: transport key %s: %w", kref, tref, err)
	}
	if tpurpose != keystore.PurposeKEK {
		return nil, fmt.Errorf("wrap key %s: transport %w", kref, keystore.PurposeError(tref, tpurpose, keystore.PurposeKEK))
	}

	mech, ok := s.raw.mechanism()
	if !ok {
		return nil, fmt.Errorf("wrap key %s: %s offers none of %s, %s, %s for C_WrapKey: %w", kref, s.name,
			mechanismName(ckmAESKeyWrapKWP), mechanismName(p11.CKM_AES_KEY_WRAP_PAD), mechanismName(p11.CKM_AES_KEY_WRAP), errors.ErrUnsupported)
	}
	wrapped, err := s.raw.ctx.WrapKey(sh, []*p11.Mechanism{p11.NewMechanism(mech, nil)}, tk, key)
	if err != nil {
		return nil, s.wrapError(kref, tref, mech, err)
	}
	return wrapped, nil
}

// wrapError explains a C_WrapKey failure.
func (s *Store) wrapError(kref, tref string, mech uint, err error) error {
	var code p11.Error
	if !errors.As(err, &code) {
		return backendErr(fmt.Sprintf("wrap key %s under %s with %s", kref, tref, mechanismName(mech)), err)
	}
	switch code {
	case p11.CKR_KEY_UNEXTRACTABLE:
		return refused(fmt.Sprintf("wrap key %s: %s refuses to export it (CKR_KEY_UNEXTRACTABLE): it was generated non-extractable, "+
			"with Generate rather than GenerateWrappable, and can never leave the token; generate keys for injection with GenerateWrappable",
			kref, s.name), ErrNotWrappable, err)
	case p11.CKR_KEY_NOT_WRAPPABLE:
		return refused(fmt.Sprintf("wrap key %s: %s refuses to wrap it under transport key %s (CKR_KEY_NOT_WRAPPABLE), "+
			"e.g. because the key demands a wrapping key the security officer marked trusted (CKA_WRAP_WITH_TRUSTED)",
			kref, s.name, tref), ErrNotWrappable, err)
	case p11.CKR_KEY_FUNCTION_NOT_PERMITTED, p11.CKR_WRAPPING_KEY_HANDLE_INVALID:
		return refused(fmt.Sprintf("wrap key %s: transport key %s may not wrap keys (%s: CKA_WRAP is not true); "+
			"make one with GenerateTransportKey or ImportTransportKey", kref, tref, ckrName(code)), keystore.ErrWrongPurpose, err)
	case p11.CKR_WRAPPING_KEY_TYPE_INCONSISTENT, p11.CKR_WRAPPING_KEY_SIZE_RANGE:
		return refused(fmt.Sprintf("wrap key %s: transport key %s is not an AES key %s can wrap with (%s)",
			kref, tref, mechanismName(mech), ckrName(code)), keystore.ErrWrongPurpose, err)
	case p11.CKR_KEY_SIZE_RANGE, p11.CKR_DATA_LEN_RANGE:
		if mech == p11.CKM_AES_KEY_WRAP {
			return refused(fmt.Sprintf("wrap key %s: %s offers no AES key wrap with padding, and the key's PKCS #8 encoding is not a "+
				"multiple of 8 bytes, which %s requires (RFC 3394 section 2; %s)", kref, s.name, mechanismName(mech), ckrName(code)),
				errors.ErrUnsupported, err)
		}
	}
	return backendErr(fmt.Sprintf("wrap key %s under %s with %s", kref, tref, mechanismName(mech)), err)
}

// ckrName is the CKR_ name of code, without miekg/pkcs11's "pkcs11: 0x68: " prefix.
func ckrName(code p11.Error) string {
	msg := code.Error()
	return msg[strings.LastIndex(msg, " ")+1:]
}

// lookup finds the one object of class with u's CKA_ID, and u's CKA_LABEL if it names one, and reads its
// purpose from its label. No object: an error wrapping keystore.ErrNotFound. class 0 (CKO_DATA, which Keyward
// never looks for) stands for any class and takes the first object found, to say what a URI names.
func (s *Store) lookup(sh p11.SessionHandle, u *URI, class uint) (p11.ObjectHandle, keystore.Purpose, error) {
	tmpl := []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, u.ID)}
	if class != 0 {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_CLASS, class))
	}
	if u.Object != "" {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_LABEL, u.Object))
	}
	ctx := s.raw.ctx
	if err := ctx.FindObjectsInit(sh, tmpl); err != nil {
		return 0, "", backendErr(fmt.Sprintf("search %s", s.name), err)
	}
	objs, _, err := ctx.FindObjects(sh, 2)
	if ferr := ctx.FindObjectsFinal(sh); err == nil {
		err = ferr
	}
	if err != nil {
		return 0, "", backendErr(fmt.Sprintf("search %s", s.name), err)
	}
	switch {
	case len(objs) == 0:
		return 0, "", keystore.ErrNotFound
	case len(objs) > 1 && class != 0:
		return 0, "", fmt.Errorf("%s holds several objects of this class with this id; refusing an ambiguous key", s.name)
	}
	attrs, err := ctx.GetAttributeValue(sh, objs[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, nil)})
	if err != nil {
		return 0, "", backendErr(fmt.Sprintf("read label on %s", s.name), err)
	}
	purpose, err := purposeFromLabel(string(attrs[0].Value), u.ID)
	if err != nil {
		return 0, "", err
	}
	return objs[0], purpose, nil
}

// destroySecret deletes the secret key at u (a transport key) from the token.
func (s *Store) destroySecret(u *URI, ref string) error {
	sh, release, err := s.session()
	if err != nil {
		return err
	}
	defer release()
	obj, _, err := s.lookup(sh, u, p11.CKO_SECRET_KEY)
	if errors.Is(err, keystore.ErrNotFound) {
		return fmt.Errorf("destroy %s: %w", ref, keystore.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("destroy %s: %w", ref, err)
	}
	if err := s.raw.ctx.DestroyObject(sh, obj); err != nil {
		return backendErr(fmt.Sprintf("destroy %s", ref), err)
	}
	return nil
}

// refusal reads msg and matches both kind and the PKCS#11 cause with errors.Is/As.
type refusal struct {
	msg         string
	kind, cause error
}

func refused(msg string, kind, cause error) error {
	return &refusal{msg: msg, kind: kind, cause: cause}
}

func (e *refusal) Error() string   { return e.msg }
func (e *refusal) Unwrap() []error { return []error{e.kind, e.cause} }

// rawModuleMaxIdle bounds the sessions a Store keeps open for wrapping between calls.
const rawModuleMaxIdle = 8

// rawModule is a Store's own handle on the PKCS#11 module crypto11 loaded (see the top of this file).
type rawModule struct {
	mu     sync.RWMutex // held for reading by each operation, for writing to open or close the handle
	ctx    *p11.Ctx     // nil until first use, and after close
	slot   uint
	mechs  map[uint]bool // wrap mechanisms the token offers (CKF_WRAP)
	closed bool

	idleMu sync.Mutex
	idle   []p11.SessionHandle
}

// session returns a read-write session on the token, logged in as the user, and the function that gives it
// back; the Store cannot close in between.
func (s *Store) session() (p11.SessionHandle, func(), error) {
	r := &s.raw
	for {
		r.mu.RLock()
		if r.closed {
			r.mu.RUnlock()
			return 0, nil, fmt.Errorf("%s: store closed: %w", s.name, keystore.ErrBackend)
		}
		if r.ctx != nil {
			break
		}
		r.mu.RUnlock()
		r.mu.Lock()
		err := s.openRaw()
		r.mu.Unlock()
		if err != nil {
			return 0, nil, err
		}
	}
	// r.mu is read-locked from here until release.
	var sh p11.SessionHandle
	r.idleMu.Lock()
	n := len(r.idle)
	if n > 0 {
		sh = r.idle[n-1]
		r.idle = r.idle[:n-1]
	}
	r.idleMu.Unlock()
	if n == 0 {
		var err error
		if sh, err = r.ctx.OpenSession(r.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION); err != nil {
			r.mu.RUnlock()
			return 0, nil, backendErr(fmt.Sprintf("open a session on %s", s.name), err)
		}
	}
	release := func() {
		r.idleMu.Lock()
		keep := len(r.idle) < rawModuleMaxIdle
		if keep {
			r.idle = append(r.idle, sh)
		}
		r.idleMu.Unlock()
		if !keep {
			_ = r.ctx.CloseSession(sh)
		}
		r.mu.RUnlock()
	}
	return sh, release, nil
}

// openRaw opens the raw handle, with r.mu write-locked. It is a no-op once open or closed.
func (s *Store) openRaw() error {
	r := &s.raw
	if r.ctx != nil || r.closed {
		return nil
	}
	mod := p11.New(s.module)
	if mod == nil {
		return backendErr(fmt.Sprintf("load PKCS#11 module %s a second time", s.module), errors.New("failed to open module"))
	}
	err := mod.Initialize()
	if err == nil {
		// This Store's crypto11 Context holds the module initialised, so this cannot happen; if it does, undo it
		// rather than keep a module that only a C_Finalize of ours could release.
		_ = mod.Finalize()
		mod.Destroy()
		return backendErr(fmt.Sprintf("module %s", s.module), errors.New("second handle found the module not initialised"))
	}
	if !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		mod.Destroy()
		return backendErr(fmt.Sprintf("initialise module %s a second time", s.module), err)
	}
	slot, err := s.findSlot(mod)
	if err != nil {
		mod.Destroy()
		return err
	}
	mechs := map[uint]bool{}
	if list, err := mod.GetMechanismList(slot); err == nil {
		for _, m := range list {
			for _, want := range wrapMechanisms {
				if m.Mechanism != want {
					continue
				}
				if info, err := mod.GetMechanismInfo(slot, []*p11.Mechanism{p11.NewMechanism(want, nil)}); err == nil && info.Flags&p11.CKF_WRAP != 0 {
					mechs[want] = true
				}
			}
		}
	}
	sh, err := mod.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		mod.Destroy()
		return backendErr(fmt.Sprintf("open a session on %s", s.name), err)
	}
	// crypto11's session is logged in already, and so is this one (login state is per application); log in only
	// if that ever fails to hold.
	if err := mod.Login(sh, p11.CKU_USER, s.pin); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
		_ = mod.CloseSession(sh)
		mod.Destroy()
		return s.classifyOpenErr(err)
	}
	r.ctx, r.slot, r.mechs, r.idle = mod, slot, mechs, []p11.SessionHandle{sh}
	return nil
}

// findSlot returns the slot of this Store's token, selected as its configuration does.
func (s *Store) findSlot(mod *p11.Ctx) (uint, error) {
	var slots []uint
	var err error
	// As in Open: a token initialised between C_GetSlotList's two calls makes the second fail (v2.40 5.5).
	for attempt := 0; ; attempt++ {
		slots, err = mod.GetSlotList(true)
		if err == nil || attempt == 4 || !errors.Is(err, p11.Error(p11.CKR_BUFFER_TOO_SMALL)) {
			break
		}
	}
	if err != nil {
		return 0, backendErr(fmt.Sprintf("list slots of module %s", s.module), err)
	}
	for _, slot := range slots {
		if s.selector.SlotID != nil {
			if uint64(slot) == *s.selector.SlotID {
				return slot, nil
			}
			continue
		}
		info, err := mod.GetTokenInfo(slot)
		if err != nil {
			continue
		}
		if (s.selector.Token != "" && strings.TrimRight(info.Label, " ") == s.selector.Token) ||
			(s.selector.Serial != "" && strings.TrimRight(info.SerialNumber, " ") == s.selector.Serial) {
			return slot, nil
		}
	}
	return 0, backendErr(fmt.Sprintf("%s not found in module %s", s.name, s.module), errors.New("no such token"))
}

// mechanism returns the wrap mechanism to use, the first of wrapMechanisms the token offers.
func (r *rawModule) mechanism() (uint, bool) {
	for _, m := range wrapMechanisms {
		if r.mechs[m] {
			return m, true
		}
	}
	return 0, false
}

// close closes the sessions and unloads this handle (dlclose) without C_Finalize or C_Logout, which belong to
// crypto11. It waits for operations in flight; later ones fail.
func (r *rawModule) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.ctx == nil {
		return
	}
	for _, sh := range r.idle {
		_ = r.ctx.CloseSession(sh)
	}
	r.idle = nil
	r.ctx.Destroy()
	r.ctx = nil
}
