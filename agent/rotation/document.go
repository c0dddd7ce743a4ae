package rotation

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/thingd/thingd/keystore"
)

// Operation is the job document operation this package handles.
const Operation = "rotate-certificate"

// DefaultTemplate is the provisioning template used when the job document
// names none.
const DefaultTemplate = "thingd-rotation"

// Document is a parsed rotate-certificate job document (design §4):
//
//	{"operation": "rotate-certificate", "keyAlgorithm": "ECDSA_P256",
//	 "provisioningTemplate": "thingd-rotation", "verifyTimeoutSeconds": 30}
//
// Unknown fields are ignored.
type Document struct {
	// Algorithm of the new key; "" means the same as the active key.
	Algorithm keystore.Algorithm
	// Template is the provisioning template for RegisterThing.
	Template string
	// VerifyTimeout bounds the proof that the new identity works; 0 means
	// the configured default.
	VerifyTimeout time.Duration
}

// ParseDocument reads a job document. A wrong type, an unknown algorithm or
// an out-of-range timeout is an error that says which field is wrong; the
// engine then reports the execution REJECTED with it.
func ParseDocument(raw []byte) (Document, error) {
	var d struct {
		Operation            *string          `json:"operation"`
		KeyAlgorithm         *string          `json:"keyAlgorithm"`
		ProvisioningTemplate *string          `json:"provisioningTemplate"`
		VerifyTimeoutSeconds *json.RawMessage `json:"verifyTimeoutSeconds"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return Document{}, fmt.Errorf("job document: %w", err)
	}
	if d.Operation == nil || *d.Operation != Operation {
		return Document{}, fmt.Errorf("job document: operation is not %q", Operation)
	}
	doc := Document{Template: DefaultTemplate}
	if d.KeyAlgorithm != nil {
		a, err := keystore.ParseAlgorithm(*d.KeyAlgorithm)
		if err != nil || *d.KeyAlgorithm == "" {
			return Document{}, fmt.Errorf("job document: keyAlgorithm %q is not one of ECDSA_P256, ECDSA_P384, RSA_2048, RSA_3072", *d.KeyAlgorithm)
		}
		doc.Algorithm = a
	}
	if d.ProvisioningTemplate != nil {
		t := *d.ProvisioningTemplate
		if !validTemplate(t) {
			return Document{}, fmt.Errorf("job document: provisioningTemplate %q is not a template name (1-36 of [a-zA-Z0-9_-])", t)
		}
		doc.Template = t
	}
	if d.VerifyTimeoutSeconds != nil {
		var secs float64
		if err := json.Unmarshal(*d.VerifyTimeoutSeconds, &secs); err != nil || secs < 1 || secs > 3600 {
			return Document{}, fmt.Errorf("job document: verifyTimeoutSeconds %s is not a number of seconds from 1 to 3600", string(*d.VerifyTimeoutSeconds))
		}
		doc.VerifyTimeout = time.Duration(secs * float64(time.Second))
	}
	return doc, nil
}

func validTemplate(t string) bool {
	if len(t) < 1 || len(t) > 36 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
