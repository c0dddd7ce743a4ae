package jobs

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ClientOptions configure a Client. The zero value is usable.
type ClientOptions struct {
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
	// Timeout bounds the wait for the reply to one request; zero means 30 s.
	Timeout time.Duration
	// QoS of publishes and subscriptions; zero means 1 (QoS 0 cannot be
	// chosen).
	QoS byte
}

// Client speaks the Jobs device MQTT API for one thing. Its methods are safe
// for concurrent use. Requests and replies are matched by a random
// clientToken that is unique per request.
type Client struct {
	thing   string
	m       MQTT
	log     *slog.Logger
	timeout time.Duration
	qos     byte

	next   *latest[NextNotification]
	notify *latest[ListNotification]

	mu    sync.Mutex       // guards calls
	calls map[string]*call // by clientToken; a request waiting for its reply
}

// call is one request waiting for its reply.
type call struct {
	request Topic
	reply   chan inbound // capacity 1; sent to once, by whoever removes the call from Client.calls
}

type inbound struct {
	kind    Kind
	topic   string
	payload []byte
}

// NewClient returns a Client for thingName over m. It starts nothing; call
// Start to subscribe.
func NewClient(thingName string, m MQTT, opts ClientOptions) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.QoS == 0 {
		opts.QoS = 1
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		thing:   thingName,
		m:       m,
		log:     log.With("thing", thingName),
		timeout: opts.Timeout,
		qos:     opts.QoS,
		next:    newLatest[NextNotification](),
		notify:  newLatest[ListNotification](),
		calls:   map[string]*call{},
	}
}

// ThingName returns the thing the Client speaks for.
func (c *Client) ThingName() string { return c.thing }

// Start subscribes to notify-next, notify and the accepted/rejected reply
// topics (SubscriptionFilters). Replies also work without it, if the caller
// passes unsolicited messages to HandleMessage.
func (c *Client) Start(ctx context.Context) error {
	if err := ValidateThingName(c.thing); err != nil {
		return fmt.Errorf("jobs: start: %w", err)
	}
	for _, f := range SubscriptionFilters(c.thing) {
		if err := c.m.Subscribe(ctx, f, c.qos, func(topic string, payload []byte) { c.HandleMessage(topic, payload) }); err != nil {
			return fmt.Errorf("jobs: subscribe %s: %w", f, err)
		}
	}
	return nil
}

// NotifyNext returns the channel of notify-next messages. It holds at most
// one: a newer message replaces an unread one. A nil Execution means nothing
// is pending. An Engine reads this channel; do not read it too when an
// Engine runs on this Client.
func (c *Client) NotifyNext() <-chan NextNotification { return c.next.ch }

// Notify returns the channel of notify (list) messages; like NotifyNext it
// holds only the latest.
func (c *Client) Notify() <-chan ListNotification { return c.notify.ch }

// HandleMessage takes a message on a Jobs topic: a reply (matched to its
// request by clientToken) or a notification. The caller passes here every
// message that arrives without a subscription, as AWS sends replies to the
// requester unsolicited. It reports whether topic is a Jobs topic of this
// Client's thing; messages for another thing are ignored. It never blocks
// for long and may be called from any goroutine.
func (c *Client) HandleMessage(topic string, payload []byte) bool {
	t, err := ParseTopic(topic)
	if err != nil {
		return false
	}
	if t.ThingName != c.thing {
		c.log.Debug("jobs: ignoring a message for another thing", "topic", topic)
		return false
	}
	switch t.Kind {
	case KindNotifyNext:
		putDecoded(c.log, c.next, topic, payload)
	case KindNotify:
		putDecoded(c.log, c.notify, topic, payload)
	case KindAccepted, KindRejected:
		c.reply(t, topic, payload)
	}
	// KindRequest: our own request, seen through a wide subscription.
	return true
}

// reply hands a reply to the request waiting for it, if any.
func (c *Client) reply(t Topic, topic string, payload []byte) {
	var head struct {
		ClientToken string `json:"clientToken"`
	}
	if err := json.Unmarshal(payload, &head); err != nil {
		c.log.Warn("jobs: ignoring a malformed reply", "topic", topic, "err", err)
		return
	}
	c.mu.Lock()
	cl := c.calls[head.ClientToken]
	if cl == nil || cl.request != t.request() {
		c.mu.Unlock()
		c.log.Debug("jobs: ignoring a reply nobody waits for (unknown or expired clientToken)", "topic", topic, "client_token", head.ClientToken)
		return
	}
	delete(c.calls, head.ClientToken)
	c.mu.Unlock()
	cl.reply <- inbound{kind: t.Kind, topic: topic, payload: payload}
}

