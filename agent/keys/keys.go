// Package keys opens the key store a key URI names and describes keys for
// people (thingd key info, status, logs). It is the only place that knows
// every keystore backend.
package keys

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/filestore"
	"github.com/thingd/thingd/keystore/p11store"
	"github.com/thingd/thingd/keystore/tpmstore"
)

// OpenStore opens the key module uri lives in: a PKCS#11 token, a TPM or the
// development file store. logger may be nil.
func OpenStore(ctx context.Context, uri *keystore.URI, logger *slog.Logger) (keystore.Store, error) {
	switch uri.Scheme {
	case keystore.SchemePKCS11:
		return p11store.Open(ctx, uri, p11store.Options{Logger: logger})
	case keystore.SchemeTPM:
		return tpmstore.Open(ctx, uri, tpmstore.Options{Logger: logger})
	case keystore.SchemeFile:
		return filestore.New(), nil
	}
	return nil, fmt.Errorf("keys: no key store for scheme %q", uri.Scheme)
}

// Description is what `thingd key info` prints about a key.
type Description struct {
	Algorithm      keystore.Algorithm `json:"algorithm"`
	Fingerprint    string             `json:"publicKeySha256"`
	Kind           keystore.Kind      `json:"keyStore"`
	Location       string             `json:"location"`
	HardwareBacked bool               `json:"hardwareBacked"`
	NonExtractable bool               `json:"nonExtractable"`
	Insecure       bool               `json:"insecure"`
	Warning        string             `json:"warning,omitempty"`
}

// InsecureWarning is shown wherever a development file key is reported.
const InsecureWarning = "INSECURE: file key store, for development only; the private key is a plain file on disk"

// Describe summarises key for people.
func Describe(key keystore.Key) (Description, error) {
	info := key.Info()
	fp, err := keystore.Fingerprint(key.Public())
	if err != nil {
		return Description{}, err
	}
	d := Description{
		Algorithm:      info.Algorithm,
		Fingerprint:    fp,
		Kind:           info.Kind,
		Location:       info.Location,
		HardwareBacked: info.HardwareBacked,
		NonExtractable: info.NonExtractable,
		Insecure:       info.Insecure,
	}
	if info.Insecure {
		d.Warning = InsecureWarning
	}
	return d, nil
}
