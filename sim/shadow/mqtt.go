package shadow

import (
	"bytes"
	"errors"
	"strings"

	"github.com/thingd/thingd/sim/broker"
)

// parseTopic splits a topic under $aws/things/{thing}/shadow into the thing,
// the shadow name (named: under .../shadow/name/{name}) and the rest (op),
// e.g. "update" or "update/accepted". ok is false outside the shadow tree.
func parseTopic(topic string) (thing, name string, named bool, op string, ok bool) {
	rest, ok := strings.CutPrefix(topic, "$aws/things/")
	if !ok {
		return "", "", false, "", false
	}
	thing, rest, _ = strings.Cut(rest, "/")
	if rest != "shadow" && !strings.HasPrefix(rest, "shadow/") {
		return "", "", false, "", false
	}
	rest = strings.TrimPrefix(strings.TrimPrefix(rest, "shadow"), "/")
	if n, isNamed := strings.CutPrefix(rest, "name/"); isNamed {
		name, op, _ = strings.Cut(n, "/")
		return thing, name, true, op, true
	}
	return thing, "", false, rest, true
}

// HandleRequest serves a device's publish on its shadow topics,
// $aws/things/{thingName}/shadow/[name/{shadowName}/]{get,update,delete},
// and reports whether the topic was under $aws/things/{thingName}/shadow.
// Another thing's topics are served when the broker's policies allowed the
// publish (a gateway's). Replies and notifications are published to the
// topics' subscribers.
// Publishes on other shadow topics (the reply topics among them) are
// swallowed with a log line.
func (s *Service) HandleRequest(req *broker.Request) bool {
	thing, name, named, op, ok := parseTopic(req.Topic)
	if !ok {
		return false
	}
	if thing != req.ClientID && !req.Authorized() { // another thing's: a gateway's, if the policies allow it
		s.log.Warn("shadow request for another thing ignored", "clientId", req.ClientID, "topic", req.Topic)
		return true
	}
	if op != "get" && op != "update" && op != "delete" {
		s.log.Warn("publish to a shadow topic that takes no requests ignored", "clientId", req.ClientID, "topic", req.Topic)
		return true
	}
	var (
		clientToken string
		doc         []byte // get's accepted document; update and delete publish their own
		err         error
	)
	switch {
	case named && ValidateShadowName(name) != nil:
		clientToken, _ = requestToken(req.Payload) // echo it if it is readable
		err = errInvalidShadowName
	case op == "update":
		_, clientToken, err = s.update(thing, name, req.Payload)
	default: // get and delete ignore their payload but for the clientToken
		var rej *Error
		if clientToken, rej = requestToken(req.Payload); rej != nil {
			err = rej
		} else if op == "get" {
			doc, err = s.get(thing, name, clientToken)
		} else {
			_, err = s.delete(thing, name, clientToken)
		}
	}
	s.answer(req, clientToken, doc, err)
	return true
}

// requestToken returns the clientToken of a get or delete request; a
// payload that is not a JSON object has none.
func requestToken(payload []byte) (string, *Error) {
	if len(bytes.TrimSpace(payload)) == 0 {
		return "", nil
	}
	obj, rej := decodeObject(payload)
	if rej != nil {
		return "", nil // the content of get and delete is ignored
	}
	return tokenOf(obj)
}

// answer publishes accepted (unless nil: update and delete publish their
// own) or, when err is set, the rejected document to the request topic's
// subscribers.
func (s *Service) answer(req *broker.Request, clientToken string, accepted []byte, err error) {
	if err == nil {
		if accepted != nil {
			s.send(req.Topic+"/accepted", accepted)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		s.log.Error("shadow request failed", "clientId", req.ClientID, "topic", req.Topic, "error", err)
		e = errInternal
	} else {
		s.log.Info("shadow request rejected", "clientId", req.ClientID, "topic", req.Topic, "code", e.Code, "message", e.Message)
	}
	s.send(req.Topic+"/rejected", marshal(errorDoc{Code: e.Code, Message: e.Message, Timestamp: s.now().Unix(), ClientToken: clientToken}))
}

func (s *Service) send(topic string, payload []byte) {
	if err := s.publish(topic, payload); err != nil {
		s.log.Error("publish", "topic", topic, "error", err)
	}
}
