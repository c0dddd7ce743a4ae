package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/registry"
)

var bucketShadows = []byte("Shadows") // thing \x00 shadow name ("" for the classic shadow) → record

// Options configure a Service.
type Options struct {
	// Registry's database stores the shadows (in a bucket of their own).
	// Required.
	Registry *registry.Registry
	// Publish sends a message to the topic's subscribers (the broker's
	// fan-out, subject to their receive permissions). Required.
	Publish func(topic string, payload []byte) error
	// Now is the clock of timestamps; nil means time.Now.
	Now func() time.Time
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// MaxDepth is the nesting limit of an update's state node (see
	// DefaultMaxDepth, which zero means).
	MaxDepth int
	// MaxStateBytes is the size limit of desired plus reported (see
	// DefaultMaxStateBytes, which zero means).
	MaxStateBytes int
}

// Service is the Device Shadow service. It is safe for concurrent use.
type Service struct {
	db      *bolt.DB
	publish func(topic string, payload []byte) error
	now     func() time.Time
	log     *slog.Logger
	lim     limits

	// mu serializes changes, so that the messages of a shadow go out in the
	// order of its versions; it guards closed.
	mu     sync.Mutex
	closed bool
}

// New returns a shadow service storing its shadows in opts.Registry's
// database.
func New(opts Options) (*Service, error) {
	if opts.Registry == nil || opts.Publish == nil {
		return nil, errors.New("shadow: Options.Registry and Options.Publish are required")
	}
	s := &Service{
		db: opts.Registry.DB(), publish: opts.Publish, now: opts.Now, log: opts.Logger,
		lim: limits{maxDepth: opts.MaxDepth, maxBytes: opts.MaxStateBytes},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.lim.maxDepth <= 0 {
		s.lim.maxDepth = DefaultMaxDepth
	}
	if s.lim.maxBytes <= 0 {
		s.lim.maxBytes = DefaultMaxStateBytes
	}
	if err := opts.Registry.CreateBuckets(bucketShadows); err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	return s, nil
}

// Close makes later requests fail with ErrClosed.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// Topic returns the topic prefix of a shadow: $aws/things/{thing}/shadow for
// the classic shadow (name ""), $aws/things/{thing}/shadow/name/{name} for a
// named one.
func Topic(thing, name string) string {
	if name == "" {
		return "$aws/things/" + thing + "/shadow"
	}
	return "$aws/things/" + thing + "/shadow/name/" + name
}

// sections are the desired and reported sections of a stored shadow's state
// or metadata, and the state's delta in documents.
type sections struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
	Delta    map[string]any `json:"delta,omitempty"`
}

// record is a stored shadow. A deleted shadow keeps its record, without
// state, for its version.
type record struct {
	State     sections  `json:"state"`
	Metadata  sections  `json:"metadata"`
	Version   int64     `json:"version"`
	Deleted   bool      `json:"deleted,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"` // of the last update, or the deletion
}

// document is a shadow as get/accepted, GetThingShadow and the previous and
// current snapshots of /update/documents show it.
type document struct {
	State       sections `json:"state"`
	Metadata    sections `json:"metadata"`
	Version     int64    `json:"version"`
	Timestamp   int64    `json:"timestamp,omitempty"`
	ClientToken string   `json:"clientToken,omitempty"`
}

// stateDoc is /update/accepted (state: the sections of the request, as
// sent) and /update/delta (state: the delta).
type stateDoc struct {
	State       map[string]any `json:"state"`
	Metadata    map[string]any `json:"metadata"`
	Version     int64          `json:"version"`
	Timestamp   int64          `json:"timestamp"`
	ClientToken string         `json:"clientToken,omitempty"`
}

// documentsDoc is /update/documents; previous is left out when the update
// created the shadow.
type documentsDoc struct {
	Previous    *document `json:"previous,omitempty"`
	Current     document  `json:"current"`
	Timestamp   int64     `json:"timestamp"`
	ClientToken string    `json:"clientToken,omitempty"`
}

