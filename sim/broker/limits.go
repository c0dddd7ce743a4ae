package broker

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
)

// AWS IoT Core per-connection limits (aws-iot-protocol.md §7.3–7.5).
const (
	MaxClientIDBytes = 128        // ClientID length in bytes
	MaxTopicBytes    = 256        // topic name or filter length in bytes
	MaxTopicSlashes  = 7          // forward slashes in a topic or filter
	MaxPayloadBytes  = 128 * 1024 // PUBLISH payload
	MinKeepAlive     = 30         // seconds; smaller requests are raised
	MaxKeepAlive     = 1200       // seconds; also the value used for 0
	// maxPacketBytes bounds what mochi reads into memory for one packet; the
	// exact payload limit is checked on the decoded packet.
	maxPacketBytes = MaxPayloadBytes + 64*1024
)

// Disconnect reasons of the lifecycle events (disconnectReason).
const (
	ReasonClientInitiated  = "CLIENT_INITIATED_DISCONNECT"
	ReasonDuplicateClient  = "DUPLICATE_CLIENTID"
	ReasonConnectionLost   = "CONNECTION_LOST"
	ReasonKeepAliveTimeout = "MQTT_KEEP_ALIVE_TIMEOUT"
	ReasonClientError      = "CLIENT_ERROR"
	ReasonServerInitiated  = "SERVER_INITIATED_DISCONNECT"
	ReasonAuthError        = "AUTH_ERROR"
)

// errClient marks a connection closed because the client broke an AWS limit.
var errClient = errors.New("client error")

// ClampKeepAlive returns the keep-alive AWS IoT applies for a requested one:
// 0 means 1200 s, values are clamped to 30–1200 s.
func ClampKeepAlive(requested uint16) uint16 {
	switch {
	case requested == 0 || requested > MaxKeepAlive:
		return MaxKeepAlive
	case requested < MinKeepAlive:
		return MinKeepAlive
	}
	return requested
}

// CheckClientID applies the AWS ClientID rules: 1–128 bytes, no leading "$".
// "inline" is also refused: mochi reserves it for the broker's own client.
func CheckClientID(id string) error {
	switch {
	case id == "":
		return errors.New("client id is empty")
	case len(id) > MaxClientIDBytes:
		return fmt.Errorf("client id is %d bytes, more than %d", len(id), MaxClientIDBytes)
	case strings.HasPrefix(id, "$"):
		return errors.New(`client id starts with "$" (reserved by AWS IoT)`)
	case id == "inline":
		return errors.New(`client id "inline" is reserved by the simulator's broker`)
	}
	return nil
}

// CheckTopic applies the AWS limits to a topic name or topic filter: at most
// 256 bytes and 7 forward slashes, not counting the "$aws/rules/{rule}/"
// (Basic Ingest) and "$share/{name}/" prefixes.
func CheckTopic(topic string) error {
	if len(topic) > MaxTopicBytes {
		return fmt.Errorf("topic is %d bytes, more than %d", len(topic), MaxTopicBytes)
	}
	counted := topic
	for _, prefix := range []string{"$aws/rules/", "$share/"} {
		if rest, ok := strings.CutPrefix(counted, prefix); ok {
			if _, after, found := strings.Cut(rest, "/"); found {
				counted = after
			}
		}
	}
	if n := strings.Count(counted, "/"); n > MaxTopicSlashes {
		return fmt.Errorf("topic has %d forward slashes, more than %d", n, MaxTopicSlashes)
	}
	return nil
}

// disconnectReason maps how a session ended to the AWS disconnectReason and
// clientInitiatedDisconnect. err is what ended mochi's read loop, stopCause
// the client's stop cause, forced a reason set by the simulator before it
// closed the connection.
func disconnectReason(err, stopCause error, forced string) (reason string, clientInitiated bool) {
	var code packets.Code
	switch {
	case forced != "":
		return forced, false
	case errors.Is(stopCause, packets.ErrSessionTakenOver):
		return ReasonDuplicateClient, false
	case errors.Is(stopCause, packets.ErrServerShuttingDown):
		return ReasonServerInitiated, false
	case errors.Is(stopCause, packets.ErrNotAuthorized):
		return ReasonAuthError, false
	case err == nil && errors.Is(stopCause, packets.CodeDisconnect):
		return ReasonClientInitiated, true
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonKeepAliveTimeout, false
	case errors.Is(err, errClient), errors.As(err, &code):
		return ReasonClientError, false
	}
	return ReasonConnectionLost, false
}
