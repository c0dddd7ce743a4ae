package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/policy"
)

// Policy errors (besides ErrNotFound, ErrAlreadyExists and ErrInvalid);
// match them with errors.Is.
var (
	// ErrMalformedPolicy: the document does not parse or is too large.
	ErrMalformedPolicy = errors.New("malformed policy")
	// ErrVersionsLimitExceeded: the policy already has policy.MaxVersions versions.
	ErrVersionsLimitExceeded = errors.New("policy versions limit exceeded")
	// ErrDeleteConflict: the policy or version is still in use.
	ErrDeleteConflict = errors.New("delete conflict")
	// ErrLimitExceeded: the target already has MaxPoliciesPerTarget policies.
	ErrLimitExceeded = errors.New("limit exceeded")
)

// MaxPoliciesPerTarget is the number of policies a certificate or thing
// group may have attached.
const MaxPoliciesPerTarget = 10

var (
	bucketPolicies       = []byte("Policies")
	bucketPolicyVersions = []byte("PolicyVersions") // policy \x00 %010d version → PolicyVersion
	bucketPolicyTargets  = []byte("PolicyTargets")  // policy \x00 target ARN
	bucketTargetPolicies = []byte("TargetPolicies") // target ARN \x00 policy
)

// The policy buckets are created by Open with the others.
func init() {
	allBuckets = append(allBuckets, bucketPolicies, bucketPolicyVersions, bucketPolicyTargets, bucketTargetPolicies)
}

var policyNameRE = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)

// Policy is a named IoT policy. Document is its default version's.
type Policy struct {
	Name             string    `json:"policyName"`
	ARN              string    `json:"policyArn"`
	DefaultVersionID string    `json:"defaultVersionId"`
	LastVersion      int64     `json:"lastVersion"` // version ids are never reused
	CreatedAt        time.Time `json:"creationDate"`
	LastModified     time.Time `json:"lastModifiedDate"`
	Document         string    `json:"-"`
}

// PolicyVersion is one version of a policy.
type PolicyVersion struct {
	PolicyName string    `json:"policyName"`
	VersionID  string    `json:"versionId"`
	Document   string    `json:"policyDocument"`
	IsDefault  bool      `json:"-"` // set when read
	CreatedAt  time.Time `json:"createDate"`
}

// PolicyARN returns the ARN of a policy name.
func PolicyARN(name string) string { return arnPrefix + "policy/" + name }

// ValidatePolicyName checks the AWS policy name pattern [\w+=,.@-]{1,128}.
func ValidatePolicyName(name string) error {
	if !policyNameRE.MatchString(name) {
		return fmt.Errorf("%w: policy name %q must match [\\w+=,.@-]{1,128}", ErrInvalid, name)
	}
	return nil
}

func validDocument(doc string) error {
	if _, err := policy.Parse(doc); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedPolicy, err)
	}
	return nil
}

func versionKey(name string, v int64) []byte { return fmt.Appendf(nil, "%s\x00%010d", name, v) }

func parseVersionID(id string) (int64, error) {
	v, err := strconv.ParseInt(id, 10, 64)
	if err != nil || v < 1 || strconv.FormatInt(v, 10) != id {
		return 0, fmt.Errorf("%w: policy version id %q must be a positive whole number", ErrInvalid, id)
	}
	return v, nil
}

// CreatePolicy creates a policy whose version 1, the default, is document
// (validated with policy.Parse).
func (r *Registry) CreatePolicy(name, document string, now time.Time) (Policy, error) {
	if err := ValidatePolicyName(name); err != nil {
		return Policy{}, fmt.Errorf("registry: create policy: %w", err)
	}
	if err := validDocument(document); err != nil {
		return Policy{}, fmt.Errorf("registry: create policy: %w", err)
	}
	p := Policy{Name: name, ARN: PolicyARN(name), DefaultVersionID: "1", LastVersion: 1,
		CreatedAt: now.UTC(), LastModified: now.UTC(), Document: document}
	err := r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPolicies)
		if b.Get([]byte(name)) != nil {
			return fmt.Errorf("%w: policy %s already exists", ErrAlreadyExists, name)
		}
		if err := putJSON(b, name, p); err != nil {
			return err
		}
		return putVersion(tx, PolicyVersion{PolicyName: name, VersionID: "1", Document: document, CreatedAt: now.UTC()}, 1)
	})
	if err != nil {
		return Policy{}, fmt.Errorf("registry: create policy: %w", err)
	}
	return p, nil
}

