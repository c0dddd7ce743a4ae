package p11store_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/p11store"
)

func TestParseECPoint(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		priv, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		oid := map[elliptic.Curve]asn1.ObjectIdentifier{
			elliptic.P256(): {1, 2, 840, 10045, 3, 1, 7},
			elliptic.P384(): {1, 3, 132, 0, 34},
		}[curve]
		params, _ := asn1.Marshal(oid)
		raw, err := priv.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		wrapped, _ := asn1.Marshal(raw)
		for name, point := range map[string][]byte{"raw": raw, "DER OCTET STRING": wrapped} {
			pub, err := p11store.ParseEC(params, point)
			if err != nil {
				t.Errorf("%s %s: %v", curve.Params().Name, name, err)
				continue
			}
			if !pub.Equal(&priv.PublicKey) {
				t.Errorf("%s %s: wrong public key", curve.Params().Name, name)
			}
		}
		if _, err := p11store.ParseEC(params, raw[:len(raw)-1]); err == nil {
			t.Errorf("%s: a truncated point parsed", curve.Params().Name)
		}
	}
	p521, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 132, 0, 35})
	if _, err := p11store.ParseEC(p521, []byte{4, 1, 2}); !errors.Is(err, keystore.ErrUnsupported) {
		t.Errorf("P-521: %v, want ErrUnsupported", err)
	}
}

func TestECDSADER(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("x"))
	der, _ := ecdsa.SignASN1(rand.Reader, priv, digest[:])
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	rs.R.FillBytes(raw[:32])
	rs.S.FillBytes(raw[32:])
	got, err := p11store.ECDSADER(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], got) {
		t.Fatal("converted signature does not verify")
	}
	for _, bad := range [][]byte{nil, make([]byte, 63)} {
		if _, err := p11store.ECDSADER(bad); err == nil {
			t.Errorf("ECDSADER(%d bytes) succeeded", len(bad))
		}
	}
}
