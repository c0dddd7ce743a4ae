package policy

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// Named is a policy in force: the name and version of a parsed document.
type Named struct {
	Name     string
	Version  string // version id, e.g. "1"
	Document *Document
}

// Request is an action on a resource (a full ARN) by a connection.
type Request struct {
	Action   string // e.g. ActionPublish
	Resource string // e.g. ARN(region, account, "topic", "a/b")
	Context  Context
}

// Decision results, as AWS's TestAuthorization names them.
const (
	Allowed      = "ALLOWED"
	ExplicitDeny = "EXPLICIT_DENY"
	ImplicitDeny = "IMPLICIT_DENY"
)

// Decision is the outcome of Evaluate, with what led to it.
type Decision struct {
	Allowed bool
	Result  string  // Allowed, ExplicitDeny or ImplicitDeny
	Allows  []Match // statements that allow the request
	Denies  []Match // statements that deny it
	// Variables are the policy variables met in statements whose action
	// matched, in order of first use, with what they resolved to.
	Variables []Variable
	// MissingKeys are condition keys without a value in the context.
	MissingKeys []string
}

// Match is a statement that applied to a request.
type Match struct {
	Policy    string `json:"policyName"`
	Version   string `json:"policyVersionId"`
	Statement int    `json:"statement"` // 1-based position in the document
	Sid       string `json:"sid,omitempty"`
	Effect    string `json:"effect"`
}

// String names the statement: `policy p version 1, statement 2 ("Sid")`.
func (m Match) String() string {
	s := fmt.Sprintf("policy %s version %s, statement %d", m.Policy, m.Version, m.Statement)
	if m.Sid != "" {
		s += fmt.Sprintf(" (%q)", m.Sid)
	}
	return s
}

// Variable is a policy variable and its value; Resolved is false when it has
// none, which makes the statements using it not match.
type Variable struct {
	Name     string `json:"name"`
	Value    string `json:"value,omitempty"`
	Resolved bool   `json:"resolved"`
}

// Reason explains the decision in one line: which statement denied or
// allowed, or that no statement allowed.
func (d Decision) Reason() string {
	switch {
	case len(d.Denies) > 0:
		return "explicitly denied by " + d.Denies[0].String()
	case len(d.Allows) > 0:
		return "allowed by " + d.Allows[0].String()
	}
	return "no statement allowed"
}

// Evaluate decides a request against the policies in force: allowed if a
// statement of one of them allows it and none denies it (explicit deny
// wins; no policy or no matching statement is an implicit deny).
func Evaluate(policies []Named, req Request) Decision {
	e := &evaluator{ctx: &req.Context, seen: map[string]bool{}}
	for _, p := range policies {
		e.substitute = p.Document.Version != Version2008
		for i, st := range p.Document.Statements {
			if !e.applies(st, req) {
				continue
			}
			m := Match{Policy: p.Name, Version: p.Version, Statement: i + 1, Sid: st.Sid, Effect: st.Effect}
			if st.Effect == Deny {
				e.d.Denies = append(e.d.Denies, m)
			} else {
				e.d.Allows = append(e.d.Allows, m)
			}
		}
	}
	switch {
	case len(e.d.Denies) > 0:
		e.d.Result = ExplicitDeny
	case len(e.d.Allows) > 0:
		e.d.Result, e.d.Allowed = Allowed, true
	default:
		e.d.Result = ImplicitDeny
	}
	return e.d
}

type evaluator struct {
	ctx        *Context
	substitute bool // variables are substituted (Version 2012-10-17)
	d          Decision
	seen       map[string]bool // variables and missing keys recorded
}

// applies reports whether a statement covers the request: action,
// resource and conditions.
func (e *evaluator) applies(st Statement, req Request) bool {
	actionIn := func(list []string) bool {
		return slices.ContainsFunc(list, func(a string) bool {
			return globMatch(wildPattern(strings.ToLower(a)), strings.ToLower(req.Action))
		})
	}
	if st.Actions != nil && !actionIn(st.Actions) || st.NotActions != nil && actionIn(st.NotActions) {
		return false
	}
	if st.Resources != nil {
		if !slices.ContainsFunc(st.Resources, func(r string) bool { return e.matches(r, req.Resource) }) {
			return false
		}
	} else {
		for _, r := range st.NotResources {
			p, ok := e.expand(r)
			if !ok || globMatch(p, req.Resource) {
				return false // an unresolvable NotResource never lets the statement apply
			}
		}
	}
	for _, c := range st.Conditions {
		if !e.condition(c) {
			return false
		}
	}
	return true
}

// matches reports whether a resource pattern, its variables substituted,
// matches resource. A pattern with an unresolvable variable matches nothing.
func (e *evaluator) matches(pat, resource string) bool {
	p, ok := e.expand(pat)
	return ok && globMatch(p, resource)
}

// pattern is a string whose wildcard characters are marked: text
// substituted for a variable is literal.
type pattern struct {
	text []rune
	wild []bool
}

func (p *pattern) add(s string, wild bool) {
	for _, r := range s {
		p.text = append(p.text, r)
		p.wild = append(p.wild, wild && (r == '*' || r == '?'))
	}
}

// wildPattern is s with * and ? as wildcards and no variables.
func wildPattern(s string) pattern {
	var p pattern
	p.add(s, true)
	return p
}

