package tpmstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/tcp"

	"github.com/thingd/thingd/keystore"
)

// The TPM devices tried, in this order, when a URI names none.
const (
	// DefaultDevice is the kernel's resource-managed TPM device.
	DefaultDevice = "/dev/tpmrm0"
	// FallbackDevice is the raw TPM device, for kernels without a resource
	// manager. Only one process can hold it open.
	FallbackDevice = "/dev/tpm0"
)

// Retry policy for TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING: up to
// maxAttempts tries, sleeping 1 ms, 2 ms, 4 ms ... (at most maxRetryDelay)
// in between.
const (
	maxAttempts   = 8
	maxRetryDelay = 250 * time.Millisecond
)

// errClosed is returned by every call on a closed Store or its keys.
var errClosed = errors.New("tpmstore: store is closed")

// Options configures [Open]. The zero value opens the device the URI names.
type Options struct {
	// Transport, if non-nil, is the TPM to use instead of the device the URI
	// names. The Store takes it over and closes it in Close, without sending
	// TPM2_Shutdown (its owner decides the TPM's life cycle). Tests inject the
	// go-tpm-tools simulator this way.
	Transport transport.TPMCloser
	// Logger receives debug records (generation, deletion, retries). Nil
	// discards them.
	Logger *slog.Logger
}

// Store is a [keystore.Store] over one TPM. It is safe for concurrent use;
// TPM commands are serialised.
type Store struct {
	log *slog.Logger
	// device is the device string the store was opened on ("" when the
	// transport was injected), compared with the device of key URIs.
	device string
	// shutdown reports whether Close sends TPM2_Shutdown(CLEAR).
	shutdown bool

	// sem is a one-slot semaphore held while talking to the TPM (a channel
	// rather than a sync.Mutex so that waiting honours a context). It guards
	// the following fields.
	sem       chan struct{}
	tpm       transport.TPMCloser
	closed    bool
	transient map[tpm2.TPMHandle]struct{} // transient objects we created and have not flushed
	hashes    map[tpm2.TPMAlgID]bool      // hash algorithms the TPM implements
}

var _ keystore.Store = (*Store)(nil)

// Open connects to the TPM named by uri's device query attribute and checks
// that it answers (TPM2_GetCapability; an emulator that was never started is
// sent TPM2_Startup(CLEAR)). The device forms are:
//
//	(none)                 /dev/tpmrm0, else /dev/tpm0
//	/dev/tpmrm0            a TPM character device
//	tcp:HOST:PORT          swtpm over TCP (go-tpm's TCP transport); PORT+1 is
//	                       its control port (swtpm --server type=tcp,port=PORT
//	                       --ctrl type=tcp,port=PORT+1). swtpm serves one TCP
//	                       client at a time: the Store holds the connection
//	                       until Close, and other clients wait.
//	unix:/PATH             swtpm --server type=unixio,path=/PATH; one connection
//	                       per command, so several Stores and tools can share it.
//
// opts.Transport, if set, is used instead and the device is ignored. uri
// only selects the TPM; keys are named in Generate, Open and Delete, and
// may be the same URIs. uri may be nil (default device, or
// opts.Transport).
func Open(ctx context.Context, uri *keystore.URI, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if uri != nil && uri.Scheme != keystore.SchemeTPM {
		return nil, fmt.Errorf("tpmstore: %s is not a tpm: URI", uri.Redacted())
	}
	s := &Store{
		log:       log,
		sem:       make(chan struct{}, 1),
		transient: map[tpm2.TPMHandle]struct{}{},
	}
	label := "Options.Transport"
	if opts.Transport != nil {
		s.tpm = opts.Transport
	} else {
		if uri != nil {
			s.device = uri.QueryAttr("device")
		}
		tpm, opened, emulator, err := openDevice(s.device)
		if err != nil {
			return nil, err
		}
		s.tpm, s.shutdown, label = tpm, emulator, opened
	}
	if err := s.start(ctx); err != nil {
		if cerr := s.tpm.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("tpmstore: TPM at %s: %w", label, err)
	}
	log.Debug("tpm opened", "device", label)
	return s, nil
}

