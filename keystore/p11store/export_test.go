package p11store

// LoginError exposes loginError, whose PIN-locked and PIN-expired branches
// SoftHSM2 cannot be made to reach.
var LoginError = loginError

// ParseEC and ECDSADER expose the parsing of CKA_EC_POINT and the conversion
// of CKM_ECDSA signatures for table tests.
var (
	ParseEC  = parseEC
	ECDSADER = ecdsaDER
)
