// Package policy is thingsim's AWS IoT Core policy engine: it parses policy
// documents and decides whether a request (an action on a resource, by a
// connection) is allowed, with the semantics of aws-iot-protocol.md §4. It
// is pure: no registry, no broker, no clock. The broker feeds it the
// policies attached to a connection's certificate and thing groups; the
// admin API's TestAuthorization and the audit use the same functions.
//
// # Language
//
//   - A document is {"Version": "2012-10-17", "Statement": [...]}, a
//     statement {"Sid", "Effect": "Allow"|"Deny", "Action"|"NotAction",
//     "Resource"|"NotResource", "Condition"}; Action and Resource take a
//     string or a list. [Parse] refuses anything else, and documents over
//     [MaxDocumentChars] characters not counting white space.
//   - Actions: iot:Connect (resource client/{clientId}), iot:Publish,
//     iot:Receive and iot:RetainPublish (topic/{topicName}), iot:Subscribe
//     (topicfilter/{filter}, the literal filter the client sent). Action
//     names are case-insensitive and may use * and ? (iot:* is every action).
//   - Resources are ARNs arn:aws:iot:REGION:ACCOUNT:TYPE/NAME matched with
//     IAM wildcards: * is any run of characters, / included; ? exactly one
//     character. MQTT's + and # are ordinary characters: the resource
//     topicfilter/a/# only matches a subscription to exactly "a/#".
//   - Policy variables ${...} are substituted in resources and condition
//     values (not with Version 2008-10-17): iot:ClientId, iot:CertificateId,
//     aws:SourceIp, iot:Connection.Thing.ThingName, .ThingTypeName,
//     .Attributes[name], .IsAttached, iot:Certificate.Subject.X,
//     iot:Certificate.Issuer.X (X: CommonName, Country, Organization,
//     OrganizationalUnit, State, SerialNumber, Title, Surname, GivenName,
//     Initials, Pseudonym, GenerationQualifier, DistinguishedNameQualifier,
//     AlternativeName.{RFC822Name,DNSName,UniformResourceIdentifier,
//     IPAddress}), iot:Certificate.SerialNumber and
//     iot:Certificate.AvailableKeys; X.1, X.2 ... pick the further values
//     of a multi-valued attribute. ${*}, ${?} and ${$} are the literal
//     characters. Substituted text is literal, never a wildcard.
//   - A variable that cannot be resolved — a thing variable when the client
//     is not a thing the certificate is attached to (ClientID = thing name),
//     a missing attribute, an index past the end — makes its statement not
//     match, for Deny statements as for Allow ones. A certificate value
//     longer than 1024 characters or containing * $ + ? # is not
//     substituted: the ${...} text stays, as AWS documents.
//   - Conditions: StringEquals, StringNotEquals, StringEqualsIgnoreCase,
//     StringNotEqualsIgnoreCase, StringLike, StringNotLike, Bool, Null,
//     IpAddress, NotIpAddress, each optionally ...IfExists and prefixed
//     ForAnyValue: or ForAllValues:. The keys are the variables' names
//     (iot:Connection.Thing.IsAttached ...). Several values of one key are
//     alternatives; several keys and operators must all hold.
//   - Evaluation ([Evaluate]): default deny; a matching Allow grants; any
//     matching Deny wins over every Allow; statement order does not matter.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// Actions the broker checks.
const (
	ActionConnect       = "iot:Connect"
	ActionPublish       = "iot:Publish"
	ActionSubscribe     = "iot:Subscribe"
	ActionReceive       = "iot:Receive"
	ActionRetainPublish = "iot:RetainPublish"
)

// Effects of a statement.
const (
	Allow = "Allow"
	Deny  = "Deny"
)

// Limits (aws-iot-protocol.md §4.7).
const (
	// MaxDocumentChars is the largest policy document, in characters not
	// counting white space.
	MaxDocumentChars = 2048
	// MaxVersions is the number of versions a named policy may have.
	MaxVersions = 5
)

// Language versions a document may declare.
const (
	Version2012 = "2012-10-17"
	Version2008 = "2008-10-17" // policy variables are plain text
)

// Document is a parsed policy document.
type Document struct {
	Version    string
	Statements []Statement
}

// Statement is one statement of a document. Exactly one of Actions and
// NotActions, and one of Resources and NotResources, is set.
type Statement struct {
	Sid          string
	Effect       string // Allow or Deny
	Actions      []string
	NotActions   []string
	Resources    []string
	NotResources []string
	Conditions   []Condition
}

// Condition is one key of a condition operator: Operator is e.g. "Bool" or
// "ForAnyValue:StringLike", Key e.g. "iot:Connection.Thing.IsAttached".
type Condition struct {
	Operator string
	Key      string
	Values   []string
}

