package rotation

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/thingd/thingd/agent/identity"
	"github.com/thingd/thingd/agent/internal/atomicfile"
	"github.com/thingd/thingd/keystore"
)

// Step is a rotation step as recorded in the journal (design §4). A step is
// written to the journal before it is acted on.
type Step string

// The rotation steps, in order, and the rolled-back end.
const (
	StepStarted      Step = "started"
	StepKeyGenerated Step = "key-generated"
	StepCSRSent      Step = "csr-sent"
	StepCertReceived Step = "cert-received"
	StepRegistered   Step = "registered"
	StepVerifying    Step = "verifying"
	StepCommitted    Step = "committed"
	StepCleaned      Step = "cleaned"
	StepRolledBack   Step = "rolled-back"
)

// Steps lists the forward steps in order.
var Steps = []Step{StepStarted, StepKeyGenerated, StepCSRSent, StepCertReceived, StepRegistered, StepVerifying, StepCommitted, StepCleaned}

// JournalFile is the name of the rotation record in the state directory.
const JournalFile = "rotation.json"

// Journal is the record of the rotation in progress.
type Journal struct {
	// ID names the rotation: the job id, or "renewal-<unix time>" for a
	// renewal thingd started itself.
	ID string `json:"id"`
	// JobID is the job execution driving the rotation ("" for a renewal
	// without a job).
	JobID     string             `json:"jobId,omitempty"`
	Step      Step               `json:"step"`
	From      identity.Slot      `json:"from"`
	To        identity.Slot      `json:"to"`
	Algorithm keystore.Algorithm `json:"algorithm"`
	Template  string             `json:"provisioningTemplate"`
	// VerifyTimeout bounds the proof that the new identity works.
	VerifyTimeout    Duration  `json:"verifyTimeout"`
	OldCertificateID string    `json:"oldCertificateId"`
	OldCertificate   string    `json:"oldCertificateFile"`
	NewCertificateID string    `json:"newCertificateId,omitempty"`
	NewCertificate   string    `json:"newCertificateFile,omitempty"`
	StartedAt        time.Time `json:"startedAt"`
	UpdatedAt        time.Time `json:"updatedAt"`
	// FailedStep and Reason are set once the rotation is rolled back.
	FailedStep Step   `json:"failedStep,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// Outcome is the result of the last finished rotation.
type Outcome struct {
	ID               string    `json:"id"`
	JobID            string    `json:"jobId,omitempty"`
	Result           string    `json:"result"` // SUCCEEDED or FAILED
	Step             Step      `json:"step"`
	Reason           string    `json:"reason,omitempty"`
	NewCertificateID string    `json:"newCertificateId,omitempty"`
	OldCertificateID string    `json:"oldCertificateId,omitempty"`
	At               time.Time `json:"at"`
}

// Record is the whole content of JournalFile.
type Record struct {
	Journal *Journal `json:"journal,omitempty"`
	Last    *Outcome `json:"last,omitempty"`
}

// Duration is a time.Duration that reads and writes as "30s".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ReadRecord reads the rotation record in stateDir; a missing file is an
// empty record.
func ReadRecord(stateDir string) (Record, error) {
	var r Record
	p := filepath.Join(stateDir, JournalFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("rotation: read journal: %w", err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("rotation: journal %s is corrupt: %w", p, err)
	}
	if j := r.Journal; j != nil && (!j.From.Valid() || !j.To.Valid() || j.From == j.To) {
		return r, fmt.Errorf("rotation: journal %s names slots %q -> %q", p, j.From, j.To)
	}
	return r, nil
}

// writeRecord atomically replaces the rotation record.
func writeRecord(stateDir string, r Record) error {
	if err := atomicfile.WriteJSON(filepath.Join(stateDir, JournalFile), r, 0o600); err != nil {
		return fmt.Errorf("rotation: write journal: %w", err)
	}
	return nil
}