// deleteDoc is /delete/accepted and DeleteThingShadow's response.
type deleteDoc struct {
	Version     int64  `json:"version"`
	Timestamp   int64  `json:"timestamp"`
	ClientToken string `json:"clientToken,omitempty"`
}

// errorDoc is the rejected document.
type errorDoc struct {
	Code        int    `json:"code"`
	Message     string `json:"message"`
	Timestamp   int64  `json:"timestamp"`
	ClientToken string `json:"clientToken,omitempty"`
}

func (r *record) document() document {
	return document{State: sections{Desired: r.State.Desired, Reported: r.State.Reported}, Metadata: r.Metadata, Version: r.Version}
}

func shadowKey(thing, name string) []byte { return []byte(thing + "\x00" + name) }

// decodeRecord reads a stored record, numbers as json.Number and metadata
// leaves as stamps.
func decodeRecord(data []byte) (record, error) {
	var r record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return record{}, fmt.Errorf("decode shadow: %w", err)
	}
	r.Metadata.Desired = loadSection(r.State.Desired, r.Metadata.Desired)
	r.Metadata.Reported = loadSection(r.State.Reported, r.Metadata.Reported)
	return r, nil
}

func loadSection(state, raw map[string]any) map[string]any {
	if state == nil {
		return nil
	}
	return loadMeta(state, raw).(map[string]any)
}

// load returns a shadow's record; a shadow never created reads as deleted
// at version 0.
func load(tx *bolt.Tx, thing, name string) (record, error) {
	data := tx.Bucket(bucketShadows).Get(shadowKey(thing, name))
	if data == nil {
		return record{Deleted: true}, nil
	}
	return decodeRecord(data)
}

// message is a message to publish.
type message struct {
	topic   string
	payload []byte
}

// change runs fn on a shadow's record in a read-write transaction under
// s.mu, stores the record fn leaves, and publishes fn's messages in order
// once committed. An error from fn rolls back.
func (s *Service) change(thing, name string, fn func(rec *record, now time.Time) ([]message, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	now := s.now()
	var msgs []message
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, err := load(tx, thing, name)
		if err != nil {
			return err
		}
		if msgs, err = fn(&rec, now); err != nil {
			return err
		}
		return tx.Bucket(bucketShadows).Put(shadowKey(thing, name), marshal(rec))
	})
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := s.publish(m.topic, m.payload); err != nil {
			s.log.Error("publish", "topic", m.topic, "error", err)
		}
	}
	return nil
}

// Get returns a shadow's document: state (with the delta when desired and
// reported differ), metadata, version and timestamp.
func (s *Service) Get(thing, name string) ([]byte, error) { return s.get(thing, name, "") }

