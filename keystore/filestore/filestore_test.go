package filestore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/filestore"
	"github.com/thingd/thingd/keystore/keystoretest"
)

func TestConformance(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) *keystoretest.Harness {
		dir := t.TempDir()
		return &keystoretest.Harness{
			Name:       "filestore",
			Kind:       keystore.KindFile,
			Algorithms: keystore.Algorithms,
			NewStore:   func(*testing.T) keystore.Store { return filestore.New() },
			KeyURI: func(t *testing.T, n int) *keystore.URI {
				return keystore.MustParseURI("file:" + filepath.Join(dir, "keys", "key"+string(rune('0'+n))+".pem"))
			},
		}
	})
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.pem")
	uri := keystore.MustParseURI("file:" + path)
	s := filestore.New()
	if _, err := s.Generate(context.Background(), uri, keystore.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %#o, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = s.Open(context.Background(), uri)
	if err == nil || !strings.Contains(err.Error(), "too open") {
		t.Fatalf("Open of a 0644 key file: got %v, want a 'too open' error", err)
	}
}

func TestOpenBadFiles(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content, want string
	}{
		{"not pem", "hello", "no PEM block"},
		{"certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a private key"},
		{"garbage key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "parse key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".pem")
			if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := filestore.New().Open(context.Background(), keystore.MustParseURI("file:"+p))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want error containing %q", err, c.want)
			}
		})
	}
}