// expand substitutes the policy variables of s; ok is false if one cannot
// be resolved.
func (e *evaluator) expand(s string) (pattern, bool) {
	var p pattern
	for {
		i := strings.Index(s, "${")
		j := strings.Index(s[max(i, 0):], "}")
		if !e.substitute || i < 0 || j < 0 {
			p.add(s, true)
			return p, true
		}
		j += i
		p.add(s[:i], true)
		name := s[i+2 : j]
		switch name {
		case "*", "?", "$":
			p.add(name, false)
		default:
			r := e.ctx.resolve(name)
			e.note(name, r)
			switch {
			case !r.ok || len(r.values) != 1:
				return pattern{}, false
			case r.literal:
				p.add(s[i:j+1], false)
			default:
				p.add(r.values[0], false)
			}
		}
		s = s[j+1:]
	}
}

// note records a variable met during evaluation, once.
func (e *evaluator) note(name string, r resolution) {
	if e.seen[name] {
		return
	}
	e.seen[name] = true
	v := Variable{Name: name, Resolved: r.ok}
	if r.ok {
		v.Value = strings.Join(r.values, ",")
	}
	e.d.Variables = append(e.d.Variables, v)
}

// globMatch matches s against a pattern: a wildcard * is any run of
// characters, ? exactly one.
func globMatch(p pattern, s string) bool {
	str := []rune(s)
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(str) {
		switch {
		case pi < len(p.text) && p.wild[pi] && p.text[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p.text) && (p.text[pi] == str[si] && !p.wild[pi] || p.wild[pi] && p.text[pi] == '?'):
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p.text) && p.wild[pi] && p.text[pi] == '*' {
		pi++
	}
	return pi == len(p.text)
}

// condition operators: the positive test of a key value against the
// policy's values.
var operators = map[string]func(value string, policy []pattern) bool{
	"StringEquals": func(v string, ps []pattern) bool {
		return slices.ContainsFunc(ps, func(p pattern) bool { return string(p.text) == v })
	},
	"StringEqualsIgnoreCase": func(v string, ps []pattern) bool {
		return slices.ContainsFunc(ps, func(p pattern) bool { return strings.EqualFold(string(p.text), v) })
	},
	"StringLike": func(v string, ps []pattern) bool {
		return slices.ContainsFunc(ps, func(p pattern) bool { return globMatch(p, v) })
	},
	"Bool": func(v string, ps []pattern) bool {
		return slices.ContainsFunc(ps, func(p pattern) bool { return strings.EqualFold(string(p.text), v) })
	},
	"IpAddress": func(v string, ps []pattern) bool {
		ip := net.ParseIP(v)
		return ip != nil && slices.ContainsFunc(ps, func(p pattern) bool {
			if _, n, err := net.ParseCIDR(string(p.text)); err == nil {
				return n.Contains(ip)
			}
			return ip.Equal(net.ParseIP(string(p.text)))
		})
	},
}

// negated operators and the positive one they negate.
var negated = map[string]string{
	"StringNotEquals":           "StringEquals",
	"StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
	"StringNotLike":             "StringLike",
	"NotIpAddress":              "IpAddress",
}

// splitOperator splits "ForAnyValue:StringLikeIfExists" into its set
// qualifier, base operator and IfExists flag.
func splitOperator(op string) (set, base string, ifExists bool, err error) {
	base = op
	if q, rest, ok := strings.Cut(op, ":"); ok {
		if q != "ForAnyValue" && q != "ForAllValues" {
			return "", "", false, fmt.Errorf("condition operator %q: unknown qualifier %s", op, q)
		}
		set, base = q, rest
	}
	base, ifExists = strings.CutSuffix(base, "IfExists")
	_, pos := operators[base]
	_, neg := negated[base]
	if !pos && !neg && base != "Null" {
		return "", "", false, fmt.Errorf("condition operator %q is not supported (StringEquals, StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, StringLike, StringNotLike, Bool, Null, IpAddress, NotIpAddress, with IfExists and ForAnyValue:/ForAllValues:)", op)
	}
	return set, base, ifExists, nil
}

// condition evaluates one key of a condition operator.
func (e *evaluator) condition(c Condition) bool {
	set, base, ifExists, err := splitOperator(c.Operator)
	if err != nil {
		return false // Parse refuses such documents
	}
	r := e.ctx.resolve(c.Key)
	if base == "Null" { // "true": the key must be absent
		return slices.ContainsFunc(c.Values, func(v string) bool { return strings.EqualFold(v, "true") }) != r.ok
	}
	if !r.ok {
		if !e.seen["key "+c.Key] {
			e.seen["key "+c.Key] = true
			e.d.MissingKeys = append(e.d.MissingKeys, c.Key)
		}
		return ifExists || set == "ForAllValues"
	}
	var ps []pattern
	for _, v := range c.Values {
		if p, ok := e.expand(v); ok {
			ps = append(ps, p)
		}
	}
	test, isNeg := operators[base], false
	if pos, ok := negated[base]; ok {
		test, isNeg = operators[pos], true
	}
	holds := func(v string) bool { return test(v, ps) != isNeg }
	switch set {
	case "ForAllValues":
		return !slices.ContainsFunc(r.values, func(v string) bool { return !holds(v) })
	case "ForAnyValue":
		return slices.ContainsFunc(r.values, holds)
	}
	if isNeg {
		return !slices.ContainsFunc(r.values, func(v string) bool { return test(v, ps) })
	}
	return slices.ContainsFunc(r.values, holds)
}
