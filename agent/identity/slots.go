package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/thingd/thingd/agent/internal/atomicfile"
	"github.com/thingd/thingd/keystore"
)

// Slot names one of the two key slots. The active slot is never
// overwritten; a rotation writes the other one and only a committed rotation
// makes it active.
type Slot string

// The two slots. Slot A is the key URI of the config; slot B is derived from
// it (or configured explicitly).
const (
	SlotA Slot = "a"
	SlotB Slot = "b"
)

// Other returns the slot that is not s.
func (s Slot) Other() Slot {
	if s == SlotB {
		return SlotA
	}
	return SlotB
}

// Valid reports whether s is a or b.
func (s Slot) Valid() bool { return s == SlotA || s == SlotB }

// DeriveSlotB returns the URI of slot B in the same module as a: for PKCS#11
// the object label gets a "-b" suffix (and an explicit id a trailing 0x0b
// byte), for a TPM the next persistent handle, for a file key "-b" before the
// extension.
func DeriveSlotB(a *keystore.URI) (*keystore.URI, error) {
	switch a.Scheme {
	case keystore.SchemePKCS11:
		obj := a.Attr("object")
		if obj == "" {
			obj = "device"
		}
		b := a.WithAttr("object", obj+"-b")
		if id := a.Attr("id"); id != "" {
			b = b.WithAttr("id", id+"\x0b")
		}
		return b, nil
	case keystore.SchemeTPM:
		h := a.Handle()
		if h == 0 || h == 0x81ffffff {
			return nil, fmt.Errorf("identity: cannot derive slot B from TPM handle %#x: set key_b in the config", h)
		}
		return a.WithAttr("handle", fmt.Sprintf("0x%08x", h+1)), nil
	case keystore.SchemeFile:
		p := a.FilePath()
		ext := filepath.Ext(p)
		return a.WithAttr("path", strings.TrimSuffix(p, ext)+"-b"+ext), nil
	}
	return nil, fmt.Errorf("identity: no slot B for key scheme %q", a.Scheme)
}

// Slots are the key URIs of the two slots.
type Slots struct {
	A, B *keystore.URI
}

// Key returns the URI of slot s.
func (s Slots) Key(slot Slot) *keystore.URI {
	if slot == SlotB {
		return s.B
	}
	return s.A
}

// ActiveFile is the name, in the state directory, of the record of the
// active slot.
const ActiveFile = "identity.json"

// Active records which slot is in use and where its certificate is.
type Active struct {
	Slot Slot `json:"slot"`
	// CertificateFile is the PEM certificate of the active slot.
	CertificateFile string `json:"certificateFile"`
	// CertificateID is the AWS certificate id of that certificate.
	CertificateID string    `json:"certificateId,omitempty"`
	Since         time.Time `json:"since,omitzero"`
}

// SlotCertificatePath is where a rotation stores the certificate of slot s.
func SlotCertificatePath(stateDir string, s Slot) string {
	return filepath.Join(stateDir, "certificate-"+string(s)+".pem")
}

// LoadActive reads the active slot record from stateDir. Without one (a
// device that never rotated) the active slot is A with the configured
// certificate.
func LoadActive(stateDir, configCert string) (Active, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, ActiveFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Active{Slot: SlotA, CertificateFile: configCert}, nil
	}
	if err != nil {
		return Active{}, fmt.Errorf("identity: read active slot: %w", err)
	}
	var a Active
	if err := json.Unmarshal(data, &a); err != nil {
		return Active{}, fmt.Errorf("identity: %s: %w", filepath.Join(stateDir, ActiveFile), err)
	}
	if !a.Slot.Valid() || a.CertificateFile == "" {
		return Active{}, fmt.Errorf("identity: %s: slot %q / certificate %q is not valid", filepath.Join(stateDir, ActiveFile), a.Slot, a.CertificateFile)
	}
	return a, nil
}

// SaveActive atomically records a as the active slot.
func SaveActive(stateDir string, a Active) error {
	if err := atomicfile.WriteJSON(filepath.Join(stateDir, ActiveFile), a, 0o644); err != nil {
		return fmt.Errorf("identity: save active slot: %w", err)
	}
	return nil
}