func putVersion(tx *bolt.Tx, v PolicyVersion, n int64) error {
	return putJSON(tx.Bucket(bucketPolicyVersions), string(versionKey(v.PolicyName, n)), v)
}

// EnsurePolicy creates a policy with document unless one of that name
// exists, which is left as it is (built-in policies an operator or an audit
// mitigation may have changed). It reports whether it created it.
func (r *Registry) EnsurePolicy(name, document string, now time.Time) (bool, error) {
	_, err := r.CreatePolicy(name, document, now)
	if errors.Is(err, ErrAlreadyExists) {
		return false, nil
	}
	return err == nil, err
}

// getPolicy reads a policy and its default version's document inside tx.
func getPolicy(tx *bolt.Tx, name string) (Policy, error) {
	var p Policy
	if err := getJSON(tx.Bucket(bucketPolicies), name, "policy", &p); err != nil {
		return Policy{}, err
	}
	v, err := getVersion(tx, name, p.DefaultVersionID)
	if err != nil {
		return Policy{}, err
	}
	p.Document = v.Document
	return p, nil
}

func getVersion(tx *bolt.Tx, name, id string) (PolicyVersion, error) {
	n, err := parseVersionID(id)
	if err != nil {
		return PolicyVersion{}, err
	}
	var v PolicyVersion
	if err := getJSON(tx.Bucket(bucketPolicyVersions), string(versionKey(name, n)), "policy version", &v); err != nil {
		return PolicyVersion{}, fmt.Errorf("%w: policy %s has no version %s", ErrNotFound, name, id)
	}
	return v, nil
}

// Policy returns a policy, with its default version's document.
func (r *Registry) Policy(name string) (Policy, error) {
	var p Policy
	err := r.db.View(func(tx *bolt.Tx) (err error) {
		p, err = getPolicy(tx, name)
		return err
	})
	if err != nil {
		return Policy{}, fmt.Errorf("registry: %w", err)
	}
	return p, nil
}

// Policies returns all policies sorted by name, with their default
// versions' documents.
func (r *Registry) Policies() ([]Policy, error) {
	var out []Policy
	err := r.db.View(func(tx *bolt.Tx) error {
		var names []string
		err := tx.Bucket(bucketPolicies).ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		})
		if err == nil {
			out, err = getPolicies(tx, names)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list policies: %w", err)
	}
	return out, nil
}

// versions returns a policy's versions, oldest first, marking the default.
func versions(tx *bolt.Tx, p Policy) ([]PolicyVersion, error) {
	var out []PolicyVersion
	prefix := []byte(p.Name + "\x00")
	c := tx.Bucket(bucketPolicyVersions).Cursor()
	for k, data := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, data = c.Next() {
		var v PolicyVersion
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("decode policy version %q: %w", k, err)
		}
		v.IsDefault = v.VersionID == p.DefaultVersionID
		out = append(out, v)
	}
	return out, nil
}

