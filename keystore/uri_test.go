package keystore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const softhsm = "/usr/lib/softhsm/libsofthsm2.so"

func TestParseURI(t *testing.T) {
	cases := []struct {
		in       string
		wantPath []Attr
		wantQ    []Attr
		redacted string
	}{
		{
			in:       "pkcs11:token=thingd;object=device?module-path=" + softhsm + "&pin-source=file:/etc/thingd/pin",
			wantPath: []Attr{{"token", "thingd"}, {"object", "device"}},
			wantQ:    []Attr{{"module-path", softhsm}, {"pin-source", "file:/etc/thingd/pin"}},
			redacted: "pkcs11:token=thingd;object=device?module-path=" + softhsm + "&pin-source=file:/etc/thingd/pin",
		},
		{
			in:       "pkcs11:token=my%20token;id=%01%02;object=a?pin-value=s3cret&module-path=" + softhsm,
			wantPath: []Attr{{"token", "my token"}, {"id", "\x01\x02"}, {"object", "a"}},
			wantQ:    []Attr{{"pin-value", "s3cret"}, {"module-path", softhsm}},
			redacted: "pkcs11:token=my%20token;id=%01%02;object=a?module-path=" + softhsm,
		},
		{
			in:       "PKCS11:Token=t?module-path=" + softhsm,
			wantPath: []Attr{{"token", "t"}},
			wantQ:    []Attr{{"module-path", softhsm}},
			redacted: "pkcs11:token=t?module-path=" + softhsm,
		},
		{
			in:       "tpm:handle=0x81000100",
			wantPath: []Attr{{"handle", "0x81000100"}},
			redacted: "tpm:handle=0x81000100",
		},
		{
			in:       "tpm:handle=0x81000100?device=tcp:127.0.0.1:2321",
			wantPath: []Attr{{"handle", "0x81000100"}},
			wantQ:    []Attr{{"device", "tcp:127.0.0.1:2321"}},
			redacted: "tpm:handle=0x81000100?device=tcp:127.0.0.1:2321",
		},
		{
			in:       "file:/var/lib/thingd/key.pem",
			wantPath: []Attr{{"path", "/var/lib/thingd/key.pem"}},
			redacted: "file:/var/lib/thingd/key.pem",
		},
		{
			in:       "file:///var/lib/thingd/my%20key.pem",
			wantPath: []Attr{{"path", "/var/lib/thingd/my key.pem"}},
			redacted: "file:/var/lib/thingd/my%20key.pem",
		},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			u, err := ParseURI(c.in)
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			if d := cmp.Diff(c.wantPath, u.Path); d != "" {
				t.Errorf("path attributes (-want +got):\n%s", d)
			}
			if d := cmp.Diff(c.wantQ, u.Query); d != "" {
				t.Errorf("query attributes (-want +got):\n%s", d)
			}
			if got := u.Redacted(); got != c.redacted {
				t.Errorf("Redacted() = %q, want %q", got, c.redacted)
			}
			if u.String() != u.Redacted() {
				t.Errorf("String() differs from Redacted()")
			}
			// The full form parses back to the same URI.
			u2, err := ParseURI(u.Secret())
			if err != nil {
				t.Fatalf("reparse %q: %v", u.Secret(), err)
			}
			if d := cmp.Diff(u, u2); d != "" {
				t.Errorf("round trip (-first +second):\n%s", d)
			}
		})
	}
}