// GetPending asks for the pending executions (GetPendingJobExecutions).
func (c *Client) GetPending(ctx context.Context) (*PendingExecutions, error) {
	req := GetPendingRequest{ClientToken: rand.Text()}
	var out PendingExecutions
	if err := c.roundTrip(ctx, Topic{Operation: OpGetPending}, req.ClientToken, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StartNext starts the next pending execution (StartNextPendingJobExecution)
// and returns it with its job document. It returns nil, nil when nothing is
// pending.
func (c *Client) StartNext(ctx context.Context, req StartNextRequest) (*Execution, error) {
	t := Topic{Operation: OpStartNext}
	if err := errors.Join(ValidateStatusDetails(req.StatusDetails), checkStepTimeout(req.StepTimeoutInMinutes, false)); err != nil {
		return nil, fmt.Errorf("jobs: %s: %w", t.what(), err)
	}
	req.ClientToken = rand.Text()
	var out executionReply
	if err := c.roundTrip(ctx, t, req.ClientToken, req, &out); err != nil {
		return nil, err
	}
	return out.Execution, nil
}

// Describe returns an execution of jobID (DescribeJobExecution). jobID may be
// NextJobID ("$next"); then it returns nil, nil when nothing is pending.
func (c *Client) Describe(ctx context.Context, jobID string, req DescribeRequest) (*Execution, error) {
	t := Topic{JobID: jobID, Operation: OpDescribe}
	if jobID != NextJobID {
		if err := ValidateJobID(jobID); err != nil {
			return nil, fmt.Errorf("jobs: %s: %w", t.what(), err)
		}
	}
	req.ClientToken = rand.Text()
	var out executionReply
	if err := c.roundTrip(ctx, t, req.ClientToken, req, &out); err != nil {
		return nil, err
	}
	if out.Execution == nil && jobID != NextJobID {
		return nil, fmt.Errorf("jobs: %s: accepted reply has no execution", t.what())
	}
	return out.Execution, nil
}

// Update sets the status of an execution of jobID (UpdateJobExecution).
func (c *Client) Update(ctx context.Context, jobID string, req UpdateRequest) (*UpdateAccepted, error) {
	t := Topic{JobID: jobID, Operation: OpUpdate}
	var statusErr error
	switch req.Status {
	case StatusInProgress, StatusSucceeded, StatusFailed, StatusRejected:
	default:
		statusErr = fmt.Errorf("status %q: a device may set only IN_PROGRESS, SUCCEEDED, FAILED or REJECTED", req.Status)
	}
	if err := errors.Join(ValidateJobID(jobID), statusErr, ValidateStatusDetails(req.StatusDetails), checkStepTimeout(req.StepTimeoutInMinutes, true)); err != nil {
		return nil, fmt.Errorf("jobs: %s: %w", t.what(), err)
	}
	req.ClientToken = rand.Text()
	var out UpdateAccepted
	if err := c.roundTrip(ctx, t, req.ClientToken, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func checkStepTimeout(m int64, clearAllowed bool) error {
	if m == 0 || (1 <= m && m <= MaxStepTimeoutMinutes) || (clearAllowed && m == -1) {
		return nil
	}
	return fmt.Errorf("stepTimeoutInMinutes %d: want 1 to %d", m, MaxStepTimeoutMinutes)
}

// roundTrip publishes req on t's topic and waits for the reply with token. An
// accepted reply is decoded into out; a rejected one is returned as a
// *RejectedError.
func (c *Client) roundTrip(ctx context.Context, t Topic, token string, req, out any) error {
	t.ThingName, t.Kind = c.thing, KindRequest
	if err := ValidateThingName(c.thing); err != nil {
		return fmt.Errorf("jobs: %s: %w", t.what(), err)
	}
	topic := t.String()
	payload, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("jobs: %s: encode request: %w", t.what(), err)
	}
	// Register before publishing: the reply may arrive before Publish
	// returns.
	cl := &call{request: t, reply: make(chan inbound, 1)}
	c.mu.Lock()
	c.calls[token] = cl
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.calls, token)
		c.mu.Unlock()
	}()
	if err := c.m.Publish(ctx, topic, c.qos, payload); err != nil {
		return fmt.Errorf("jobs: %s: publish %s: %w", t.what(), topic, err)
	}
	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	var in inbound
	select {
	case in = <-cl.reply:
	case <-timer.C:
		return fmt.Errorf("jobs: no reply to %s in %s", topic, c.timeout)
	case <-ctx.Done():
		return fmt.Errorf("jobs: %s: waiting for the reply on %s: %w", t.what(), topic, ctx.Err())
	}
	if in.kind == KindRejected {
		rej := &RejectedError{}
		if err := json.Unmarshal(in.payload, rej); err != nil {
			return fmt.Errorf("jobs: %s: decode %s: %w", t.what(), in.topic, err)
		}
		rej.Operation, rej.JobID = t.Operation, t.JobID
		return rej
	}
	if err := json.Unmarshal(in.payload, out); err != nil {
		return fmt.Errorf("jobs: %s: decode %s: %w", t.what(), in.topic, err)
	}
	return nil
}

// latest is a one-slot channel where a newer value replaces an unread one.
type latest[T any] struct {
	mu sync.Mutex // serialises put, so that drain-then-send never blocks
	ch chan T
}

// putDecoded decodes a notification into l, or logs why it cannot.
func putDecoded[T any](log *slog.Logger, l *latest[T], topic string, payload []byte) {
	var v T
	if err := json.Unmarshal(payload, &v); err != nil {
		log.Warn("jobs: ignoring a malformed notification", "topic", topic, "err", err)
		return
	}
	l.put(v)
}

func newLatest[T any]() *latest[T] { return &latest[T]{ch: make(chan T, 1)} }

func (l *latest[T]) put(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.ch:
	default:
	}
	l.ch <- v
}