// PolicyVersions returns a policy's versions, oldest first; IsDefault marks
// the default one.
func (r *Registry) PolicyVersions(name string) ([]PolicyVersion, error) {
	var out []PolicyVersion
	err := r.db.View(func(tx *bolt.Tx) error {
		var p Policy
		if err := getJSON(tx.Bucket(bucketPolicies), name, "policy", &p); err != nil {
			return err
		}
		var err error
		out, err = versions(tx, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list policy versions: %w", err)
	}
	return out, nil
}

// PolicyVersion returns one version of a policy.
func (r *Registry) PolicyVersion(name, versionID string) (PolicyVersion, error) {
	var v PolicyVersion
	err := r.db.View(func(tx *bolt.Tx) error {
		var p Policy
		if err := getJSON(tx.Bucket(bucketPolicies), name, "policy", &p); err != nil {
			return err
		}
		var err error
		v, err = getVersion(tx, name, versionID)
		v.IsDefault = versionID == p.DefaultVersionID
		return err
	})
	if err != nil {
		return PolicyVersion{}, fmt.Errorf("registry: %w", err)
	}
	return v, nil
}

// updatePolicy runs fn on a stored policy inside an update transaction and
// stores it back, with LastModified set to now.
func (r *Registry) updatePolicy(op, name string, now time.Time, fn func(tx *bolt.Tx, p *Policy) error) error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		var p Policy
		if err := getJSON(tx.Bucket(bucketPolicies), name, "policy", &p); err != nil {
			return err
		}
		if err := fn(tx, &p); err != nil {
			return err
		}
		p.LastModified = now.UTC()
		return putJSON(tx.Bucket(bucketPolicies), name, p)
	})
	if err != nil {
		return fmt.Errorf("registry: %s: %w", op, err)
	}
	return nil
}

// CreatePolicyVersion adds a version to a policy, the default one if
// setAsDefault. A policy has at most policy.MaxVersions versions
// (ErrVersionsLimitExceeded: delete one first).
func (r *Registry) CreatePolicyVersion(name, document string, setAsDefault bool, now time.Time) (PolicyVersion, error) {
	if err := validDocument(document); err != nil {
		return PolicyVersion{}, fmt.Errorf("registry: create policy version: %w", err)
	}
	var v PolicyVersion
	err := r.updatePolicy("create policy version", name, now, func(tx *bolt.Tx, p *Policy) error {
		all, err := versions(tx, *p)
		if err != nil {
			return err
		}
		if len(all) >= policy.MaxVersions {
			return fmt.Errorf("%w: policy %s already has the maximum of %d versions; delete one with DeletePolicyVersion first",
				ErrVersionsLimitExceeded, name, policy.MaxVersions)
		}
		p.LastVersion++
		v = PolicyVersion{PolicyName: name, VersionID: strconv.FormatInt(p.LastVersion, 10), Document: document, CreatedAt: now.UTC()}
		if setAsDefault {
			p.DefaultVersionID, v.IsDefault = v.VersionID, true
		}
		return putVersion(tx, v, p.LastVersion)
	})
	return v, err
}

// SetDefaultPolicyVersion makes an existing version the policy's default.
func (r *Registry) SetDefaultPolicyVersion(name, versionID string, now time.Time) error {
	return r.updatePolicy("set default policy version", name, now, func(tx *bolt.Tx, p *Policy) error {
		if _, err := getVersion(tx, name, versionID); err != nil {
			return err
		}
		p.DefaultVersionID = versionID
		return nil
	})
}

// DeletePolicyVersion deletes a version that is not the default
// (ErrDeleteConflict otherwise; DeletePolicy deletes the last one).
func (r *Registry) DeletePolicyVersion(name, versionID string, now time.Time) error {
	return r.updatePolicy("delete policy version", name, now, func(tx *bolt.Tx, p *Policy) error {
		if _, err := getVersion(tx, name, versionID); err != nil {
			return err
		}
		if versionID == p.DefaultVersionID {
			return fmt.Errorf("%w: version %s is the default version of policy %s; make another the default first, or delete the policy",
				ErrDeleteConflict, versionID, name)
		}
		n, _ := parseVersionID(versionID)
		return tx.Bucket(bucketPolicyVersions).Delete(versionKey(name, n))
	})
}

