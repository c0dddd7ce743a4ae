package broker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestClampKeepAlive(t *testing.T) {
	for _, tc := range []struct{ in, want uint16 }{
		{0, 1200}, {1, 30}, {5, 30}, {29, 30}, {30, 30}, {31, 31}, {60, 60},
		{1199, 1199}, {1200, 1200}, {1201, 1200}, {65535, 1200},
	} {
		if got := ClampKeepAlive(tc.in); got != tc.want {
			t.Errorf("ClampKeepAlive(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestCheckClientID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"dev1", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{strings.Repeat("é", 64), true},  // 128 bytes
		{strings.Repeat("é", 65), false}, // 130 bytes, 65 characters
		{"$aws", false},
		{"a$", true},
		{"", false},
		{"inline", false},
	} {
		if err := CheckClientID(tc.id); (err == nil) != tc.ok {
			t.Errorf("CheckClientID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}

func TestCheckTopic(t *testing.T) {
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"a/b/c", true},
		{"1/2/3/4/5/6/7/8", true},    // 7 slashes
		{"1/2/3/4/5/6/7/8/9", false}, // 8 slashes
		{"$aws/things/t/shadow/name/x/update/accepted", true},
		{"$aws/rules/myrule/1/2/3/4/5/6/7/8", true}, // Basic Ingest prefix not counted
		{"$aws/rules/myrule/1/2/3/4/5/6/7/8/9", false},
		{"$share/g/1/2/3/4/5/6/7/8", true}, // shared subscription prefix not counted
		{"#", true},
		{strings.Repeat("x", 256), true},
		{strings.Repeat("x", 257), false},
	} {
		if err := CheckTopic(tc.topic); (err == nil) != tc.ok {
			t.Errorf("CheckTopic(%q) = %v, want ok=%v", tc.topic, err, tc.ok)
		}
	}
}

func TestDisconnectReason(t *testing.T) {
	timeout := fmt.Errorf("read tcp: %w", os.ErrDeadlineExceeded)
	for _, tc := range []struct {
		name        string
		err, cause  error
		forced      string
		want        string
		byTheClient bool
	}{
		{"client DISCONNECT", nil, packets.CodeDisconnect, "", ReasonClientInitiated, true},
		{"takeover", errors.New("use of closed connection"), packets.ErrSessionTakenOver, "", ReasonDuplicateClient, false},
		{"shutdown", io.EOF, packets.ErrServerShuttingDown, "", ReasonServerInitiated, false},
		{"not authorized", packets.ErrNotAuthorized, packets.ErrNotAuthorized, "", ReasonAuthError, false},
		{"forced wins", io.EOF, packets.ErrSessionTakenOver, ReasonAuthError, ReasonAuthError, false},
		{"keep-alive", timeout, timeout, "", ReasonKeepAliveTimeout, false},
		{"limit", reject("too big"), reject("too big"), "", ReasonClientError, false},
		{"packet too large", packets.ErrPacketTooLarge, packets.ErrPacketTooLarge, "", ReasonClientError, false},
		{"second CONNECT", packets.ErrProtocolViolationSecondConnect, nil, "", ReasonClientError, false},
		{"eof", io.EOF, io.EOF, "", ReasonConnectionLost, false},
	} {
		reason, byClient := disconnectReason(tc.err, tc.cause, tc.forced)
		if reason != tc.want || byClient != tc.byTheClient {
			t.Errorf("%s: disconnectReason = %s, %v; want %s, %v", tc.name, reason, byClient, tc.want, tc.byTheClient)
		}
	}
}
