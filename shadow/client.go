package shadow

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// qos is the QoS of every publish and subscription: AWS IoT supports 0 and
// 1, and a request or reply lost at QoS 0 would only show as a timeout.
const qos = 1

// ClientOptions configure a Client. The zero value is usable.
type ClientOptions struct {
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
	// Timeout bounds the wait for the reply to one request; zero means 30 s.
	Timeout time.Duration
	// MaxDepth is the deepest nesting an update's sections may have (see
	// DefaultMaxDepth, which zero means).
	MaxDepth int
}

// Client speaks the Device Shadow MQTT API for one shadow of one thing: the
// classic shadow or a named one. Its methods are safe for concurrent use.
// Requests and replies are paired by a random clientToken, unique per
// request; replies for another thing, another shadow or another token are
// not taken as answers.
//
// The Client remembers the highest shadow version it has seen in accepted
// replies (anyone's: AWS sends them to every subscriber), update/documents
// messages and deltas; see Version and Deltas.
type Client struct {
	thing, shadow string
	m             MQTT
	log           *slog.Logger
	timeout       time.Duration
	maxDepth      int

	mu         sync.Mutex          // guards the fields below
	waiting    map[string]*request // by clientToken
	version    int64               // the highest version seen
	deltaFloor int64               // a delta must be newer than this to be delivered
	deltas     chan Delta          // capacity 1, holding the latest undelivered delta
}

// request is one request waiting for its reply.
type request struct {
	op    Operation
	reply chan reply // capacity 1; written once, by whoever removes the request from waiting
}

type reply struct {
	kind    Kind
	topic   string
	payload []byte
}

// NewClient returns a Client for the shadow shadowName of thingName ("" is
// the classic shadow) over m. It starts nothing; call Start to subscribe.
func NewClient(thingName, shadowName string, m MQTT, opts ClientOptions) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("thing", thingName)
	if shadowName != "" {
		log = log.With("shadow", shadowName)
	}
	return &Client{
		thing:    thingName,
		shadow:   shadowName,
		m:        m,
		log:      log,
		timeout:  opts.Timeout,
		maxDepth: opts.MaxDepth,
		waiting:  map[string]*request{},
		deltas:   make(chan Delta, 1),
	}
}

// ThingName returns the thing whose shadow the Client speaks for.
func (c *Client) ThingName() string { return c.thing }

// ShadowName returns the name of the shadow; empty for the classic shadow.
func (c *Client) ShadowName() string { return c.shadow }

// name is how errors name the shadow: gw-1 or gw-1/config.
func (c *Client) name() string { return displayName(c.thing, c.shadow) }

// validate checks the thing and shadow names.
func (c *Client) validate() error {
	if err := ValidateThingName(c.thing); err != nil {
		return err
	}
	if c.shadow != "" {
		return ValidateShadowName(c.shadow)
	}
	return nil
}

// Start subscribes (QoS 1) to the accepted and rejected replies of get,
// update and delete, and to update/delta and update/documents
// (SubscriptionFilters), each handled by HandleMessage. AWS sends shadow
// replies to subscribers, so Start comes before the first request.
func (c *Client) Start(ctx context.Context) error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("shadow: start %s: %w", c.name(), err)
	}
	for _, f := range SubscriptionFilters(c.thing, c.shadow) {
		if err := c.m.Subscribe(ctx, f, qos, func(topic string, payload []byte) { c.HandleMessage(topic, payload) }); err != nil {
			return fmt.Errorf("shadow: start %s: subscribe %s: %w", c.name(), f, err)
		}
	}
	return nil
}

// HandleMessage takes a message on one of this shadow's topics: a reply
// (handed to the request with its clientToken, if one waits), a delta or
// an update/documents message. It reports whether topic belongs to this
// shadow; messages of another thing or another shadow are left alone. It
// never blocks and may be called from any goroutine.
func (c *Client) HandleMessage(topic string, payload []byte) bool {
	t, err := ParseTopic(topic)
	if err != nil || t.ThingName != c.thing || t.ShadowName != c.shadow {
		return false
	}
	switch t.Kind {
	case KindAccepted, KindRejected:
		c.handleReply(t, topic, payload)
	case KindDelta:
		d, err := parseDelta(payload)
		if err != nil {
			c.log.Warn("shadow: ignoring a malformed delta", "topic", topic, "err", err)
			break
		}
		c.offerDelta(*d)
	case KindDocuments:
		var m documentsMessage
		if err := json.Unmarshal(payload, &m); err != nil || m.Current == nil {
			c.log.Warn("shadow: ignoring a malformed documents message", "topic", topic, "err", err)
			break
		}
		c.sawVersion(m.Current.Version)
	}
	// KindRequest: a request (ours or another client's) seen through a
	// wider subscription.
	return true
}

