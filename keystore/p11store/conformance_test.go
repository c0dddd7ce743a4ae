package p11store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
	"github.com/thingd/thingd/keystore/p11store"
)

// TestConformance runs the keystore conformance suite against SoftHSM2, on a
// fresh token for every subtest.
func TestConformance(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) *keystoretest.Harness {
		tk := newToken(t)
		return &keystoretest.Harness{
			Name: "softhsm",
			NewStore: func(t *testing.T) keystore.Store {
				s, err := p11store.Open(context.Background(), tk.storeURI(), p11store.Options{})
				if err != nil {
					t.Fatalf("p11store.Open: %v", err)
				}
				return s
			},
			KeyURI: func(t *testing.T, n int) *keystore.URI {
				return tk.keyURI(fmt.Sprintf("key%d", n))
			},
			Algorithms:          keystore.Algorithms,
			CheckNonExtractable: checkNonExtractable,
			Resources: func(t *testing.T, s keystore.Store) int {
				return s.(*p11store.Store).OpenSessions()
			},
			Kind: keystore.KindPKCS11,
		}
	})
}

// checkNonExtractable asserts through C_GetAttributeValue that the private
// key at uri is sensitive, not extractable, and that its value cannot be read.
func checkNonExtractable(t *testing.T, s keystore.Store, uri *keystore.URI) {
	t.Helper()
	ra, err := s.(*p11store.Store).RawAttributes(context.Background(), uri)
	if err != nil {
		t.Fatalf("RawAttributes: %v", err)
	}
	if ra.Extractable {
		t.Error("CKA_EXTRACTABLE is true")
	}
	if !ra.Sensitive {
		t.Error("CKA_SENSITIVE is false")
	}
	if !ra.AlwaysSensitive || !ra.NeverExtractable {
		t.Errorf("CKA_ALWAYS_SENSITIVE = %v, CKA_NEVER_EXTRACTABLE = %v; want both true for a key made on the token", ra.AlwaysSensitive, ra.NeverExtractable)
	}
	if ra.ValueErr == nil {
		t.Fatal("the token returned the private key value")
	}
	if !errors.Is(ra.ValueErr, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
		t.Errorf("reading the private key value failed with %v, want CKR_ATTRIBUTE_SENSITIVE", ra.ValueErr)
	}
}
