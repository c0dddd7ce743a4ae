package rotation

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// MQTT is what the provisioning client needs from a connection
// (agent/mqttconn.Conn). Subscriptions must survive reconnects.
type MQTT interface {
	Publish(ctx context.Context, topic string, qos byte, payload []byte) error
	Subscribe(ctx context.Context, filter string, qos byte, handler func(topic string, payload []byte)) error
}

// Fleet provisioning topics (aws-iot-protocol.md §3.1).
const (
	CreateFromCSRTopic = "$aws/certificates/create-from-csr/json"
	provisionPrefix    = "$aws/provisioning-templates/"
)

// RegisterTopic is the RegisterThing topic of a template.
func RegisterTopic(template string) string { return provisionPrefix + template + "/provision/json" }

// CertificateResponse is the accepted reply to CreateCertificateFromCsr.
type CertificateResponse struct {
	CertificateID             string `json:"certificateId"`
	CertificatePEM            string `json:"certificatePem"`
	CertificateOwnershipToken string `json:"certificateOwnershipToken"`
}

// RegisterRequest is a RegisterThing request.
type RegisterRequest struct {
	CertificateOwnershipToken string            `json:"certificateOwnershipToken"`
	Parameters                map[string]string `json:"parameters,omitempty"`
}

// RegisterResponse is the accepted reply to RegisterThing.
type RegisterResponse struct {
	ThingName           string            `json:"thingName"`
	DeviceConfiguration map[string]string `json:"deviceConfiguration,omitempty"`
}

// ProvisioningError is a rejected reply of the fleet provisioning API.
type ProvisioningError struct {
	Operation    string `json:"-"`
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

func (e *ProvisioningError) Error() string {
	return fmt.Sprintf("%s rejected by the cloud: %d %s: %s", e.Operation, e.StatusCode, e.ErrorCode, e.ErrorMessage)
}

// Provisioner calls CreateCertificateFromCsr and RegisterThing over MQTT.
// Replies carry no client token, so it runs one request at a time.
type Provisioner struct {
	m   MQTT
	log *slog.Logger

	reqMu sync.Mutex // one request at a time

	mu         sync.Mutex
	subscribed map[string]bool
	waiting    string // request topic awaiting a reply
	reply      chan reply
}

type reply struct {
	rejected bool
	payload  []byte
}

// NewProvisioner returns a client on m. log may be nil.
func NewProvisioner(m MQTT, log *slog.Logger) *Provisioner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provisioner{m: m, log: log, subscribed: map[string]bool{}}
}

// HandleMessage takes a reply that arrived without a subscription (AWS
// sends them to the requester regardless). It reports whether topic was a
// provisioning reply.
func (p *Provisioner) HandleMessage(topic string, payload []byte) bool {
	base, kind, ok := cutReply(topic)
	if !ok {
		return false
	}
	p.mu.Lock()
	ch := p.reply
	match := p.waiting == base
	p.mu.Unlock()
	if !match {
		p.log.Debug("provisioning reply nobody waits for", "topic", topic)
		return true
	}
	select {
	case ch <- reply{rejected: kind == "rejected", payload: append([]byte(nil), payload...)}:
	default:
	}
	return true
}

func cutReply(topic string) (base, kind string, ok bool) {
	if !strings.HasPrefix(topic, "$aws/certificates/") && !strings.HasPrefix(topic, provisionPrefix) {
		return "", "", false
	}
	for _, k := range []string{"accepted", "rejected"} {
		if b, found := strings.CutSuffix(topic, "/"+k); found {
			return b, k, true
		}
	}
	return "", "", false
}

// CreateFromCSR asks the cloud to sign csrPEM.
func (p *Provisioner) CreateFromCSR(ctx context.Context, csrPEM string) (*CertificateResponse, error) {
	var out CertificateResponse
	req := map[string]string{"certificateSigningRequest": csrPEM}
	if err := p.call(ctx, "create-from-csr", CreateFromCSRTopic, req, &out); err != nil {
		return nil, err
	}
	if out.CertificatePEM == "" || out.CertificateOwnershipToken == "" {
		return nil, fmt.Errorf("create-from-csr reply lacks certificatePem or certificateOwnershipToken")
	}
	return &out, nil
}

// Register calls RegisterThing with template.
func (p *Provisioner) Register(ctx context.Context, template string, req RegisterRequest) (*RegisterResponse, error) {
	var out RegisterResponse
	if err := p.call(ctx, "RegisterThing ("+template+")", RegisterTopic(template), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (p *Provisioner) call(ctx context.Context, op, topic string, req, out any) error {
	p.reqMu.Lock()
	defer p.reqMu.Unlock()
	for _, k := range []string{"/accepted", "/rejected"} {
		if err := p.subscribe(ctx, topic+k); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ch := make(chan reply, 1)
	p.mu.Lock()
	p.waiting, p.reply = topic, ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.waiting, p.reply = "", nil
		p.mu.Unlock()
	}()
	start := time.Now()
	if err := p.m.Publish(ctx, topic, 1, body); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	select {
	case r := <-ch:
		if r.rejected {
			pe := &ProvisioningError{Operation: op}
			if err := json.Unmarshal(r.payload, pe); err != nil {
				return fmt.Errorf("%s rejected with an unreadable reply: %w", op, err)
			}
			return pe
		}
		if err := json.Unmarshal(r.payload, out); err != nil {
			return fmt.Errorf("%s: malformed reply: %w", op, err)
		}
		return nil
	case <-ctx.Done():
		if deadline, ok := ctx.Deadline(); ok && ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("no reply to %s in %s", op, deadline.Sub(start).Round(time.Second))
		}
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
}

func (p *Provisioner) subscribe(ctx context.Context, filter string) error {
	p.mu.Lock()
	done := p.subscribed[filter]
	p.mu.Unlock()
	if done {
		return nil
	}
	if err := p.m.Subscribe(ctx, filter, 1, func(t string, b []byte) { p.HandleMessage(t, b) }); err != nil {
		return err
	}
	p.mu.Lock()
	p.subscribed[filter] = true
	p.mu.Unlock()
	return nil
}