// openDevice opens the transport for a device string. opened names what was
// opened; emulator reports whether it is a tcp: or unix: emulator
// connection the Store owns.
func openDevice(device string) (tpm transport.TPMCloser, opened string, emulator bool, err error) {
	switch {
	case device == "":
		tpm, err1 := openCharDevice(DefaultDevice)
		if err1 == nil {
			return tpm, DefaultDevice, false, nil
		}
		tpm, err2 := openCharDevice(FallbackDevice)
		if err2 == nil {
			return tpm, FallbackDevice, false, nil
		}
		return nil, "", false, fmt.Errorf("tpmstore: no TPM: open %s: %w; open %s: %w", DefaultDevice, err1, FallbackDevice, err2)
	case strings.HasPrefix(device, "tcp:"):
		hostPort := strings.TrimPrefix(device, "tcp:")
		host, portStr, err := net.SplitHostPort(hostPort)
		if err != nil {
			return nil, "", false, fmt.Errorf("tpmstore: device %q: want tcp:HOST:PORT: %w", device, err)
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || port == 0 || port == 65535 {
			return nil, "", false, fmt.Errorf("tpmstore: device %q: port %q is not a number in 1-65534 (PORT+1 is the control port)", device, portStr)
		}
		cfg := tcp.Config{
			CommandAddress:  net.JoinHostPort(host, strconv.FormatUint(port, 10)),
			PlatformAddress: net.JoinHostPort(host, strconv.FormatUint(port+1, 10)),
		}
		tpm, err := tcp.Open(cfg)
		if err != nil {
			return nil, "", false, fmt.Errorf("tpmstore: open %s: %w", device, err)
		}
		return tpm, device, true, nil
	case strings.HasPrefix(device, "unix:"):
		path := strings.TrimPrefix(device, "unix:")
		tpm, err := openSocket(path)
		if err != nil {
			return nil, "", false, fmt.Errorf("tpmstore: open %s: %w", device, err)
		}
		return tpm, device, true, nil
	case strings.HasPrefix(device, "/"):
		tpm, err := openCharDevice(device)
		if err != nil {
			return nil, "", false, fmt.Errorf("tpmstore: open %s: %w", device, err)
		}
		return tpm, device, false, nil
	}
	return nil, "", false, fmt.Errorf("tpmstore: device %q: want a device path (/dev/tpmrm0), tcp:HOST:PORT or unix:/PATH", device)
}

// start checks that the TPM answers, sending TPM2_Startup(CLEAR) to an
// emulator that was never started, and learns which hashes it implements.
func (s *Store) start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.sem <- struct{}{} // not shared yet: never blocks
	defer s.unlock()
	algs, err := s.algorithmsLocked(ctx)
	if errors.Is(err, tpm2.TPMRCInitialize) && s.shutdown {
		s.log.Debug("tpm not started, sending TPM2_Startup(CLEAR)")
		if _, err := do(ctx, s, tpm2.Startup{StartupType: tpm2.TPMSUClear}); err != nil {
			return fmt.Errorf("TPM2_Startup(CLEAR): %w", err)
		}
		algs, err = s.algorithmsLocked(ctx)
	}
	if err != nil {
		return err
	}
	s.hashes = map[tpm2.TPMAlgID]bool{}
	for _, a := range algs {
		if a.AlgProperties.Hash {
			s.hashes[a.Alg] = true
		}
	}
	return nil
}

// algorithmsLocked returns TPM_CAP_ALGS. Its errors are not prefixed.
func (s *Store) algorithmsLocked(ctx context.Context) ([]tpm2.TPMSAlgProperty, error) {
	var out []tpm2.TPMSAlgProperty
	next := uint32(0)
	for {
		rsp, err := do(ctx, s, tpm2.GetCapability{Capability: tpm2.TPMCapAlgs, Property: next, PropertyCount: 64})
		if err != nil {
			return nil, fmt.Errorf("TPM2_GetCapability(TPM_CAP_ALGS): %w", err)
		}
		algs, err := rsp.CapabilityData.Data.Algorithms()
		if err != nil {
			return nil, fmt.Errorf("TPM2_GetCapability(TPM_CAP_ALGS): %w", err)
		}
		out = append(out, algs.AlgProperties...)
		if !rsp.MoreData || len(algs.AlgProperties) == 0 {
			return out, nil
		}
		next = uint32(algs.AlgProperties[len(algs.AlgProperties)-1].Alg) + 1
	}
}

