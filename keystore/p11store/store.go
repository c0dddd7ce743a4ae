package p11store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
)

// DefaultMaxSessions is the session pool size used when Options.MaxSessions
// is zero.
const DefaultMaxSessions = 4

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// MaxSessions bounds the PKCS#11 sessions the Store keeps open, and so
	// the number of operations that run on the token at once. Zero means
	// DefaultMaxSessions.
	MaxSessions int
	// Logger receives debug records about sessions and recovery (never a
	// PIN). Nil discards them.
	Logger *slog.Logger
}

// Store is a keystore.Store on one token of one PKCS#11 module. It is safe
// for concurrent use.
type Store struct {
	mod        *module
	modulePath string // cleaned module path, compared with key URIs
	uri        *keystore.URI
	token      tokenID // the token found at Open; its label is used to find it again
	pin        string  // never logged or formatted into an error
	hasPIN     bool
	log        *slog.Logger
	max        int

	// sem holds one entry per pool slot taken (an operation in progress or a
	// RawSigner); its capacity is max.
	sem chan struct{}
	// idle holds the open sessions not in use.
	idle chan *session
	// done is closed by Close, waking callers waiting for a session.
	done chan struct{}

	// mu guards the fields below.
	mu     sync.Mutex
	slot   uint // slot of the token; changes when the token is found again
	open   int  // sessions open, idle or in use
	closed bool
}

// session is one open PKCS#11 session of the pool.
type session struct {
	h      pkcs11.SessionHandle
	slot   uint
	opened uint64 // module epoch when it was opened
}

// tokenID is what is known about the token a Store is bound to.
type tokenID struct {
	label, serial, manufacturer, model string
	flags                              uint
}

var _ keystore.Store = (*Store)(nil)

