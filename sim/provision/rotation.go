package provision

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/registry"
)

// retirement is a scheduled retirement of a rotated-out certificate.
type retirement struct {
	Thing string    `json:"thing"`
	OldID string    `json:"oldCertificateId"`
	NewID string    `json:"newCertificateId"`
	Due   time.Time `json:"due"`
}

func (r retirement) key() string { return r.Thing + "\x00" + r.OldID }

// RotationSucceeded is told about every SUCCEEDED job execution. If the job
// document's operation is rotate-certificate and statusDetails name
// newCertificateId and oldCertificateId, it schedules the old certificate's
// retirement after the grace period.
func (s *Service) RotationSucceeded(thing, document string, details map[string]string) {
	var doc struct {
		Operation string `json:"operation"`
	}
	if json.Unmarshal([]byte(document), &doc) != nil || doc.Operation != RotateOperation {
		return
	}
	r := retirement{Thing: thing, OldID: details["oldCertificateId"], NewID: details["newCertificateId"], Due: s.now().Add(s.grace)}
	if r.OldID == "" || r.NewID == "" {
		s.log.Warn("rotation succeeded without newCertificateId and oldCertificateId; nothing to retire", "thing", thing)
		return
	}
	data, err := json.Marshal(r)
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRetirements).Put([]byte(r.key()), data) })
	}
	if err != nil {
		s.log.Error("schedule certificate retirement", "thing", thing, "certificateId", r.OldID, "error", err)
		return
	}
	s.log.Info("old certificate retirement scheduled", "thing", thing, "certificateId", r.OldID, "newCertificateId", r.NewID, "due", r.Due)
	s.timers.Arm(r.key(), r.Due, func() { s.retire(r) })
}

// Start arms the retirements stored before a restart; overdue ones run at
// once.
func (s *Service) Start() error {
	err := s.db.View(func(tx *bolt.Tx) error {
		return registry.ForEachJSON(tx, bucketRetirements, "retirement", func(_ []byte, r retirement) error {
			s.timers.Arm(r.key(), r.Due, func() { s.retire(r) })
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("provision: start: %w", err)
	}
	return nil
}

// Close stops the retirement timers and waits for retirements in flight.
func (s *Service) Close() { s.timers.Close() }

// retire deactivates and detaches a rotated-out certificate if the rotation
// really happened, and forgets the retirement either way.
func (s *Service) retire(r retirement) {
	log := s.log.With("thing", r.Thing, "certificateId", r.OldID, "newCertificateId", r.NewID)
	if why, err := s.rotated(r); err != nil {
		log.Error("certificate retirement", "error", err)
		return // kept: retried on the next start
	} else if why != "" {
		log.Warn("old certificate not retired: " + why)
	} else if err := s.deactivateAndDetach(r); err != nil {
		log.Error("certificate retirement", "error", err)
		return
	} else {
		log.Info("old certificate retired: INACTIVE and detached")
	}
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRetirements).Delete([]byte(r.key())) })
	if err != nil {
		log.Error("forget certificate retirement", "error", err)
	}
}

// rotated checks that the old certificate is attached to the thing and the
// new one ACTIVE and attached; it returns why not, or "".
func (s *Service) rotated(r retirement) (string, error) {
	if r.OldID == r.NewID {
		return "the new and old certificates are the same", nil
	}
	for _, c := range []struct{ id, what string }{{r.OldID, "old"}, {r.NewID, "new"}} {
		ok, err := s.reg.IsAttached(r.Thing, c.id)
		if err != nil {
			return "", err
		}
		if !ok {
			return fmt.Sprintf("the %s certificate is not attached to the thing", c.what), nil
		}
	}
	cert, err := s.reg.Certificate(r.NewID)
	if err != nil {
		return "", err
	}
	if cert.Status != registry.StatusActive {
		return "the new certificate is " + cert.Status, nil
	}
	return "", nil
}

func (s *Service) deactivateAndDetach(r retirement) error {
	if _, err := s.reg.SetCertificateStatus(r.OldID, registry.StatusInactive, s.now()); err != nil && !errors.Is(err, registry.ErrState) {
		return err // ErrState: it is REVOKED already, which is as good
	}
	s.disconnect(r.OldID)
	return s.reg.DetachPrincipal(r.Thing, r.OldID)
}