// lock takes the TPM, waiting at most until ctx is done. It fails on a
// closed store.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tpmstore: waiting for the TPM: %w", err)
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("tpmstore: waiting for the TPM: %w", ctx.Err())
	}
	if s.closed {
		<-s.sem
		return errClosed
	}
	return nil
}

func (s *Store) unlock() { <-s.sem }

// do sends one command, retrying the warnings that mean the TPM did not
// execute it and should be asked again. The caller holds the lock.
func do[R any](ctx context.Context, s *Store, cmd tpm2.Command[R, *R]) (*R, error) {
	delay := time.Millisecond
	for attempt := 1; ; attempt++ {
		rsp, err := cmd.Execute(s.tpm)
		if err == nil || attempt >= maxAttempts || !retryable(err) {
			return rsp, err
		}
		s.log.Debug("tpm busy, retrying", "op", commandName(cmd.Command()), "attempt", attempt, "retry_in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

func retryable(err error) bool {
	return errors.Is(err, tpm2.TPMRCRetry) || errors.Is(err, tpm2.TPMRCYielded) || errors.Is(err, tpm2.TPMRCTesting)
}

func commandName(cc tpm2.TPMCC) string {
	switch cc {
	case tpm2.TPMCCSign:
		return "TPM2_Sign"
	case tpm2.TPMCCCreate:
		return "TPM2_Create"
	case tpm2.TPMCCCreatePrimary:
		return "TPM2_CreatePrimary"
	case tpm2.TPMCCLoad:
		return "TPM2_Load"
	case tpm2.TPMCCEvictControl:
		return "TPM2_EvictControl"
	case tpm2.TPMCCReadPublic:
		return "TPM2_ReadPublic"
	case tpm2.TPMCCFlushContext:
		return "TPM2_FlushContext"
	case tpm2.TPMCCGetCapability:
		return "TPM2_GetCapability"
	case tpm2.TPMCCTestParms:
		return "TPM2_TestParms"
	case tpm2.TPMCCStartup:
		return "TPM2_Startup"
	case tpm2.TPMCCShutdown:
		return "TPM2_Shutdown"
	}
	return fmt.Sprintf("TPM command %#x", uint32(cc))
}

// checkURI returns the persistent handle of a key URI.
func (s *Store) checkURI(uri *keystore.URI) (tpm2.TPMHandle, error) {
	if uri == nil {
		return 0, errors.New("tpmstore: nil key URI")
	}
	if uri.Scheme != keystore.SchemeTPM {
		return 0, fmt.Errorf("tpmstore: %s is not a tpm: URI", uri.Redacted())
	}
	h := uri.Handle()
	if h == 0 {
		return 0, fmt.Errorf("tpmstore: %s names no persistent handle (add handle=0x81000100)", uri.Redacted())
	}
	if d := uri.QueryAttr("device"); d != "" && s.device != "" && d != s.device {
		return 0, fmt.Errorf("tpmstore: %s names device %q but the store is open on %q", uri.Redacted(), d, s.device)
	}
	return tpm2.TPMHandle(h), nil
}

// Generate creates a new key of algorithm alg under the storage root key and
// makes it persistent at uri's handle. It fails with keystore.ErrExists if
// the handle is taken, and with keystore.ErrUnsupported if the TPM does not
// implement alg. ctx bounds the wait for the TPM and for retries; a command
// already sent (RSA key generation can take seconds) runs to completion. The
// returned key is a *Key.
func (s *Store) Generate(ctx context.Context, uri *keystore.URI, alg keystore.Algorithm) (keystore.Key, error) {
	handle, err := s.checkURI(uri)
	if err != nil {
		return nil, err
	}
	tmpl, err := keyTemplate(alg)
	if err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.unlock()

	if _, err := do(ctx, s, tpm2.TestParms{Parameters: tpm2.TPMTPublicParms{Type: tmpl.Type, Parameters: tmpl.Parameters}}); err != nil {
		if isTPMError(err) {
			return nil, fmt.Errorf("tpmstore: generate %s: %w: TPM2_TestParms: %w", alg, keystore.ErrUnsupported, err)
		}
		return nil, fmt.Errorf("tpmstore: generate %s: TPM2_TestParms: %w", alg, err)
	}
	if _, _, err := s.readPublicLocked(ctx, handle); err == nil {
		return nil, fmt.Errorf("tpmstore: generate at handle %#x: %w", uint32(handle), keystore.ErrExists)
	} else if !errors.Is(err, keystore.ErrNotFound) {
		return nil, err
	}

	start := time.Now()
	if err := s.createPersistentLocked(ctx, handle, tmpl); err != nil {
		return nil, err
	}
	s.log.Debug("tpm key generated", "op", "generate", "key", uri.Redacted(), "alg", alg, "took", time.Since(start))
	return s.openLocked(ctx, uri, handle)
}

// createPersistentLocked makes the SRK, creates the key under it, loads it
// and evicts it to handle, flushing every transient object on the way out.
func (s *Store) createPersistentLocked(ctx context.Context, handle tpm2.TPMHandle, tmpl tpm2.TPMTPublic) (err error) {
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	srk, err := do(ctx, s, tpm2.CreatePrimary{PrimaryHandle: owner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)})
	if err != nil {
		return fmt.Errorf("tpmstore: TPM2_CreatePrimary (storage root key, owner hierarchy): %w", err)
	}
	s.transient[srk.ObjectHandle] = struct{}{}
	defer func() { err = errors.Join(err, s.flushLocked(ctx, srk.ObjectHandle)) }()
	parent := tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name}

	created, err := do(ctx, s, tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(tmpl)})
	if err != nil {
		return fmt.Errorf("tpmstore: TPM2_Create under SRK %#x: %w", uint32(srk.ObjectHandle), err)
	}
	loaded, err := do(ctx, s, tpm2.Load{ParentHandle: parent, InPrivate: created.OutPrivate, InPublic: created.OutPublic})
	if err != nil {
		return fmt.Errorf("tpmstore: TPM2_Load under SRK %#x: %w", uint32(srk.ObjectHandle), err)
	}
	s.transient[loaded.ObjectHandle] = struct{}{}
	defer func() { err = errors.Join(err, s.flushLocked(ctx, loaded.ObjectHandle)) }()

	_, err = do(ctx, s, tpm2.EvictControl{
		Auth:             owner,
		ObjectHandle:     tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name},
		PersistentHandle: handle,
	})
	switch {
	case errors.Is(err, tpm2.TPMRCNVDefined):
		return fmt.Errorf("tpmstore: TPM2_EvictControl to handle %#x: %w: %w", uint32(handle), keystore.ErrExists, err)
	case err != nil:
		return fmt.Errorf("tpmstore: TPM2_EvictControl to handle %#x: %w", uint32(handle), err)
	}
	return nil
}