// DeletePolicy deletes a policy that is attached to nothing and has only
// its default version left (ErrDeleteConflict otherwise).
func (r *Registry) DeletePolicy(name string) error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		var p Policy
		if err := getJSON(tx.Bucket(bucketPolicies), name, "policy", &p); err != nil {
			return err
		}
		if targets := prefixKeys(tx.Bucket(bucketPolicyTargets), name); len(targets) > 0 {
			return fmt.Errorf("%w: policy %s is attached to %d target(s); detach it first", ErrDeleteConflict, name, len(targets))
		}
		all, err := versions(tx, p)
		if err != nil {
			return err
		}
		if len(all) > 1 {
			return fmt.Errorf("%w: policy %s has %d versions; delete the non-default ones first", ErrDeleteConflict, name, len(all))
		}
		for _, v := range all {
			n, _ := parseVersionID(v.VersionID)
			if err := tx.Bucket(bucketPolicyVersions).Delete(versionKey(name, n)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketPolicies).Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("registry: delete policy: %w", err)
	}
	return nil
}

// TargetCertificate is the kind of a certificate policy target, returned
// by ParsePolicyTarget (the other kind is TargetThingGroup).
const TargetCertificate = "cert"

// ParsePolicyTarget normalizes a policy target: a certificate ARN (or bare
// certificate id) or a thing group ARN of this account and region. It
// returns the target's ARN, its kind (TargetCertificate or
// TargetThingGroup) and the certificate id or group name.
func ParsePolicyTarget(target string) (arn, kind, name string, err error) {
	if rest, ok := strings.CutPrefix(target, arnPrefix+"thinggroup/"); ok {
		if !thingNameRE.MatchString(rest) {
			return "", "", "", fmt.Errorf("%w: thing group name %q in target %q", ErrInvalid, rest, target)
		}
		return target, TargetThingGroup, rest, nil
	}
	id, err := CertificateIDFromPrincipal(target)
	if err != nil {
		return "", "", "", fmt.Errorf("%w: target %q is not a certificate ARN (%scert/ID) or thing group ARN (%sthinggroup/NAME)",
			ErrInvalid, target, arnPrefix, arnPrefix)
	}
	return CertificateARN(id), TargetCertificate, id, nil
}

// AttachPolicy attaches a policy to a target (see ParsePolicyTarget), which
// must exist; attaching twice is not an error. A target has at most
// MaxPoliciesPerTarget policies.
func (r *Registry) AttachPolicy(name, target string) error {
	arn, kind, id, err := ParsePolicyTarget(target)
	if err != nil {
		return fmt.Errorf("registry: attach policy: %w", err)
	}
	err = r.db.Update(func(tx *bolt.Tx) error {
		if err := policyAndTargetExist(tx, name, kind, id); err != nil {
			return err
		}
		attached := prefixKeys(tx.Bucket(bucketTargetPolicies), arn)
		if !slices.Contains(attached, name) && len(attached) >= MaxPoliciesPerTarget {
			return fmt.Errorf("%w: %s already has the maximum of %d policies attached", ErrLimitExceeded, arn, MaxPoliciesPerTarget)
		}
		return putPair(tx, bucketPolicyTargets, bucketTargetPolicies, name, arn)
	})
	if err != nil {
		return fmt.Errorf("registry: attach policy: %w", err)
	}
	return nil
}

// DetachPolicy detaches a policy from a target; both must exist.
func (r *Registry) DetachPolicy(name, target string) error {
	arn, kind, id, err := ParsePolicyTarget(target)
	if err != nil {
		return fmt.Errorf("registry: detach policy: %w", err)
	}
	err = r.db.Update(func(tx *bolt.Tx) error {
		if err := policyAndTargetExist(tx, name, kind, id); err != nil {
			return err
		}
		return deletePair(tx, bucketPolicyTargets, bucketTargetPolicies, name, arn)
	})
	if err != nil {
		return fmt.Errorf("registry: detach policy: %w", err)
	}
	return nil
}

func policyAndTargetExist(tx *bolt.Tx, name, kind, id string) error {
	if tx.Bucket(bucketPolicies).Get([]byte(name)) == nil {
		return fmt.Errorf("%w: policy %s", ErrNotFound, name)
	}
	return targetExists(tx, kind, id)
}

