package identity

import (
	"strings"
	"testing"

	"github.com/thingd/thingd/keystore"
)

func TestDeriveSlotB(t *testing.T) {
	tests := []struct {
		a, want, err string
	}{
		{"pkcs11:token=thingd;object=device?module-path=/m.so&pin-source=file:/p", "pkcs11:token=thingd;object=device-b?module-path=/m.so&pin-source=file:/p", ""},
		{"pkcs11:token=thingd;object=device;id=%01?module-path=/m.so", "pkcs11:token=thingd;object=device-b;id=%01%0B?module-path=/m.so", ""},
		{"tpm:handle=0x81000100?device=tcp:127.0.0.1:2321", "tpm:handle=0x81000101?device=tcp:127.0.0.1:2321", ""},
		{"tpm:handle=0x81ffffff", "", "cannot derive slot B"},
		{"file:/var/lib/thingd/key.pem", "file:/var/lib/thingd/key-b.pem", ""},
		{"file:/var/lib/thingd/key", "file:/var/lib/thingd/key-b", ""},
	}
	for _, tc := range tests {
		b, err := DeriveSlotB(keystore.MustParseURI(tc.a))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.a, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.a, err)
			continue
		}
		if got := b.Secret(); !strings.EqualFold(got, tc.want) {
			t.Errorf("DeriveSlotB(%s) = %s, want %s", tc.a, got, tc.want)
		}
	}
}

func TestActiveRoundTrip(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadActive(dir, "/etc/thingd/device.pem")
	if err != nil || a.Slot != SlotA || a.CertificateFile != "/etc/thingd/device.pem" {
		t.Fatalf("default active %+v %v", a, err)
	}
	want := Active{Slot: SlotB, CertificateFile: SlotCertificatePath(dir, SlotB), CertificateID: "ab"}
	if err := SaveActive(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadActive(dir, "/etc/thingd/device.pem")
	if err != nil || got != want {
		t.Fatalf("got %+v %v, want %+v", got, err, want)
	}
	if SlotA.Other() != SlotB || SlotB.Other() != SlotA || Slot("c").Valid() {
		t.Fatal("slot helpers")
	}
}