// handleReply notes the version of an accepted reply and hands the reply to
// the request waiting for it.
func (c *Client) handleReply(t Topic, topic string, payload []byte) {
	var head replyHead
	if err := json.Unmarshal(payload, &head); err != nil {
		c.log.Warn("shadow: ignoring a malformed reply", "topic", topic, "err", err)
		return
	}
	c.mu.Lock()
	if t.Kind == KindAccepted {
		c.version = max(c.version, head.Version)
	}
	req := c.claimLocked(head.ClientToken, t.Operation)
	c.mu.Unlock()
	if req == nil {
		c.log.Debug("shadow: a reply nobody here waits for (another client's, or expired)", "topic", topic, "client_token", head.ClientToken)
		return
	}
	req.reply <- reply{kind: t.Kind, topic: topic, payload: payload}
}

// sawVersion raises the version seen to v.
func (c *Client) sawVersion(v int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version = max(c.version, v)
}

// offerDelta delivers d on Deltas unless a delta of the same or a newer
// version (or a get reply at such a version) came before it. An unread
// delta is replaced: the newer one carries all the differences.
func (c *Client) offerDelta(d Delta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version = max(c.version, d.Version)
	if d.Version <= c.deltaFloor {
		c.log.Debug("shadow: dropping a stale delta", "version", d.Version, "newest", c.deltaFloor)
		return
	}
	c.deltaFloor = d.Version
	select {
	case <-c.deltas:
	default:
	}
	c.deltas <- d
}

// Deltas returns the channel of deltas: from update/delta messages and from
// the delta section of get replies (also those of a Reporter's Get after a
// reconnect, so desired changes made while the device was offline arrive
// here). A delta whose version is not newer than the last one delivered, or
// than the last get reply, is dropped. The channel holds one delta; a newer
// one replaces an unread one.
func (c *Client) Deltas() <-chan Delta { return c.deltas }

// Version returns the highest shadow version seen so far; 0 if none.
func (c *Client) Version() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Get returns the whole shadow document, with its delta section when
// desired and reported differ; that delta is also offered on Deltas. A
// shadow that does not exist gives an *ErrorResponse matching ErrNotFound.
func (c *Client) Get(ctx context.Context) (*Document, error) {
	token := rand.Text()
	payload, err := c.roundTrip(ctx, OpGet, token, tokenOnly{token})
	if err != nil {
		return nil, err
	}
	doc, err := parseDocument(payload)
	if err != nil {
		return nil, fmt.Errorf("shadow: get of %s: %w", c.name(), err)
	}
	// handleReply has noted the version. The document is as new as a delta
	// of its version: its delta section (if any) supersedes older deltas.
	if doc.State.Delta != nil && string(doc.State.Delta) != "null" {
		c.offerDelta(Delta{State: doc.State.Delta, Version: doc.Version, Timestamp: doc.Timestamp, ClientToken: doc.ClientToken})
	} else {
		c.mu.Lock()
		c.deltaFloor = max(c.deltaFloor, doc.Version)
		c.mu.Unlock()
	}
	return doc, nil
}

// Update merges state into the shadow (creating it if needed) and returns
// the accepted reply: the sections and fields of the request, with the new
// version. expectedVersion, if not 0, must equal the shadow's version, or
// the update is rejected with an *ErrorResponse matching
// ErrVersionConflict. A state that breaks the service's rules (more than
// MaxStateBytes, nested too deeply, null in an array, a section that is not
// an object, neither section given) is not sent; the error matches
// ErrInvalidState.
func (c *Client) Update(ctx context.Context, state State, expectedVersion int64) (*Document, error) {
	what := "update of " + c.name()
	refuse := func(reason string) (*Document, error) {
		return nil, &invalidStateError{what: what, reason: reason}
	}
	if expectedVersion < 0 {
		return refuse(fmt.Sprintf("expected version %d is negative", expectedVersion))
	}
	req := updateRequest{ClientToken: rand.Text(), Version: expectedVersion}
	for _, s := range []struct {
		name string
		v    any
		dst  *json.RawMessage
	}{{"desired", state.Desired, &req.State.Desired}, {"reported", state.Reported, &req.State.Reported}} {
		raw, reason, err := encodeSection(s.name, s.v, c.maxDepth)
		switch {
		case err != nil:
			return nil, fmt.Errorf("shadow: %s: %w", what, err)
		case reason != "":
			return refuse(reason)
		}
		*s.dst = raw
	}
	if req.State.Desired == nil && req.State.Reported == nil {
		return refuse("the state has neither desired nor reported")
	}
	if n := sectionBytes(req.State.Desired) + sectionBytes(req.State.Reported); n > MaxStateBytes {
		return refuse(fmt.Sprintf("state document is %d bytes, AWS allows %d", n, MaxStateBytes))
	}
	payload, err := c.roundTrip(ctx, OpUpdate, req.ClientToken, req)
	if err != nil {
		return nil, err
	}
	doc, err := parseDocument(payload)
	if err != nil {
		return nil, fmt.Errorf("shadow: %s: %w", what, err)
	}
	return doc, nil
}