func TestParseURIErrors(t *testing.T) {
	cases := []struct {
		in   string
		want string // substring naming the wrong part
	}{
		{"", "no scheme"},
		{"/dev/tpm0", "no scheme"},
		{"pkcs12:token=a", `scheme: unknown scheme "pkcs12"`},
		{"pkcs11:tokn=a?module-path=" + softhsm, `path attribute "tokn": unknown attribute`},
		{"pkcs11:token=a;token=b?module-path=" + softhsm, `path attribute "token": given twice`},
		{"pkcs11:token=a;object?module-path=" + softhsm, `path attribute "object": missing '='`},
		{"pkcs11:object=a?module-path=" + softhsm, "no token"},
		{"pkcs11:token=a", "no module-path"},
		{"pkcs11:token=a?module-path=libsofthsm2.so", `attribute "module-path": "libsofthsm2.so" is not an absolute path`},
		{"pkcs11:token=a?module-path=" + softhsm + "&pin=1234", `query attribute "pin": unknown attribute`},
		{"pkcs11:token=a?module-path=" + softhsm + "&pin-source=/p&pin-value=9999", `attribute "pin-value": give pin-source or pin-value, not both`},
		{"pkcs11:token=a?module-path=" + softhsm + "&pin-source=http://x/pin", `attribute "pin-source"`},
		{"pkcs11:token=%zz?module-path=" + softhsm, `path attribute "token": bad percent-encoding`},
		{"pkcs11:token=a;slot-id=x1?module-path=" + softhsm, `attribute "slot-id"`},
		{"pkcs11:token=a;type=secret-key?module-path=" + softhsm, `attribute "type"`},
		{"tpm:handle=0x80000001", `attribute "handle": 0x80000001 is not a persistent handle`},
		{"tpm:handle=abc", `attribute "handle": "abc" is not a number`},
		{"tpm:hndl=0x81000100", `path attribute "hndl": unknown attribute`},
		{"tpm:handle=0x81000100?device=localhost:2321", `attribute "device"`},
		{"tpm:handle=0x81000100?device=tcp:localhost", `attribute "device": "tcp:localhost": want tcp:HOST:PORT`},
		{"file:", "empty file path"},
		{"file:key.pem", `path: "key.pem" is not an absolute path`},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			_, err := ParseURI(c.in)
			if err == nil {
				t.Fatalf("ParseURI(%q) succeeded, want an error containing %q", c.in, c.want)
			}
			var ue *URIError
			if !errors.As(err, &ue) {
				t.Fatalf("error %T is not a *URIError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestParseURIErrorNeverShowsPIN(t *testing.T) {
	for _, in := range []string{
		"pkcs11:tokn=a?module-path=" + softhsm + "&pin-value=SECRETPIN",
		"pkcs11:token=a?pin-value=SECRETPIN&module-path=rel.so",
		"pkcs11:token=a?module-path=" + softhsm + "&pin-value=SECRETPIN%zz",
		"pkcs11:token=a?module-path=" + softhsm + "&pin-value=SECRETPIN&pin-source=/x",
	} {
		_, err := ParseURI(in)
		if err == nil {
			t.Fatalf("ParseURI(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), "SECRETPIN") {
			t.Fatalf("error shows the PIN: %v", err)
		}
	}
}

func TestPIN(t *testing.T) {
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		uri    string
		pin    string
		ok     bool
		errSub string
	}{
		{"pkcs11:token=a?module-path=" + softhsm + "&pin-source=file:" + pinFile, "1234", true, ""},
		{"pkcs11:token=a?module-path=" + softhsm + "&pin-source=" + pinFile, "1234", true, ""},
		{"pkcs11:token=a?module-path=" + softhsm + "&pin-value=9876", "9876", true, ""},
		{"pkcs11:token=a?module-path=" + softhsm, "", false, ""},
		{"pkcs11:token=a?module-path=" + softhsm + "&pin-source=" + filepath.Join(dir, "missing"), "", false, "read pin-source"},
	}
	for _, c := range cases {
		u := MustParseURI(c.uri)
		pin, ok, err := u.PIN()
		if c.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), c.errSub) {
				t.Errorf("%s: err = %v, want %q", c.uri, err, c.errSub)
			}
			continue
		}
		if err != nil || pin != c.pin || ok != c.ok {
			t.Errorf("%s: PIN() = %q, %v, %v; want %q, %v", c.uri, pin, ok, err, c.pin, c.ok)
		}
	}
}

func TestWithAttr(t *testing.T) {
	u := MustParseURI("pkcs11:token=t;object=device?module-path=" + softhsm + "&pin-value=1")
	b := u.WithAttr("object", "device-b")
	if b.Attr("object") != "device-b" || u.Attr("object") != "device" {
		t.Fatalf("WithAttr changed the original or did not set: %v / %v", u, b)
	}
	c := u.WithAttr("id", "\x02")
	if c.Attr("id") != "\x02" || len(u.Path) != 2 {
		t.Fatalf("WithAttr add: %v", c)
	}
	if !strings.Contains(c.Secret(), "pin-value=1") || strings.Contains(c.Redacted(), "pin-value") {
		t.Fatalf("secret/redacted forms wrong: %q / %q", c.Secret(), c.Redacted())
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=thingd;object=device?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin",
		"pkcs11:token=a%20b;id=%01?module-path=/x.so&pin-value=1234",
		"tpm:handle=0x81000100?device=tcp:127.0.0.1:2321",
		"file:/var/lib/thingd/key.pem",
		"file:///a%2Fb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if strings.Contains(s, "pin-value=") {
				_, v, _ := strings.Cut(s, "pin-value=")
				v, _, _ = strings.Cut(v, "&")
				if len(v) >= 4 && strings.Contains(err.Error(), v) && !strings.Contains(redactRaw(s), v) {
					t.Fatalf("error leaks pin-value %q: %v", v, err)
				}
			}
			return
		}
		u2, err := ParseURI(u.Secret())
		if err != nil {
			t.Fatalf("Secret() form %q of %q does not reparse: %v", u.Secret(), s, err)
		}
		if u2.Secret() != u.Secret() {
			t.Fatalf("not stable: %q -> %q", u.Secret(), u2.Secret())
		}
		r, err := ParseURI(u.Redacted())
		if err != nil {
			t.Fatalf("Redacted() form %q does not reparse: %v", u.Redacted(), err)
		}
		if r.has("pin-value") {
			t.Fatalf("Redacted() keeps pin-value: %q", u.Redacted())
		}
	})
}