// Open loads the PKCS#11 module named by uri's module-path attribute, finds
// the token named by uri (token= label, serial= or slot-id=, with
// manufacturer= and model= also matched when present), and logs in as the
// user with the PIN of uri (pin-source= file or pin-value=). Object
// attributes of uri, if any, are ignored: keys are named in Generate, Open
// and Delete.
//
// Errors say which of these steps failed: a missing module file, a file that
// is not a PKCS#11 module, a token that is not there (listing the tokens that
// are), a wrong or locked PIN. They never contain the PIN.
func Open(ctx context.Context, uri *keystore.URI, opts Options) (*Store, error) {
	if uri == nil || uri.Scheme != keystore.SchemePKCS11 {
		return nil, fmt.Errorf("p11store: open %v: not a pkcs11: URI", uri)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("p11store: open %s: %w", uri.Redacted(), err)
	}
	modPath := uri.QueryAttr("module-path")
	if modPath == "" {
		return nil, fmt.Errorf("p11store: open %s: no module-path attribute", uri.Redacted())
	}
	pin, hasPIN, err := uri.PIN()
	if err != nil {
		return nil, fmt.Errorf("p11store: open %s: %w", uri.Redacted(), err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := opts.MaxSessions
	if n <= 0 {
		n = DefaultMaxSessions
	}
	m, err := acquireModule(modPath)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Store, error) {
		_ = m.release() // what made Open fail is the error to report
		return nil, err
	}
	s := &Store{
		mod:        m,
		modulePath: m.path,
		uri:        uri,
		pin:        pin,
		hasPIN:     hasPIN,
		log:        log.With("module", m.path),
		max:        n,
		sem:        make(chan struct{}, n),
		idle:       make(chan *session, n),
		done:       make(chan struct{}),
	}
	slot, tok, err := s.findToken(uri)
	if err != nil {
		return fail(err)
	}
	s.slot, s.token = slot, tok
	if !hasPIN && tok.flags&pkcs11.CKF_LOGIN_REQUIRED != 0 && tok.flags&pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH == 0 {
		return fail(fmt.Errorf("p11store: token %q needs a PIN: add pin-source=file:/path/to/pin to %s", tok.label, uri.Redacted()))
	}
	// Open and log in one session now, so that a wrong PIN fails here and
	// not at the first signature.
	if err := s.withSession(ctx, func(*session) error { return nil }); err != nil {
		return fail(err)
	}
	s.log.Debug("p11store: opened token", "token", tok.label, "slot", slot)
	return s, nil
}

// findToken returns the slot and description of the token uri names.
func (s *Store) findToken(uri *keystore.URI) (uint, tokenID, error) {
	slots, err := s.mod.ctx.GetSlotList(true)
	if err != nil {
		return 0, tokenID{}, fmt.Errorf("p11store: module %s: C_GetSlotList: %w", s.modulePath, err)
	}
	var present []string
	for _, slot := range slots {
		ti, err := s.mod.ctx.GetTokenInfo(slot)
		if err != nil {
			continue // a token that went away between the two calls
		}
		tok := tokenID{
			label:        trimPad(ti.Label),
			serial:       trimPad(ti.SerialNumber),
			manufacturer: trimPad(ti.ManufacturerID),
			model:        trimPad(ti.Model),
			flags:        ti.Flags,
		}
		if tok.flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		present = append(present, strconv.Quote(tok.label))
		if tokenMatches(uri, slot, tok) {
			return slot, tok, nil
		}
	}
	what := describeToken(uri)
	list := "no initialized tokens present"
	if len(present) > 0 {
		list = "tokens present: " + strings.Join(present, ", ")
	}
	return 0, tokenID{}, fmt.Errorf("p11store: module %s: no token %s (%s)", s.modulePath, what, list)
}

// tokenMatches reports whether the token tok in slot is the one uri names.
func tokenMatches(uri *keystore.URI, slot uint, tok tokenID) bool {
	for _, c := range []struct{ attr, have string }{
		{"token", tok.label},
		{"serial", tok.serial},
		{"manufacturer", tok.manufacturer},
		{"model", tok.model},
		{"slot-id", strconv.FormatUint(uint64(slot), 10)},
	} {
		if v := uri.Attr(c.attr); v != "" && v != c.have {
			return false
		}
	}
	return true
}

// describeToken names the token uri asks for, for error messages.
func describeToken(uri *keystore.URI) string {
	var parts []string
	if v := uri.Attr("token"); v != "" {
		parts = append(parts, fmt.Sprintf("with label %q", v))
	}
	for _, a := range []string{"serial", "manufacturer", "model", "slot-id"} {
		if v := uri.Attr(a); v != "" {
			parts = append(parts, fmt.Sprintf("%s=%s", a, v))
		}
	}
	return strings.Join(parts, " ")
}

// trimPad removes the blank and NUL padding of fixed-size PKCS#11 strings.
func trimPad(s string) string { return strings.TrimRight(s, " \x00") }

// checkKeyURI verifies that uri names a key on this Store's module and token.
func (s *Store) checkKeyURI(uri *keystore.URI) error {
	if uri == nil || uri.Scheme != keystore.SchemePKCS11 {
		return fmt.Errorf("p11store: key URI %v: not a pkcs11: URI", uri)
	}
	if p := uri.QueryAttr("module-path"); p != "" && filepath.Clean(p) != s.modulePath {
		return fmt.Errorf("p11store: key URI %s names module %s, but this store uses %s", uri.Redacted(), p, s.modulePath)
	}
	s.mu.Lock()
	slot := s.slot
	s.mu.Unlock()
	for _, c := range []struct{ attr, have string }{
		{"token", s.token.label},
		{"serial", s.token.serial},
		{"manufacturer", s.token.manufacturer},
		{"model", s.token.model},
	} {
		if v := uri.Attr(c.attr); v != "" && v != c.have {
			return fmt.Errorf("p11store: key URI %s names %s %q, but this store uses token %q", uri.Redacted(), c.attr, v, s.token.label)
		}
	}
	if v := uri.Attr("slot-id"); v != "" && v != strconv.FormatUint(uint64(slot), 10) && v != s.uri.Attr("slot-id") {
		return fmt.Errorf("p11store: key URI %s names slot %s, but token %q is in slot %d", uri.Redacted(), v, s.token.label, slot)
	}
	if uri.Attr("object") == "" && uri.Attr("id") == "" {
		return fmt.Errorf("p11store: key URI %s names no key: add object=LABEL (or id=)", uri.Redacted())
	}
	if t := uri.Attr("type"); t != "" && t != "private" {
		return fmt.Errorf("p11store: key URI %s: type=%s: a key URI names the private key (type=private)", uri.Redacted(), t)
	}
	return nil
}

// Close closes the Store's sessions and releases the module, which is
// finalized and unloaded when no other Store uses it. It waits for
// operations in progress to end. Keys of the Store must not be used
// afterwards (they fail). Closing twice is not an error.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.done)
	// Take every pool slot: operations in flight finish first.
	for range s.max {
		s.sem <- struct{}{}
	}
	var errs []error
	s.mod.ops.RLock()
	for {
		select {
		case sess := <-s.idle:
			if s.mod.stale(sess) {
				s.drop(sess)
				continue
			}
			if err := s.mod.ctx.CloseSession(sess.h); err != nil && !sessionLost(err) {
				errs = append(errs, fmt.Errorf("p11store: close session: %w", err))
			}
			s.drop(sess)
			continue
		default:
		}
		break
	}
	s.mod.ops.RUnlock()
	if err := s.mod.release(); err != nil {
		errs = append(errs, err)
	}
	s.log.Debug("p11store: closed store", "token", s.token.label)
	return errors.Join(errs...)
}

// TokenLabel returns the label of the token the Store is bound to.
func (s *Store) TokenLabel() string { return s.token.label }

// login logs the session's application in as the user. A token already
// logged in (by another session or Store of this process) is fine.
func (s *Store) login(h pkcs11.SessionHandle) error {
	if !s.hasPIN && s.token.flags&pkcs11.CKF_LOGIN_REQUIRED == 0 {
		return nil
	}
	key := s.token.serial + "\x00" + s.token.label
	err := s.mod.ctx.Login(h, pkcs11.CKU_USER, s.pin)
	switch {
	case err == nil:
		s.mod.loggedIn(key, s.pin)
		return nil
	case rv(err) == pkcs11.CKR_USER_ALREADY_LOGGED_IN:
		// Another session or Store of the process logged in, and the token
		// did not look at our PIN: compare it with the one that worked.
		if !s.mod.samePIN(key, s.pin) {
			return fmt.Errorf("p11store: wrong PIN for token %q: it is not the PIN the token is logged in with in this process: %w",
				s.token.label, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT))
		}
		return nil
	}
	return loginError(s.token.label, err)
}
