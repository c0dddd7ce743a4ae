// Package p11store is the PKCS#11 backend of [keystore]: device keys live on
// a PKCS#11 token (a smart card, an HSM, SoftHSM2 for tests) and are used
// through [keystore.Key], a [crypto.Signer] whose private half never leaves
// the token. It talks to the module directly through
// github.com/miekg/pkcs11.
//
// # URIs
//
// A [Store] is opened on one module and one token, named by an RFC 7512 URI:
//
//	pkcs11:token=thingd?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/thingd/pin
//
// The token is chosen by its label (token=), its serial number (serial=) or
// its slot (slot-id=); manufacturer= and model=, when present, must match
// too. Keys are then named by URIs of the same module and token with an
// object label (object=) and/or an object id (id=, percent-encoded bytes):
//
//	pkcs11:token=thingd;object=device-a?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/thingd/pin
//
// A key URI that names another module or another token is refused.
//
// # Keys
//
// [Store.Generate] makes the key pair on the token: the private key is a
// token object with CKA_PRIVATE, CKA_SENSITIVE and CKA_SIGN set and
// CKA_EXTRACTABLE clear, the public key a token object next to it with the
// same CKA_LABEL and CKA_ID. When the URI has no id=, the id is derived from
// the label (see [DerivedID]) so that the pair can be found again by either.
// Supported algorithms are ECDSA P-256 (the default) and P-384 (CKM_ECDSA)
// and RSA 2048 and 3072 (PKCS #1 v1.5 through CKM_RSA_PKCS, PSS through
// CKM_RSA_PKCS_PSS). Anything else fails with [keystore.ErrUnsupported].
//
// # Modules, sessions and concurrency
//
// C_Initialize and C_Finalize apply to the whole process, so a module is
// loaded once per module path and shared by every Store that uses it; it is
// finalized and unloaded when the last of those Stores is closed. A module
// that something else in the process had already initialized is left
// initialized.
//
// PKCS#11 sessions must not be used by two threads at once, while a
// [crypto.Signer] may be. Each Store therefore keeps a bounded pool of
// sessions (Options.MaxSessions, 4 by default): an operation takes a
// session, and callers wait, bounded by their context, while all are busy.
// Idle sessions stay open for the next operation, so the number of open
// sessions is bounded and stable (see [Store.OpenSessions]). The login is per
// application and token: every new session logs in as the user, and an
// already logged-in token is accepted.
//
// # Recovery
//
// Tokens go away: a card is pulled, a daemon restarts, sessions are closed
// behind the Store's back. When an operation fails because its session, its
// login or its slot is gone (CKR_SESSION_HANDLE_INVALID,
// CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN, CKR_TOKEN_NOT_PRESENT,
// CKR_DEVICE_REMOVED, CKR_SLOT_ID_INVALID), the Store waits until no
// session of the module is in use, closes every session of the slot
// (C_CloseAllSessions, which also makes the sessions of the other Stores of
// the process there stale), finds the token again by its label (its slot
// may have changed), opens and logs in a new session, finds the key again by
// label and id, and retries the operation once. An object handle that
// became invalid (CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID) is
// looked up again and the operation retried once. A key that is gone by
// then fails with [keystore.ErrNotFound]; a key replaced by a different key
// under the same name is never used in place of the old one.
//
// Modules give the handle of a closed session to the next session opened.
// A session that failed as lost is therefore never used or closed again,
// and no new session is opened on its slot until the slot has been reset.
//
// SoftHSM2 reads its token directory only in C_Initialize. A token
// re-initialised in place (softhsm2-util --init-token --token LABEL) is seen
// at once: its old keys are reported missing and new ones can be made. A
// token deleted and created anew (--delete-token, then --init-token --free)
// is seen only once every Store on the module has been closed, so that the
// module is finalized and initialized again.
//
// # Test hooks
//
// [Store.OpenSessions], [Store.RawAttributes], [Store.RawSigner] and
// [Store.CloseAllSessionsForTest] exist for tests, the keystore conformance
// suite and benchmarks: they count sessions, read the protection attributes
// of a key straight from the token, sign with bare C_Sign calls and pull the
// sessions from under the pool. Production code has no use for them.
//
// # Errors and secrets
//
// Errors start with "p11store: ", say what failed, wrap the PKCS#11 error
// (a [github.com/miekg/pkcs11.Error]) and, where it applies, one of
// [keystore.ErrNotFound], [keystore.ErrExists] and [keystore.ErrUnsupported].
// The PIN never appears in an error or a log record; URIs appear only in
// their redacted form.
package p11store
