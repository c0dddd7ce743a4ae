// Package tpmstore keeps device keys in a TPM 2.0, as persistent objects
// addressed by tpm: URIs, and hands them out as [keystore.Key] signers. It
// talks to the TPM with the go-tpm tpm2 direct API and needs no cgo.
//
// # URIs and transports
//
// [Open] picks the TPM from the URI's device query attribute:
//
//	tpm:handle=0x81000100                              /dev/tpmrm0, else /dev/tpm0
//	tpm:handle=0x81000100?device=/dev/tpmrm0           that character device
//	tpm:handle=0x81000100?device=tcp:127.0.0.1:2321    swtpm over TCP: commands on PORT,
//	                                                   control on PORT+1; one client at a time
//	tpm:handle=0x81000100?device=unix:/run/swtpm/sock  swtpm's unixio server socket
//
// [Options].Transport replaces all of that with a connection the caller made
// (tests inject the go-tpm-tools simulator this way).
//
// # Keys
//
// [Store.Generate] creates an ordinary key, with fresh randomness, under the
// owner hierarchy's storage root key (SRK) and makes it persistent at the
// URI's handle. The SRK is the standard TCG ECC P-256 template
// (tpm2.ECCSRKTemplate). It is not persisted: Generate recreates it with
// TPM2_CreatePrimary each time (the template is deterministic, so it is
// always the same key) and flushes it afterwards, so the package never takes
// an NV slot for it and never collides with an SRK someone else persisted at
// 0x81000001. Only Generate needs the SRK: a persistent key is used directly.
// The owner hierarchy must have an empty authorization value.
//
// Device keys carry fixedTPM, fixedParent, sensitiveDataOrigin,
// userWithAuth, noDA and sign (not decrypt, not restricted), an empty
// authorization value, and signing scheme TPM_ALG_NULL so the scheme (ECDSA,
// RSASSA, RSAPSS) and hash are chosen per signature. noDA matters: a TPM
// that loses power after a DA-protected object was used, without
// TPM2_Shutdown since, counts that as a failed authorization, and after a
// few of them (three on swtpm) every DA-protected key is refused with
// TPM_RC_LOCKOUT for a long time; using a noDA key neither counts nor is
// refused.
//
// Generate never makes a primary key: a primary from a fixed template is
// deterministic, so "rotating" to a new primary would give the same key back.
//
// The algorithms are ECDSA P-256 and P-384, RSA-2048 and RSA-3072, as far
// as the TPM implements them; Generate asks the TPM (TPM2_TestParms) and
// fails with [keystore.ErrUnsupported] otherwise. The go-tpm-tools
// simulator does not implement RSA-3072; swtpm 0.7 implements all four. Both
// implement SHA-1/256/384/512.
//
// # Signing
//
// [Key.Sign] sends TPM2_Sign on the persistent handle with a null hash-check
// ticket. ECDSA signatures come back ASN.1 DER encoded. RSA keys sign PKCS #1
// v1.5 (RSASSA) or, given *rsa.PSSOptions, PSS with a salt as long as the
// hash, which is what TLS asks for (rsa.PSSSaltLengthEqualsHash) and what
// rsa.PSSSaltLengthAuto is taken to mean; any other salt length is refused
// with keystore.ErrUnsupported. Every PSS signature is verified before it is
// returned, so a TPM that uses another salt length fails loudly instead of
// producing TLS handshakes the peer rejects. A hash the TPM does not
// implement fails with keystore.ErrUnsupported. [Key.SupportedSignatureAlgorithms]
// lists the TLS signature schemes the key can produce, and
// keystore.TLSCertificate uses it to restrict what TLS offers.
//
// # Concurrency and resources
//
// A Store and its keys are safe for concurrent use. All TPM commands of a
// Store are serialised (a TPM runs one command at a time and swtpm serves one
// connection at a time). Commands refused with TPM_RC_RETRY, TPM_RC_YIELDED
// or TPM_RC_TESTING are retried a few times with a short backoff. Every
// transient object (the SRK, a loaded key during Generate) is flushed before
// the call that made it returns; [Store.TransientHandles] lets tests check.
//
// [Store.Close] flushes anything left, sends TPM2_Shutdown(CLEAR) when the
// Store connected to an emulator itself (tcp: and unix: devices), so an
// orderly stop is not counted against the dictionary-attack counter, and
// closes the connection. It does not shut down /dev/tpm* devices (the kernel
// does that at reboot, and other programs share the TPM) nor a caller's
// Options.Transport.
package tpmstore
