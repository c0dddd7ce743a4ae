package registry

import (
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ThingGroup is a static thing group (no parents, no dynamic queries).
type ThingGroup struct {
	Name        string    `json:"thingGroupName"`
	ARN         string    `json:"thingGroupArn"`
	ID          string    `json:"thingGroupId"`
	Description string    `json:"description,omitempty"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"createdAt"`
}

// ThingGroupARN returns the ARN of a thing group name.
func ThingGroupARN(name string) string { return arnPrefix + "thinggroup/" + name }

// JobARN returns the ARN of a job id.
func JobARN(id string) string { return arnPrefix + "job/" + id }

// Target kinds returned by ParseTargetARN.
const (
	TargetThing      = "thing"
	TargetThingGroup = "thinggroup"
)

// ParseTargetARN splits a job target, a thing or thing group ARN of this
// account and region, into its kind (TargetThing or TargetThingGroup) and
// name.
func ParseTargetARN(arn string) (kind, name string, err error) {
	rest, ok := strings.CutPrefix(arn, arnPrefix)
	if ok {
		kind, name, ok = strings.Cut(rest, "/")
	}
	if !ok || (kind != TargetThing && kind != TargetThingGroup) {
		return "", "", fmt.Errorf("%w: target %q is not a thing or thing group ARN (%sthing/NAME or %sthinggroup/NAME)",
			ErrInvalid, arn, arnPrefix, arnPrefix)
	}
	if err := ValidateThingName(name); err != nil {
		return "", "", err
	}
	return kind, name, nil
}

// CreateThingGroup creates a static thing group. Like CreateThing, creating
// a group that exists with the same description returns it unchanged
// (created=false); with a different one it fails with ErrAlreadyExists.
func (r *Registry) CreateThingGroup(name, description string, now time.Time) (g ThingGroup, created bool, err error) {
	if !thingNameRE.MatchString(name) {
		return ThingGroup{}, false, fmt.Errorf("registry: create thing group: %w: thing group name %q must match [a-zA-Z0-9:_-]{1,128}", ErrInvalid, name)
	}
	g, created, err = createOnce(r.db, bucketGroups, name, "thing group", "a different description",
		func(g ThingGroup) bool { return g.Description == description },
		func() ThingGroup {
			return ThingGroup{Name: name, ARN: ThingGroupARN(name), ID: newUUID(), Description: description, Version: 1, CreatedAt: now.UTC()}
		})
	if err != nil {
		return ThingGroup{}, false, fmt.Errorf("registry: create thing group: %w", err)
	}
	return g, created, nil
}

// ThingGroup returns the named thing group.
func (r *Registry) ThingGroup(name string) (ThingGroup, error) {
	var g ThingGroup
	err := r.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketGroups), name, "thing group", &g)
	})
	if err != nil {
		return ThingGroup{}, fmt.Errorf("registry: %w", err)
	}
	return g, nil
}

// ThingGroups returns all thing groups sorted by name.
func (r *Registry) ThingGroups() ([]ThingGroup, error) {
	out, err := listJSON[ThingGroup](r.db, bucketGroups, "thing group")
	if err != nil {
		return nil, fmt.Errorf("registry: list thing groups: %w", err)
	}
	return out, nil
}

// AddThingToGroup adds a thing to a thing group; both must exist. added is
// false when the thing already was a member.
func (r *Registry) AddThingToGroup(group, thing string) (added bool, err error) {
	err = r.db.Update(func(tx *bolt.Tx) error {
		if err := groupAndThingExist(tx, group, thing); err != nil {
			return err
		}
		added = tx.Bucket(bucketGroupThings).Get(pairKey(group, thing)) == nil
		return putPair(tx, bucketGroupThings, bucketThingGroups, group, thing)
	})
	if err != nil {
		return false, fmt.Errorf("registry: add thing to thing group: %w", err)
	}
	return added, nil
}

// RemoveThingFromGroup removes a thing from a thing group; both must exist.
// removed is false when the thing was not a member.
func (r *Registry) RemoveThingFromGroup(group, thing string) (removed bool, err error) {
	err = r.db.Update(func(tx *bolt.Tx) error {
		if err := groupAndThingExist(tx, group, thing); err != nil {
			return err
		}
		removed = tx.Bucket(bucketGroupThings).Get(pairKey(group, thing)) != nil
		return deletePair(tx, bucketGroupThings, bucketThingGroups, group, thing)
	})
	if err != nil {
		return false, fmt.Errorf("registry: remove thing from thing group: %w", err)
	}
	return removed, nil
}

// GroupThings returns the names of a thing group's members, sorted.
func (r *Registry) GroupThings(group string) ([]string, error) {
	var out []string
	err := r.db.View(func(tx *bolt.Tx) (err error) {
		out, err = GroupThingsTx(tx, group)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list things in thing group: %w", err)
	}
	return out, nil
}

// GroupsOfThing returns the names of the thing groups a thing belongs to,
// sorted (none for a thing that does not exist).
func (r *Registry) GroupsOfThing(thing string) ([]string, error) {
	var out []string
	err := r.db.View(func(tx *bolt.Tx) error {
		out = GroupsOfThingTx(tx, thing)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list thing groups of thing: %w", err)
	}
	return out, nil
}

// The ...Tx functions read the registry inside a transaction of DB(), for
// services that must see the registry and their own buckets consistently.

// GroupThingsTx is GroupThings inside tx.
func GroupThingsTx(tx *bolt.Tx, group string) ([]string, error) {
	if tx.Bucket(bucketGroups).Get([]byte(group)) == nil {
		return nil, fmt.Errorf("%w: thing group %s", ErrNotFound, group)
	}
	return prefixKeys(tx.Bucket(bucketGroupThings), group), nil
}

// GroupsOfThingTx is GroupsOfThing inside tx.
func GroupsOfThingTx(tx *bolt.Tx, thing string) []string {
	return prefixKeys(tx.Bucket(bucketThingGroups), thing)
}

// ThingExistsTx reports whether the thing exists, inside tx.
func ThingExistsTx(tx *bolt.Tx, thing string) bool {
	return tx.Bucket(bucketThings).Get([]byte(thing)) != nil
}

func groupAndThingExist(tx *bolt.Tx, group, thing string) error {
	if tx.Bucket(bucketGroups).Get([]byte(group)) == nil {
		return fmt.Errorf("%w: thing group %s", ErrNotFound, group)
	}
	if tx.Bucket(bucketThings).Get([]byte(thing)) == nil {
		return fmt.Errorf("%w: thing %s", ErrNotFound, thing)
	}
	return nil
}

// putPair records the relation a–b in the bucket keyed a\x00b and its
// inverse keyed b\x00a.
func putPair(tx *bolt.Tx, forward, inverse []byte, a, b string) error {
	if err := tx.Bucket(forward).Put(pairKey(a, b), nil); err != nil {
		return err
	}
	return tx.Bucket(inverse).Put(pairKey(b, a), nil)
}

// deletePair removes what putPair recorded.
func deletePair(tx *bolt.Tx, forward, inverse []byte, a, b string) error {
	if err := tx.Bucket(forward).Delete(pairKey(a, b)); err != nil {
		return err
	}
	return tx.Bucket(inverse).Delete(pairKey(b, a))
}
