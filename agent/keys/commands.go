package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/thingd/thingd/keystore"
)

// withKeyStore opens the store for uri, runs fn and closes the store,
// reporting a close error only if fn succeeded.
func withKeyStore(ctx context.Context, uri *keystore.URI, logger *slog.Logger, fn func(keystore.Store) error) (err error) {
	s, err := OpenStore(ctx, uri, logger)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return fn(s)
}

// Generate creates a key at uri and describes it.
func Generate(ctx context.Context, uri *keystore.URI, alg keystore.Algorithm, logger *slog.Logger) (Description, error) {
	var d Description
	err := withKeyStore(ctx, uri, logger, func(s keystore.Store) error {
		k, err := s.Generate(ctx, uri, alg)
		if err != nil {
			if errors.Is(err, keystore.ErrExists) {
				return fmt.Errorf("%w (delete it first with `thingd key delete --key URI`, or choose another object/handle)", err)
			}
			return err
		}
		d, err = Describe(k)
		return err
	})
	return d, err
}

// Info describes the existing key at uri.
func Info(ctx context.Context, uri *keystore.URI, logger *slog.Logger) (Description, error) {
	var d Description
	err := withKeyStore(ctx, uri, logger, func(s keystore.Store) error {
		k, err := s.Open(ctx, uri)
		if err != nil {
			return err
		}
		d, err = Describe(k)
		return err
	})
	return d, err
}

// CSR returns a PEM certificate request for thing signed by the key at uri.
func CSR(ctx context.Context, uri *keystore.URI, thing string, logger *slog.Logger) ([]byte, error) {
	var out []byte
	err := withKeyStore(ctx, uri, logger, func(s keystore.Store) error {
		k, err := s.Open(ctx, uri)
		if err != nil {
			return err
		}
		out, err = keystore.CreateCSR(k, thing)
		return err
	})
	return out, err
}

// Delete destroys the key at uri; a missing key is not an error.
func Delete(ctx context.Context, uri *keystore.URI, logger *slog.Logger) error {
	return withKeyStore(ctx, uri, logger, func(s keystore.Store) error {
		return s.Delete(ctx, uri)
	})
}