// targetExists checks the certificate or thing group of a policy target.
func targetExists(tx *bolt.Tx, kind, id string) error {
	if kind == TargetThingGroup {
		if tx.Bucket(bucketGroups).Get([]byte(id)) == nil {
			return fmt.Errorf("%w: thing group %s", ErrNotFound, id)
		}
	} else if tx.Bucket(bucketCertificates).Get([]byte(id)) == nil {
		return fmt.Errorf("%w: certificate %s", ErrNotFound, id)
	}
	return nil
}

// AttachedPolicies returns the policies attached to a target (see
// ParsePolicyTarget), sorted by name, with their default documents.
func (r *Registry) AttachedPolicies(target string) ([]Policy, error) {
	arn, kind, id, err := ParsePolicyTarget(target)
	if err != nil {
		return nil, fmt.Errorf("registry: list attached policies: %w", err)
	}
	var out []Policy
	err = r.db.View(func(tx *bolt.Tx) error {
		if err := targetExists(tx, kind, id); err != nil {
			return err
		}
		out, err = attachedTx(tx, arn)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list attached policies: %w", err)
	}
	return out, nil
}

func attachedTx(tx *bolt.Tx, arn string) ([]Policy, error) {
	return getPolicies(tx, prefixKeys(tx.Bucket(bucketTargetPolicies), arn))
}

// getPolicies reads the named policies with their default documents.
func getPolicies(tx *bolt.Tx, names []string) ([]Policy, error) {
	var out []Policy
	for _, name := range names {
		p, err := getPolicy(tx, name)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// PolicyTargets returns the ARNs of the targets a policy is attached to,
// sorted.
func (r *Registry) PolicyTargets(name string) ([]string, error) {
	var out []string
	err := r.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketPolicies).Get([]byte(name)) == nil {
			return fmt.Errorf("%w: policy %s", ErrNotFound, name)
		}
		out = prefixKeys(tx.Bucket(bucketPolicyTargets), name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list policy targets: %w", err)
	}
	return out, nil
}

// EffectivePolicy is a policy in force for a connection, with the target
// it is attached to.
type EffectivePolicy struct {
	Policy
	Target string // certificate or thing group ARN
}

// Principal is what the registry knows about a connection, for
// authorizing it: whether the ClientID names a thing the certificate is
// attached to (then Thing is that thing) and the policies in force.
type Principal struct {
	Certificate Certificate
	Thing       *Thing // nil unless the certificate is attached to the thing named ClientID
	// Policies are the default versions of the policies attached to the
	// certificate, then of those attached to Thing's groups (only when
	// Thing is set: thing group policies apply when the ClientID is the
	// thing name). A policy attached through several targets is listed
	// once.
	Policies []EffectivePolicy
}

// Principal returns the authorization view of a certificate connecting
// with clientID, in one transaction.
func (r *Registry) Principal(certID, clientID string) (Principal, error) {
	var pr Principal
	err := r.db.View(func(tx *bolt.Tx) error {
		if err := getJSON(tx.Bucket(bucketCertificates), certID, "certificate", &pr.Certificate); err != nil {
			return err
		}
		targets := []string{CertificateARN(certID)}
		if tx.Bucket(bucketThingCerts).Get(pairKey(clientID, certID)) != nil {
			var t Thing
			if err := getJSON(tx.Bucket(bucketThings), clientID, "thing", &t); err != nil {
				return err
			}
			pr.Thing = &t
			for _, g := range GroupsOfThingTx(tx, clientID) {
				targets = append(targets, ThingGroupARN(g))
			}
		}
		seen := map[string]bool{}
		for _, arn := range targets {
			ps, err := attachedTx(tx, arn)
			if err != nil {
				return err
			}
			for _, p := range ps {
				if !seen[p.Name] {
					seen[p.Name] = true
					pr.Policies = append(pr.Policies, EffectivePolicy{Policy: p, Target: arn})
				}
			}
		}
		return nil
	})
	if err != nil {
		return Principal{}, fmt.Errorf("registry: principal: %w", err)
	}
	return pr, nil
}
