package p11store

import (
	"crypto/sha256"
	"crypto/subtle"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"
)

// module is one loaded PKCS#11 library, shared by every Store in the process
// that uses the same module path.
type module struct {
	path string
	ctx  *pkcs11.Ctx
	// initialized reports whether this package called C_Initialize, and so
	// must call C_Finalize when the last Store lets go.
	initialized bool
	refs        int // guarded by modulesMu

	// ops is held shared around every use of a session of the module, by
	// every Store, and exclusively to reset the sessions of a slot (see
	// Store.recover). Modules hand out the handle of a closed session to
	// the next session opened, so a handle that may be stale must never be
	// used or closed while new sessions are being opened.
	ops sync.RWMutex
	// epoch counts slot resets. It changes only with ops held exclusively.
	epoch atomic.Uint64
	// resetAt maps a slot to the epoch of its last reset; guarded by ops
	// (written exclusively, read shared). A session opened before its slot
	// was reset is stale: it is dropped, never used or closed.
	resetAt map[uint]uint64

	// suspectMu guards suspect.
	suspectMu sync.Mutex
	// suspect holds the slots on which a session was found lost and that
	// have not been reset since: no new session is opened there until the
	// reset, so that no stale handle can alias a new session.
	suspect map[uint]bool

	// genMu serializes Generate and Delete of every Store on the module, so
	// that an existence check and the creation that follows are not
	// interleaved with another Generate in the process.
	genMu sync.Mutex

	// loginMu guards logins.
	loginMu sync.Mutex
	// logins maps a token (serial and label) to the SHA-256 of the PIN a
	// Store of this process logged in with. PKCS#11 login state is shared
	// by the whole process, so a second login answers
	// CKR_USER_ALREADY_LOGGED_IN whatever the PIN; this is how that PIN is
	// still checked.
	logins map[string][sha256.Size]byte
}

var (
	// modulesMu guards modules and the refs of every module in it.
	modulesMu sync.Mutex
	modules   = map[string]*module{}
)

// acquireModule loads and initializes the module at path, or takes another
// reference on the one already loaded.
func acquireModule(path string) (*module, error) {
	path = filepath.Clean(path)
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m := modules[path]; m != nil {
		m.refs++
		return m, nil
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("p11store: module %s: no such file", path)
	case err != nil:
		return nil, fmt.Errorf("p11store: module %s: %w", path, err)
	case fi.IsDir():
		return nil, fmt.Errorf("p11store: module %s: is a directory, not a PKCS#11 module", path)
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		// miekg/pkcs11 gives no reason; find one ourselves.
		return nil, fmt.Errorf("p11store: module %s: not a PKCS#11 module: %s", path, whyNotModule(path))
	}
	m := &module{
		path:        path,
		ctx:         ctx,
		refs:        1,
		initialized: true,
		resetAt:     map[uint]uint64{},
		suspect:     map[uint]bool{},
		logins:      map[string][sha256.Size]byte{},
	}
	if err := ctx.Initialize(); err != nil {
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			ctx.Destroy()
			return nil, fmt.Errorf("p11store: module %s: C_Initialize: %w", path, err)
		}
		// Someone else in the process initialized it; they finalize it.
		m.initialized = false
	}
	modules[path] = m
	return m, nil
}

// release drops one reference; the last one finalizes and unloads the module.
func (m *module) release() error {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules, m.path)
	var err error
	if m.initialized {
		if ferr := m.ctx.Finalize(); ferr != nil {
			err = fmt.Errorf("p11store: module %s: C_Finalize: %w", m.path, ferr)
		}
	}
	m.ctx.Destroy()
	return err
}

// whyNotModule explains why dlopen or C_GetFunctionList failed on path.
func whyNotModule(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return "dlopen or C_GetFunctionList failed (the file is not an ELF shared library)"
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return "dlopen or C_GetFunctionList failed (the file exports no dynamic symbols)"
	}
	for _, s := range syms {
		if s.Name == "C_GetFunctionList" && s.Section != elf.SHN_UNDEF {
			return "dlopen failed (wrong architecture, or a library it needs is missing?)"
		}
	}
	return "dlopen or C_GetFunctionList failed (the library does not export C_GetFunctionList)"
}

// loggedIn records that pin logged the token in.
func (m *module) loggedIn(token, pin string) {
	m.loginMu.Lock()
	defer m.loginMu.Unlock()
	m.logins[token] = sha256.Sum256([]byte(pin))
}

// samePIN reports whether pin is the one the token was logged in with by a
// Store of this process, or whether that is unknown (the login was not
// ours).
func (m *module) samePIN(token, pin string) bool {
	m.loginMu.Lock()
	defer m.loginMu.Unlock()
	known, ok := m.logins[token]
	if !ok {
		return true
	}
	sum := sha256.Sum256([]byte(pin))
	return subtle.ConstantTimeCompare(known[:], sum[:]) == 1
}

// stale reports whether sess was opened before its slot was last reset. The
// caller holds m.ops.
func (m *module) stale(sess *session) bool { return sess.opened < m.resetAt[sess.slot] }

// setSuspect marks or unmarks slot as suspect.
func (m *module) setSuspect(slot uint, v bool) {
	m.suspectMu.Lock()
	defer m.suspectMu.Unlock()
	if v {
		m.suspect[slot] = true
	} else {
		delete(m.suspect, slot)
	}
}

// isSuspect reports whether slot is suspect.
func (m *module) isSuspect(slot uint) bool {
	m.suspectMu.Lock()
	defer m.suspectMu.Unlock()
	return m.suspect[slot]
}
