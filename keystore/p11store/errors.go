package p11store

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
)

// errStoreClosed is returned by operations on a closed Store.
var errStoreClosed = errors.New("p11store: store is closed")

// rv returns the PKCS#11 return value inside err, or 0 (CKR_OK).
func rv(err error) uint {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return uint(e)
	}
	return pkcs11.CKR_OK
}

// sessionLost reports whether err means the session, its login or the slot is
// gone: the pool must be dropped and the token found again.
func sessionLost(err error) bool {
	switch rv(err) {
	case pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_SLOT_ID_INVALID:
		return true
	}
	return false
}

// objectLost reports whether err means an object handle is no longer valid:
// the object must be found again.
func objectLost(err error) bool {
	switch rv(err) {
	case pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID:
		return true
	}
	return false
}

// recoverable reports whether an operation that failed with err is worth one
// retry after recovery.
func recoverable(err error) bool { return sessionLost(err) || objectLost(err) }

// unsupported reports whether err is the module refusing a mechanism, a
// curve or a parameter.
func unsupported(err error) bool {
	switch rv(err) {
	case pkcs11.CKR_MECHANISM_INVALID,
		pkcs11.CKR_MECHANISM_PARAM_INVALID,
		pkcs11.CKR_KEY_TYPE_INCONSISTENT,
		pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED,
		pkcs11.CKR_DOMAIN_PARAMS_INVALID,
		pkcs11.CKR_CURVE_NOT_SUPPORTED,
		pkcs11.CKR_TEMPLATE_INCONSISTENT,
		pkcs11.CKR_ATTRIBUTE_VALUE_INVALID,
		pkcs11.CKR_FUNCTION_NOT_SUPPORTED:
		return true
	}
	return false
}

// opError is the error of an operation: "p11store: OP: CAUSE", where a
// "p11store: " that starts CAUSE is not repeated.
type opError struct {
	op    string
	cause error
	kind  error // a keystore sentinel to add, or nil
}

func (e *opError) Error() string {
	msg := strings.TrimPrefix(e.cause.Error(), "p11store: ")
	if e.kind != nil && !errors.Is(e.cause, e.kind) {
		msg = e.kind.Error() + ": " + msg
	}
	return "p11store: " + e.op + ": " + msg
}

func (e *opError) Unwrap() []error {
	if e.kind != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.cause}
}

// wrapOp says which operation failed with err.
func wrapOp(op string, err error) error { return &opError{op: op, cause: err} }

// wrapUnsupported is wrapOp, adding keystore.ErrUnsupported when the module
// refused what was asked.
func wrapUnsupported(op string, err error) error {
	if unsupported(err) {
		return &opError{op: op, cause: err, kind: keystore.ErrUnsupported}
	}
	return wrapOp(op, err)
}

// loginError turns a failed C_Login into a message a person can act on. It
// never includes the PIN.
func loginError(token string, err error) error {
	switch rv(err) {
	case pkcs11.CKR_PIN_INCORRECT:
		return fmt.Errorf("p11store: wrong PIN for token %q: %w", token, err)
	case pkcs11.CKR_PIN_LOCKED:
		return fmt.Errorf("p11store: PIN of token %q is locked after too many wrong PINs (unlock it with the SO PIN): %w", token, err)
	case pkcs11.CKR_PIN_LEN_RANGE:
		return fmt.Errorf("p11store: PIN for token %q has a length the token does not accept: %w", token, err)
	case pkcs11.CKR_PIN_EXPIRED:
		return fmt.Errorf("p11store: PIN of token %q has expired (set a new one): %w", token, err)
	case pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
		return fmt.Errorf("p11store: token %q has no user PIN yet (initialize it): %w", token, err)
	}
	return fmt.Errorf("p11store: log in to token %q: %w", token, err)
}