// flushLocked flushes a transient object we created.
func (s *Store) flushLocked(ctx context.Context, h tpm2.TPMHandle) error {
	if _, err := do(ctx, s, tpm2.FlushContext{FlushHandle: h}); err != nil {
		return fmt.Errorf("tpmstore: TPM2_FlushContext on handle %#x: %w", uint32(h), err)
	}
	delete(s.transient, h)
	return nil
}

// Open returns the key persisted at uri's handle (a *Key), or an error
// wrapping keystore.ErrNotFound if the handle is empty. An object that is not
// an unrestricted ECDSA or RSA signing key fails with
// keystore.ErrUnsupported. Keys made by other tools may have their scheme
// bound to one hash; they then sign only with that.
func (s *Store) Open(ctx context.Context, uri *keystore.URI) (keystore.Key, error) {
	handle, err := s.checkURI(uri)
	if err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.unlock()
	return s.openLocked(ctx, uri, handle)
}

func (s *Store) openLocked(ctx context.Context, uri *keystore.URI, handle tpm2.TPMHandle) (*Key, error) {
	pub, name, err := s.readPublicLocked(ctx, handle)
	if err != nil {
		return nil, err
	}
	return newKey(s, uri, handle, pub, name)
}

// readPublicLocked reads the public area at handle; a missing object is
// keystore.ErrNotFound.
func (s *Store) readPublicLocked(ctx context.Context, handle tpm2.TPMHandle) (*tpm2.TPMTPublic, tpm2.TPM2BName, error) {
	rsp, err := do(ctx, s, tpm2.ReadPublic{ObjectHandle: handle})
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return nil, tpm2.TPM2BName{}, fmt.Errorf("tpmstore: TPM2_ReadPublic on handle %#x: %w", uint32(handle), keystore.ErrNotFound)
		}
		return nil, tpm2.TPM2BName{}, fmt.Errorf("tpmstore: TPM2_ReadPublic on handle %#x: %w", uint32(handle), err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("tpmstore: TPM2_ReadPublic on handle %#x: bad public area: %w", uint32(handle), err)
	}
	return pub, rsp.Name, nil
}