func (s *Service) get(thing, name, clientToken string) ([]byte, error) {
	var rec record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = load(tx, thing, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	if rec.Deleted {
		return nil, errNoShadow(thing, name)
	}
	doc := rec.document()
	doc.State.Delta = delta(rec.State.Desired, rec.State.Reported)
	doc.Timestamp, doc.ClientToken = s.now().Unix(), clientToken
	return marshal(doc), nil
}

// Update applies an update request (the body of /update) to a shadow,
// creating it if needed, and returns the accepted document. It publishes
// /update/accepted, /update/delta (when desired and reported differ
// afterwards) and /update/documents, as an update over MQTT does.
func (s *Service) Update(thing, name string, payload []byte) ([]byte, error) {
	accepted, _, err := s.update(thing, name, payload)
	return accepted, err
}

// update is Update, also returning the request's clientToken for a
// rejection.
func (s *Service) update(thing, name string, payload []byte) (accepted []byte, clientToken string, err error) {
	u, rej := parseUpdate(payload, s.lim)
	if rej != nil {
		return nil, u.clientToken, rej
	}
	topic := Topic(thing, name) + "/update"
	err = s.change(thing, name, func(rec *record, now time.Time) ([]message, error) {
		existed := !rec.Deleted
		if !existed && now.Sub(rec.UpdatedAt) >= DeletedVersionKept {
			rec.Version = 0
		}
		if u.version != nil && *u.version != rec.Version {
			return nil, errVersionConflict
		}
		var previous *document
		if existed {
			d := rec.document()
			previous = &d
		}
		ts := stamp(now.Unix())
		rec.State.Desired, rec.Metadata.Desired = apply(u, desiredKey, rec.State.Desired, rec.Metadata.Desired, ts)
		rec.State.Reported, rec.Metadata.Reported = apply(u, reportedKey, rec.State.Reported, rec.Metadata.Reported, ts)
		if sectionBytes(rec.State.Desired)+sectionBytes(rec.State.Reported) > s.lim.maxBytes {
			return nil, errTooLarge
		}
		rec.Version++
		rec.Deleted, rec.UpdatedAt = false, now

		meta := make(map[string]any, len(u.state))
		for k, v := range u.state {
			meta[k] = metaOf(v, ts)
		}
		accepted = marshal(stateDoc{State: u.state, Metadata: meta, Version: rec.Version, Timestamp: now.Unix(), ClientToken: u.clientToken})
		msgs := []message{{topic + "/accepted", accepted}}
		if d := delta(rec.State.Desired, rec.State.Reported); d != nil {
			msgs = append(msgs, message{topic + "/delta", marshal(stateDoc{
				State: d, Metadata: project(d, rec.Metadata.Desired), Version: rec.Version, Timestamp: now.Unix(), ClientToken: u.clientToken,
			})})
		}
		msgs = append(msgs, message{topic + "/documents", marshal(documentsDoc{
			Previous: previous, Current: rec.document(), Timestamp: now.Unix(), ClientToken: u.clientToken,
		})})
		s.log.Debug("shadow updated", "thing", thing, "shadow", name, "version", rec.Version)
		return msgs, nil
	})
	if err != nil {
		return nil, u.clientToken, err
	}
	return accepted, u.clientToken, nil
}

// apply merges an update's section (if the request has it) into a stored
// section and its metadata.
func apply(u update, key string, state, meta map[string]any, ts stamp) (map[string]any, map[string]any) {
	patch, present := u.section(key)
	switch {
	case !present:
		return state, meta
	case patch == nil: // "desired": null deletes the section
		return nil, nil
	}
	merged := merge(state, patch)
	return merged, mergeMeta(merged, meta, patch, ts)
}

// Delete deletes a shadow and returns {"version", "timestamp"}; the version
// is kept for an update within DeletedVersionKept. It publishes
// /delete/accepted.
func (s *Service) Delete(thing, name string) ([]byte, error) { return s.delete(thing, name, "") }

func (s *Service) delete(thing, name, clientToken string) ([]byte, error) {
	var accepted []byte
	err := s.change(thing, name, func(rec *record, now time.Time) ([]message, error) {
		if rec.Deleted {
			return nil, errNoShadow(thing, name)
		}
		*rec = record{Version: rec.Version, Deleted: true, UpdatedAt: now}
		s.log.Debug("shadow deleted", "thing", thing, "shadow", name, "version", rec.Version)
		accepted = marshal(deleteDoc{Version: rec.Version, Timestamp: now.Unix(), ClientToken: clientToken})
		return []message{{Topic(thing, name) + "/delete/accepted", accepted}}, nil
	})
	if err != nil {
		return nil, err
	}
	return accepted, nil
}

// ListNamed returns the names of a thing's named shadows, sorted.
func (s *Service) ListNamed(thing string) ([]string, error) {
	var out []string
	prefix := shadowKey(thing, "")
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketShadows).Cursor()
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			name := string(k[len(prefix):])
			if name == "" {
				continue
			}
			rec, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("shadow %q: %w", strings.ReplaceAll(string(k), "\x00", "/"), err)
			}
			if !rec.Deleted {
				out = append(out, name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("shadow: list named shadows of %s: %w", thing, err)
	}
	return out, nil
}