// Size returns a document's size as AWS limits it: its characters that are
// not white space.
func Size(doc string) int {
	n := 0
	for _, r := range doc {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}

// stringList is a JSON string or list of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(data []byte) error {
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return errors.New("must be a string or a list of strings")
	}
	*l = many
	return nil
}

type rawStatement struct {
	Sid         string                           `json:"Sid"`
	Effect      string                           `json:"Effect"`
	Action      stringList                       `json:"Action"`
	NotAction   stringList                       `json:"NotAction"`
	Resource    stringList                       `json:"Resource"`
	NotResource stringList                       `json:"NotResource"`
	Condition   map[string]map[string]stringList `json:"Condition"`
}

// statements is a JSON statement object or list of them.
type statements []rawStatement

func (s *statements) UnmarshalJSON(data []byte) error {
	if d := bytes.TrimSpace(data); len(d) > 0 && d[0] == '{' {
		var one rawStatement
		if err := strictUnmarshal(data, &one); err != nil {
			return err
		}
		*s = statements{one}
		return nil
	}
	var many []json.RawMessage
	if err := json.Unmarshal(data, &many); err != nil {
		return errors.New("Statement must be an object or a list of objects")
	}
	for _, m := range many {
		var one rawStatement
		if err := strictUnmarshal(m, &one); err != nil {
			return err
		}
		*s = append(*s, one)
	}
	return nil
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Parse parses and validates a policy document: JSON of the shape above,
// Version 2012-10-17 or 2008-10-17, at least one statement, each with an
// Effect, actions, resources and supported condition operators, and at most
// MaxDocumentChars characters not counting white space. Errors say what is
// wrong, as AWS's MalformedPolicyException does.
func Parse(doc string) (*Document, error) {
	if n := Size(doc); n > MaxDocumentChars {
		return nil, fmt.Errorf("policy: the document has %d characters (white space excluded), more than the %d allowed", n, MaxDocumentChars)
	}
	var raw struct {
		Version   string     `json:"Version"`
		ID        string     `json:"Id"`
		Statement statements `json:"Statement"`
	}
	if err := strictUnmarshal([]byte(doc), &raw); err != nil {
		return nil, fmt.Errorf("policy: the document is not a policy: %w", err)
	}
	switch raw.Version {
	case Version2012, Version2008:
	case "":
		return nil, fmt.Errorf("policy: Version is required (%s)", Version2012)
	default:
		return nil, fmt.Errorf("policy: Version %q is not %s or %s", raw.Version, Version2012, Version2008)
	}
	if len(raw.Statement) == 0 {
		return nil, errors.New("policy: the document has no Statement")
	}
	d := &Document{Version: raw.Version}
	for i, rs := range raw.Statement {
		st, err := parseStatement(rs)
		if err != nil {
			return nil, fmt.Errorf("policy: statement %d: %w", i+1, err)
		}
		d.Statements = append(d.Statements, st)
	}
	return d, nil
}

func parseStatement(rs rawStatement) (Statement, error) {
	st := Statement{Sid: rs.Sid, Effect: rs.Effect, Actions: rs.Action, NotActions: rs.NotAction,
		Resources: rs.Resource, NotResources: rs.NotResource}
	if st.Effect != Allow && st.Effect != Deny {
		return Statement{}, fmt.Errorf("Effect %q must be Allow or Deny", st.Effect)
	}
	if err := oneOf("Action", st.Actions, st.NotActions); err != nil {
		return Statement{}, err
	}
	if err := oneOf("Resource", st.Resources, st.NotResources); err != nil {
		return Statement{}, err
	}
	for _, a := range slices.Concat(st.Actions, st.NotActions) {
		if a != "*" && !strings.HasPrefix(strings.ToLower(a), "iot:") {
			return Statement{}, fmt.Errorf("action %q is not an iot: action", a)
		}
	}
	for _, r := range slices.Concat(st.Resources, st.NotResources) {
		if r != "*" && !strings.HasPrefix(r, "arn:") {
			return Statement{}, fmt.Errorf("resource %q is not an ARN or *", r)
		}
	}
	for _, op := range sortedKeys(rs.Condition) {
		if _, _, _, err := splitOperator(op); err != nil {
			return Statement{}, err
		}
		for _, key := range sortedKeys(rs.Condition[op]) {
			st.Conditions = append(st.Conditions, Condition{Operator: op, Key: key, Values: rs.Condition[op][key]})
		}
	}
	return st, nil
}

func oneOf(name string, plain, not []string) error {
	switch {
	case plain != nil && not != nil:
		return fmt.Errorf("a statement has %s or Not%s, not both", name, name)
	case len(plain) == 0 && len(not) == 0:
		return fmt.Errorf("%s (or Not%s) is required", name, name)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ARN returns the ARN of a data-plane resource: kind is client, topic,
// topicfilter or thing.
func ARN(region, account, kind, name string) string {
	return "arn:aws:iot:" + region + ":" + account + ":" + kind + "/" + name
}