// Delete evicts whatever object is persisted at uri's handle
// (TPM2_EvictControl with owner authorization). Deleting an empty handle is
// not an error.
func (s *Store) Delete(ctx context.Context, uri *keystore.URI) error {
	handle, err := s.checkURI(uri)
	if err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	_, name, err := s.readPublicLocked(ctx, handle)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = do(ctx, s, tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     tpm2.NamedHandle{Handle: handle, Name: name},
		PersistentHandle: handle,
	})
	if err != nil {
		return fmt.Errorf("tpmstore: TPM2_EvictControl removing handle %#x: %w", uint32(handle), err)
	}
	s.log.Debug("tpm key deleted", "op", "delete", "key", uri.Redacted())
	return nil
}

// TransientHandles returns the number of transient objects loaded in the TPM
// (TPM2_GetCapability(TPM_CAP_HANDLES) from TRANSIENT_FIRST). Through the
// kernel resource manager (/dev/tpmrm0) that is this connection's objects
// only; on an emulator or /dev/tpm0 it is every object in the TPM. A Store
// keeps none between calls, so tests expect 0.
func (s *Store) TransientHandles(ctx context.Context) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.unlock()
	n := 0
	next := uint32(tpm2.TPMHTTransient) << 24
	for {
		rsp, err := do(ctx, s, tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: next, PropertyCount: 64})
		if err != nil {
			return 0, fmt.Errorf("tpmstore: TPM2_GetCapability(TPM_CAP_HANDLES, TRANSIENT_FIRST): %w", err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return 0, fmt.Errorf("tpmstore: TPM2_GetCapability(TPM_CAP_HANDLES): %w", err)
		}
		for _, h := range hs.Handle {
			if uint32(h)>>24 == uint32(tpm2.TPMHTTransient) {
				n++
			}
		}
		if !rsp.MoreData || len(hs.Handle) == 0 {
			return n, nil
		}
		next = uint32(hs.Handle[len(hs.Handle)-1]) + 1
	}
}

// PublicAttributes reads the public area of the object at uri's handle with
// TPM2_ReadPublic and returns its object attributes, so callers can check
// FixedTPM, FixedParent and SensitiveDataOrigin straight from the TPM.
func (s *Store) PublicAttributes(ctx context.Context, uri *keystore.URI) (tpm2.TPMAObject, error) {
	handle, err := s.checkURI(uri)
	if err != nil {
		return tpm2.TPMAObject{}, err
	}
	if err := s.lock(ctx); err != nil {
		return tpm2.TPMAObject{}, err
	}
	defer s.unlock()
	pub, _, err := s.readPublicLocked(ctx, handle)
	if err != nil {
		return tpm2.TPMAObject{}, err
	}
	return pub.ObjectAttributes, nil
}

// Close flushes any transient object left behind, sends
// TPM2_Shutdown(CLEAR) to an emulator the Store connected to itself (not to
// /dev/tpm* devices, nor to Options.Transport), and closes the connection.
// Keys from the store fail afterwards. Closing twice is not an error.
func (s *Store) Close() error {
	s.sem <- struct{}{}
	defer s.unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	ctx := context.Background()
	var errs []error
	for h := range s.transient {
		if err := s.flushLocked(ctx, h); err != nil {
			errs = append(errs, err)
		}
	}
	if s.shutdown {
		if _, err := do(ctx, s, tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}); err != nil {
			errs = append(errs, fmt.Errorf("tpmstore: TPM2_Shutdown(CLEAR): %w", err))
		}
	}
	if err := s.tpm.Close(); err != nil {
		errs = append(errs, fmt.Errorf("tpmstore: close TPM connection: %w", err))
	}
	return errors.Join(errs...)
}

// isTPMError reports whether err is a response code from the TPM (rather
// than a transport failure).
func isTPMError(err error) bool {
	var rc tpm2.TPMRC
	return errors.As(err, &rc)
}
