package simtest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/thingd/thingd/sim/api"
)

// Device Shadow shortcuts, through the admin API (GetThingShadow,
// UpdateThingShadow). name "" is the classic shadow. Updates publish
// update/accepted, delta and documents to the device as an update over MQTT
// would. JSON numbers in the documents decode as float64.

// GetShadow returns a shadow's document and version; it fails the test if
// the shadow does not exist.
func (s *Sim) GetShadow(t testing.TB, thing, name string) (api.ShadowDocument, int64) {
	t.Helper()
	doc, err := s.Client().GetThingShadow(t.Context(), thing, name)
	if err != nil {
		t.Fatalf("get shadow %s of %s: %v", shadowLabel(name), thing, err)
	}
	return doc, doc.Version
}

// UpdateShadow sends an update request (e.g. {"state":{"reported":{...}}})
// to a shadow and returns the accepted document.
func (s *Sim) UpdateShadow(t testing.TB, thing, name, request string) api.ShadowDocument {
	t.Helper()
	doc, err := s.Client().UpdateThingShadow(t.Context(), thing, name, []byte(request))
	if err != nil {
		t.Fatalf("update shadow %s of %s with %s: %v", shadowLabel(name), thing, request, err)
	}
	return doc
}

// UpdateDesired merges desiredJSON (a JSON object, or null to remove the
// section) into a shadow's desired state, as an application would, and
// returns the new version.
func (s *Sim) UpdateDesired(t testing.TB, thing, name, desiredJSON string) int64 {
	t.Helper()
	if !json.Valid([]byte(desiredJSON)) {
		t.Fatalf("UpdateDesired: %q is not JSON", desiredJSON)
	}
	return s.UpdateShadow(t, thing, name, `{"state":{"desired":`+desiredJSON+`}}`).Version
}

// WaitReported polls a shadow until pred accepts its reported state (nil
// when there is none) and returns that state. A shadow that does not exist
// yet counts as having no reported state. It fails the test after timeout,
// showing the last reported state seen.
func (s *Sim) WaitReported(t testing.TB, thing, name string, timeout time.Duration, pred func(reported map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]any
	for {
		doc, err := s.Client().GetThingShadow(t.Context(), thing, name)
		var apiErr *api.Error
		switch {
		case err == nil:
			last = doc.State.Reported
			if pred(last) {
				return last
			}
		case !errors.As(err, &apiErr) || apiErr.Type != api.ErrResourceNotFound:
			t.Fatalf("get shadow %s of %s: %v", shadowLabel(name), thing, err)
		case pred(nil):
			return nil
		}
		if time.Now().After(deadline) {
			t.Fatalf("reported state of shadow %s of %s not as expected within %v; last seen: %v", shadowLabel(name), thing, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func shadowLabel(name string) string {
	if name == "" {
		return "(classic)"
	}
	return "'" + name + "'"
}
