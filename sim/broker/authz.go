package broker

import (
	"fmt"
	"strings"
	"sync"

	"github.com/thingd/thingd/sim/ca"
	"github.com/thingd/thingd/sim/policy"
	"github.com/thingd/thingd/sim/registry"
)

// Rules of thingsim that decide a request before (or instead of) the
// policies; Authorization.Rule names the one that applied.
const (
	// RuleEventsReserved: nobody publishes to $aws/events/, the broker's own.
	RuleEventsReserved = "events-reserved"
	// RuleLifecycleEvents: every client may subscribe to and receive
	// $aws/events/presence/ (unless Options.StrictLifecycleEvents).
	RuleLifecycleEvents = "lifecycle-events"
	// RuleOpenMode: no policy is in force for the certificate, so the
	// rules from before thingsim had policies apply: everything is allowed
	// but another thing's $aws/things/{thing}/jobs/ and .../shadow/ topics.
	RuleOpenMode = "open-mode"
)

// AuthRequest is an authorization question: may the connection of a
// certificate with a ClientID perform an action on a resource?
type AuthRequest struct {
	CertificateID string
	ClientID      string
	SourceIP      string
	// CertificateVariables are policy.CertificateVariables of the
	// certificate; nil means read them from the registered PEM.
	CertificateVariables map[string][]string
	Action               string // e.g. policy.ActionPublish
	Resource             string // ARN, e.g. ResourceARN("topic", "a/b")
}

// Authorization is the answer to an AuthRequest.
type Authorization struct {
	Allowed bool
	// Rule is the thingsim rule that decided (Rule... constants), or ""
	// when the policies did.
	Rule string
	// Reason says in one line why: the rule, the statement that denied or
	// allowed, or "no statement allowed".
	Reason string
	// Decision is the policy engine's (zero when a rule decided).
	Decision policy.Decision
	// Policies are the policies in force (default versions).
	Policies []registry.EffectivePolicy
	// Context is what the policy variables resolved from.
	Context policy.Context
}

// ResourceARN returns the ARN of a data-plane resource of thingsim's
// account and region: kind is client, topic or topicfilter.
func ResourceARN(kind, name string) string {
	return policy.ARN(registry.Region, registry.AccountID, kind, name)
}

// splitResource returns the kind and name of a resource ARN of thingsim's
// account and region.
func splitResource(arn string) (kind, name string, ok bool) {
	rest, ok := strings.CutPrefix(arn, "arn:aws:iot:"+registry.Region+":"+registry.AccountID+":")
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, "/")
}

// Authorizer decides requests with the policies in the registry, as the
// broker enforces them. It is safe for concurrent use.
type Authorizer struct {
	reg    *registry.Registry
	strict bool     // lifecycle events need policies
	docs   sync.Map // document text → *policy.Document
}

// NewAuthorizer returns an authorizer on reg. strictLifecycleEvents makes
// reading $aws/events/presence/ subject to the policies, as on AWS.
func NewAuthorizer(reg *registry.Registry, strictLifecycleEvents bool) *Authorizer {
	return &Authorizer{reg: reg, strict: strictLifecycleEvents}
}

// Authorize answers a request: thingsim's rules first, then, if the
// certificate has policies in force, the policy engine on them; without
// policies, open mode (see RuleOpenMode).
func (a *Authorizer) Authorize(req AuthRequest) (Authorization, error) {
	kind, name, ok := splitResource(req.Resource)
	if !ok {
		kind, name = "", req.Resource
	}
	switch {
	case req.Action == policy.ActionPublish && kind == "topic" && strings.HasPrefix(name, "$aws/events/"):
		return ruled(RuleEventsReserved, false, "$aws/events/ is reserved for the broker"), nil
	case !a.strict && (req.Action == policy.ActionSubscribe && kind == "topicfilter" || req.Action == policy.ActionReceive && kind == "topic") &&
		strings.HasPrefix(name, "$aws/events/presence/"):
		return ruled(RuleLifecycleEvents, true, "thingsim lets every client read the lifecycle events (AWS checks the policies)"), nil
	}
	pr, err := a.reg.Principal(req.CertificateID, req.ClientID)
	if err != nil {
		return Authorization{}, fmt.Errorf("broker: authorize: %w", err)
	}
	vars := req.CertificateVariables
	if vars == nil {
		cert, err := ca.ParseCertificatePEM([]byte(pr.Certificate.PEM))
		if err != nil {
			return Authorization{}, fmt.Errorf("broker: authorize: certificate %s: %w", req.CertificateID, err)
		}
		vars = policy.CertificateVariables(cert)
	}
	pctx := policy.Context{ClientID: req.ClientID, CertificateID: req.CertificateID, SourceIP: req.SourceIP, Certificate: vars}
	if t := pr.Thing; t != nil {
		pctx.Thing = &policy.Thing{Name: t.Name, Attributes: t.Attributes}
	}
	if len(pr.Policies) == 0 {
		az := openMode(req.ClientID, req.Action, kind, name)
		az.Context = pctx
		return az, nil
	}
	named := make([]policy.Named, 0, len(pr.Policies))
	for _, p := range pr.Policies {
		doc, err := a.parse(p.Document)
		if err != nil {
			return Authorization{}, fmt.Errorf("broker: authorize: policy %s version %s: %w", p.Name, p.DefaultVersionID, err)
		}
		named = append(named, policy.Named{Name: p.Name, Version: p.DefaultVersionID, Document: doc})
	}
	d := policy.Evaluate(named, policy.Request{Action: req.Action, Resource: req.Resource, Context: pctx})
	return Authorization{Allowed: d.Allowed, Reason: d.Reason(), Decision: d, Policies: pr.Policies, Context: pctx}, nil
}

func ruled(rule string, allowed bool, reason string) Authorization {
	return Authorization{Allowed: allowed, Rule: rule, Reason: reason}
}

// openMode applies the rules of a certificate without policies.
func openMode(clientID, action, kind, name string) Authorization {
	if kind == "topic" || kind == "topicfilter" {
		if thing, ok := ThingOfReservedTopic(name); ok && thing != clientID {
			return ruled(RuleOpenMode, false, "not authorized: reserved topic of another thing (no policy attached: thingsim open mode)")
		}
	}
	return ruled(RuleOpenMode, true, "no policy attached (thingsim open mode: allowed; AWS would deny)")
}

// parse parses a stored document, caching the result by its text.
func (a *Authorizer) parse(text string) (*policy.Document, error) {
	if d, ok := a.docs.Load(text); ok {
		return d.(*policy.Document), nil
	}
	d, err := policy.Parse(text)
	if err != nil {
		return nil, err
	}
	a.docs.Store(text, d)
	return d, nil
}