// sectionBytes is the size a section counts toward MaxStateBytes; a null
// section (removing it) counts nothing.
func sectionBytes(raw json.RawMessage) int {
	if string(raw) == "null" {
		return 0
	}
	return len(raw)
}

// Delete deletes the shadow. Its version is kept by the service: a shadow
// re-created within 48 hours continues the old sequence. A shadow that does
// not exist gives an *ErrorResponse matching ErrNotFound.
func (c *Client) Delete(ctx context.Context) error {
	token := rand.Text()
	_, err := c.roundTrip(ctx, OpDelete, token, tokenOnly{token})
	return err
}

// tokenOnly is the payload of get and delete: the service ignores it, but
// the token comes back in the reply.
type tokenOnly struct {
	ClientToken string `json:"clientToken"`
}

// updateRequest is the payload of update (aws-iot-protocol.md §2.2).
type updateRequest struct {
	State struct {
		Desired  json.RawMessage `json:"desired,omitempty"`
		Reported json.RawMessage `json:"reported,omitempty"`
	} `json:"state"`
	ClientToken string `json:"clientToken"`
	Version     int64  `json:"version,omitempty"`
}

// roundTrip publishes body as a request of op and waits for the reply with
// token. It returns the payload of an accepted reply; a rejected one
// becomes an *ErrorResponse.
func (c *Client) roundTrip(ctx context.Context, op Operation, token string, body any) ([]byte, error) {
	what := string(op) + " of " + c.name()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("shadow: %s: %w", what, err)
	}
	topic := Topic{ThingName: c.thing, ShadowName: c.shadow, Operation: op, Kind: KindRequest}.String()
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("shadow: %s: encode the request: %w", what, err)
	}
	replies := c.await(token, op) // before publishing: the reply may come before Publish returns
	defer c.forget(token)
	c.log.Debug("shadow: request", "topic", topic, "client_token", token)
	if err := c.m.Publish(ctx, topic, qos, payload); err != nil {
		return nil, fmt.Errorf("shadow: %s: publish %s: %w", what, topic, err)
	}
	deadline := time.NewTimer(c.timeout)
	defer deadline.Stop()
	var r reply
	select {
	case r = <-replies:
	case <-deadline.C:
		return nil, fmt.Errorf("shadow: no reply to %s in %s", topic, c.timeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("shadow: %s: waiting for the reply to %s: %w", what, topic, ctx.Err())
	}
	if r.kind == KindAccepted {
		return r.payload, nil
	}
	rej := &ErrorResponse{}
	if err := json.Unmarshal(r.payload, rej); err != nil {
		return nil, fmt.Errorf("shadow: %s: decode %s: %w", what, r.topic, err)
	}
	rej.Operation, rej.ThingName, rej.ShadowName = op, c.thing, c.shadow
	return nil, rej
}

// await registers a request of op waiting for the reply with token and
// returns where that reply will be sent.
func (c *Client) await(token string, op Operation) <-chan reply {
	req := &request{op: op, reply: make(chan reply, 1)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting[token] = req
	return req.reply
}

// claimLocked takes the request of op waiting for the reply with token
// off the waiting list; nil if there is none. The caller then owns its
// reply channel.
func (c *Client) claimLocked(token string, op Operation) *request {
	req := c.waiting[token]
	if req == nil || req.op != op {
		return nil
	}
	delete(c.waiting, token)
	return req
}

// forget stops waiting for the reply with token.
func (c *Client) forget(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.waiting, token)
}
