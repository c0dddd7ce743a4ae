// Package registry is thingsim's registry of things, certificates, their
// attachments (principals), static thing groups, registered CA certificates
// and the connection history, stored in an embedded bbolt database. Values are JSON documents
// inside bbolt buckets; every change is one bbolt transaction.
package registry

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Account and region used in ARNs, as in the AWS documentation examples.
const (
	AccountID = "123456789012"
	Region    = "us-east-1"
	arnPrefix = "arn:aws:iot:" + Region + ":" + AccountID + ":"
)

// Certificate statuses (AWS CertificateStatus values thingsim accepts).
const (
	StatusActive            = "ACTIVE"
	StatusInactive          = "INACTIVE"
	StatusRevoked           = "REVOKED"
	StatusPendingActivation = "PENDING_ACTIVATION"
)

// Errors returned (wrapped) by the registry; match them with errors.Is.
var (
	ErrNotFound      = errors.New("resource not found")
	ErrAlreadyExists = errors.New("resource already exists")
	ErrInvalid       = errors.New("invalid request")
	ErrState         = errors.New("operation not allowed in the certificate's state")
)

var (
	bucketThings       = []byte("Things")
	bucketCertificates = []byte("Certificates")
	bucketThingCerts   = []byte("ThingPrincipals") // thing \x00 certID
	bucketCertThings   = []byte("PrincipalThings") // certID \x00 thing
	bucketCAs          = []byte("CACertificates")
	bucketConnections  = []byte("Connections")
	bucketGroups       = []byte("ThingGroups")
	bucketGroupThings  = []byte("GroupThings")        // group \x00 thing
	bucketThingGroups  = []byte("ThingGroupsOfThing") // thing \x00 group
	allBuckets         = [][]byte{bucketThings, bucketCertificates, bucketThingCerts, bucketCertThings, bucketCAs, bucketConnections,
		bucketGroups, bucketGroupThings, bucketThingGroups}
)

var thingNameRE = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// Thing is a registered thing.
type Thing struct {
	Name       string            `json:"thingName"`
	ARN        string            `json:"thingArn"`
	ID         string            `json:"thingId"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Version    int64             `json:"version"`
	CreatedAt  time.Time         `json:"createdAt"`
}

// Certificate is a registered device certificate.
type Certificate struct {
	ID           string    `json:"certificateId"` // lowercase hex SHA-256 of the DER
	ARN          string    `json:"certificateArn"`
	PEM          string    `json:"certificatePem"`
	Status       string    `json:"status"`
	CACertID     string    `json:"caCertificateId,omitempty"`
	CreatedAt    time.Time `json:"creationDate"`
	LastModified time.Time `json:"lastModifiedDate"`
	NotBefore    time.Time `json:"notBefore"`
	NotAfter     time.Time `json:"notAfter"`
}

// Connection is one entry of the connection history: an admitted session
// (DisconnectedAt zero while it is live) or a refused attempt.
type Connection struct {
	ClientID         string    `json:"clientId"`
	CertificateID    string    `json:"certificateId,omitempty"`
	SessionID        string    `json:"sessionIdentifier"`
	IPAddress        string    `json:"ipAddress,omitempty"`
	ConnectedAt      time.Time `json:"connectedAt"`
	DisconnectedAt   time.Time `json:"disconnectedAt,omitzero"`
	DisconnectReason string    `json:"disconnectReason,omitempty"`
	// Refused names the admission rule that failed; empty for admitted sessions.
	Refused string `json:"refused,omitempty"`
}

// ThingARN returns the ARN of a thing name.
func ThingARN(name string) string { return arnPrefix + "thing/" + name }

// CertificateARN returns the ARN of a certificate id.
func CertificateARN(id string) string { return arnPrefix + "cert/" + id }

// CertificateIDFromPrincipal accepts a certificate ARN (as AttachThingPrincipal
// takes) or a bare certificate id and returns the id.
func CertificateIDFromPrincipal(principal string) (string, error) {
	id := principal
	if strings.HasPrefix(principal, "arn:") {
		i := strings.Index(principal, ":cert/")
		if i < 0 {
			return "", fmt.Errorf("%w: principal %q is not a certificate ARN", ErrInvalid, principal)
		}
		id = principal[i+len(":cert/"):]
	}
	if len(id) != 64 || strings.Trim(strings.ToLower(id), "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w: principal %q does not name a certificate (64 hex digits)", ErrInvalid, principal)
	}
	return strings.ToLower(id), nil
}

// ValidateThingName checks the AWS thing name pattern [a-zA-Z0-9:_-]{1,128}.
func ValidateThingName(name string) error {
	if !thingNameRE.MatchString(name) {
		return fmt.Errorf("%w: thing name %q must match [a-zA-Z0-9:_-]{1,128}", ErrInvalid, name)
	}
	return nil
}

// Registry is the bbolt-backed registry. It is safe for concurrent use.
type Registry struct {
	db *bolt.DB
}

// DB returns the registry's database, for the simulator's services that
// keep their own buckets in it (jobs, provisioning). They must not write the
// registry's buckets; the registry's methods must not be called inside one of
// their transactions (bbolt allows one writer at a time).
func (r *Registry) DB() *bolt.DB { return r.db }

// Open opens (creating if needed) the registry database at path.
func Open(path string) (*Registry, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("registry: open %s: %w", path, err)
	}
	r := &Registry{db: db}
	if err := r.CreateBuckets(allBuckets...); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return r, nil
}

// CreateBuckets creates the named buckets of DB() that do not exist yet, for
// the services that keep their data there.
func (r *Registry) CreateBuckets(names ...[]byte) error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		for _, b := range names {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("registry: create buckets: %w", err)
	}
	return nil
}

// Close closes the database.
func (r *Registry) Close() error {
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("registry: close: %w", err)
	}
	return nil
}

// CreateThing creates a thing. Like AWS, creating a thing that exists with the
// same attributes returns it unchanged (created=false); with different
// attributes it fails with ErrAlreadyExists.
func (r *Registry) CreateThing(name string, attrs map[string]string, now time.Time) (t Thing, created bool, err error) {
	if err := ValidateThingName(name); err != nil {
		return Thing{}, false, err
	}
	t, created, err = createOnce(r.db, bucketThings, name, "thing", "different attributes",
		func(t Thing) bool { return maps.Equal(t.Attributes, attrs) },
		func() Thing {
			return Thing{Name: name, ARN: ThingARN(name), ID: newUUID(), Attributes: attrs, Version: 1, CreatedAt: now.UTC()}
		})
	if err != nil {
		return Thing{}, false, fmt.Errorf("registry: create thing: %w", err)
	}
	return t, created, nil
}

// createOnce stores fresh() under key unless the bucket has a value there
// already, which it returns (created=false) if same accepts it and refuses
// with ErrAlreadyExists ("already exists with " + differs) otherwise: AWS's
// idempotent creation.
func createOnce[T any](db *bolt.DB, bucket []byte, key, kind, differs string, same func(T) bool, fresh func() T) (v T, created bool, err error) {
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b.Get([]byte(key)) != nil {
			if err := getJSON(b, key, kind, &v); err != nil {
				return err
			}
			if !same(v) {
				return fmt.Errorf("%w: %s %s already exists with %s", ErrAlreadyExists, kind, key, differs)
			}
			return nil
		}
		v, created = fresh(), true
		return putJSON(b, key, v)
	})
	return v, created, err
}

// Thing returns the named thing.
func (r *Registry) Thing(name string) (Thing, error) {
	var t Thing
	err := r.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketThings), name, "thing", &t)
	})
	if err != nil {
		return Thing{}, fmt.Errorf("registry: %w", err)
	}
	return t, nil
}

// Things returns all things sorted by name.
func (r *Registry) Things() ([]Thing, error) {
	out, err := listJSON[Thing](r.db, bucketThings, "thing")
	if err != nil {
		return nil, fmt.Errorf("registry: list things: %w", err)
	}
	return out, nil
}

// DeleteThing deletes a thing that has no attached principals, and its
// thing group memberships. Deleting a thing that does not exist succeeds, as
// on AWS.
func (r *Registry) DeleteThing(name string) error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		if len(prefixKeys(tx.Bucket(bucketThingCerts), name)) > 0 {
			return fmt.Errorf("%w: thing %s still has attached principals; detach them first", ErrInvalid, name)
		}
		for _, g := range prefixKeys(tx.Bucket(bucketThingGroups), name) {
			if err := deletePair(tx, bucketGroupThings, bucketThingGroups, g, name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketThings).Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("registry: delete thing: %w", err)
	}
	return nil
}

// AddCertificate registers a certificate. ID, PEM and Status are required;
// ARN is derived from ID.
func (r *Registry) AddCertificate(c Certificate) error {
	if c.ID == "" || c.PEM == "" {
		return fmt.Errorf("registry: add certificate: %w: id and PEM are required", ErrInvalid)
	}
	if err := validStatus(c.Status); err != nil {
		return fmt.Errorf("registry: add certificate: %w", err)
	}
	c.ARN = CertificateARN(c.ID)
	err := r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCertificates)
		if b.Get([]byte(c.ID)) != nil {
			return fmt.Errorf("%w: certificate %s is already registered", ErrAlreadyExists, c.ID)
		}
		return putJSON(b, c.ID, c)
	})
	if err != nil {
		return fmt.Errorf("registry: add certificate: %w", err)
	}
	return nil
}

// Certificate returns the certificate with the given id.
func (r *Registry) Certificate(id string) (Certificate, error) {
	var c Certificate
	err := r.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketCertificates), id, "certificate", &c)
	})
	if err != nil {
		return Certificate{}, fmt.Errorf("registry: %w", err)
	}
	return c, nil
}

// Certificates returns all certificates, oldest first.
func (r *Registry) Certificates() ([]Certificate, error) {
	out, err := listJSON[Certificate](r.db, bucketCertificates, "certificate")
	if err != nil {
		return nil, fmt.Errorf("registry: list certificates: %w", err)
	}
	slices.SortStableFunc(out, func(a, b Certificate) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// SetCertificateStatus changes a certificate's status and returns the
// previous one. A REVOKED certificate cannot change status (ErrState).
func (r *Registry) SetCertificateStatus(id, status string, now time.Time) (previous string, err error) {
	if err := validStatus(status); err != nil {
		return "", fmt.Errorf("registry: update certificate: %w", err)
	}
	err = r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCertificates)
		var c Certificate
		if err := getJSON(b, id, "certificate", &c); err != nil {
			return err
		}
		previous = c.Status
		if c.Status == status {
			return nil
		}
		if c.Status == StatusRevoked {
			return fmt.Errorf("%w: certificate %s is REVOKED", ErrState, id)
		}
		c.Status, c.LastModified = status, now.UTC()
		return putJSON(b, id, c)
	})
	if err != nil {
		return "", fmt.Errorf("registry: update certificate: %w", err)
	}
	return previous, nil
}

// AttachPrincipal attaches a certificate to a thing. Both must exist;
// attaching twice is not an error.
func (r *Registry) AttachPrincipal(thing, certID string) error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		if err := mustExist(tx, thing, certID); err != nil {
			return err
		}
		return putPair(tx, bucketThingCerts, bucketCertThings, thing, certID)
	})
	if err != nil {
		return fmt.Errorf("registry: attach principal: %w", err)
	}
	return nil
}

// DetachPrincipal detaches a certificate from a thing.
func (r *Registry) DetachPrincipal(thing, certID string) error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		if err := mustExist(tx, thing, certID); err != nil {
			return err
		}
		return deletePair(tx, bucketThingCerts, bucketCertThings, thing, certID)
	})
	if err != nil {
		return fmt.Errorf("registry: detach principal: %w", err)
	}
	return nil
}

// ThingPrincipals returns the ids of the certificates attached to a thing.
func (r *Registry) ThingPrincipals(thing string) ([]string, error) {
	var out []string
	err := r.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketThings).Get([]byte(thing)) == nil {
			return fmt.Errorf("%w: thing %s", ErrNotFound, thing)
		}
		out = prefixKeys(tx.Bucket(bucketThingCerts), thing)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list thing principals: %w", err)
	}
	return out, nil
}

// PrincipalThings returns the names of the things a certificate is attached to.
func (r *Registry) PrincipalThings(certID string) ([]string, error) {
	var out []string
	err := r.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketCertificates).Get([]byte(certID)) == nil {
			return fmt.Errorf("%w: certificate %s", ErrNotFound, certID)
		}
		out = prefixKeys(tx.Bucket(bucketCertThings), certID)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list principal things: %w", err)
	}
	return out, nil
}

// IsAttached reports whether the certificate is attached to the thing.
func (r *Registry) IsAttached(thing, certID string) (bool, error) {
	var ok bool
	err := r.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketThingCerts).Get(pairKey(thing, certID)) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("registry: check attachment: %w", err)
	}
	return ok, nil
}

// AddCACertificate registers an additional CA (PEM) whose device certificates
// the broker accepts, keyed by its certificate id.
func (r *Registry) AddCACertificate(id string, pemBytes []byte) error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCAs).Put([]byte(id), pemBytes)
	})
	if err != nil {
		return fmt.Errorf("registry: add CA certificate: %w", err)
	}
	return nil
}

// CACertificates returns the PEM of every registered CA certificate.
func (r *Registry) CACertificates() ([][]byte, error) {
	var out [][]byte
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCAs).ForEach(func(_, v []byte) error {
			out = append(out, bytes.Clone(v))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list CA certificates: %w", err)
	}
	return out, nil
}

// PutConnection inserts or updates a connection history entry, keyed by its
// ConnectedAt and SessionID.
func (r *Registry) PutConnection(c Connection) error {
	key := fmt.Sprintf("%020d/%s", c.ConnectedAt.UnixNano(), c.SessionID)
	err := r.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketConnections), key, c)
	})
	if err != nil {
		return fmt.Errorf("registry: record connection: %w", err)
	}
	return nil
}

// Connections returns the connection history, oldest first.
func (r *Registry) Connections() ([]Connection, error) {
	out, err := listJSON[Connection](r.db, bucketConnections, "connection")
	if err != nil {
		return nil, fmt.Errorf("registry: list connections: %w", err)
	}
	return out, nil
}

func validStatus(s string) error {
	switch s {
	case StatusActive, StatusInactive, StatusRevoked, StatusPendingActivation:
		return nil
	}
	return fmt.Errorf("%w: certificate status %q (want ACTIVE, INACTIVE, REVOKED or PENDING_ACTIVATION)", ErrInvalid, s)
}

func mustExist(tx *bolt.Tx, thing, certID string) error {
	if tx.Bucket(bucketThings).Get([]byte(thing)) == nil {
		return fmt.Errorf("%w: thing %s", ErrNotFound, thing)
	}
	if tx.Bucket(bucketCertificates).Get([]byte(certID)) == nil {
		return fmt.Errorf("%w: certificate %s", ErrNotFound, certID)
	}
	return nil
}

func pairKey(a, b string) []byte { return []byte(a + "\x00" + b) }

// prefixKeys returns the second halves of the pair keys starting with a.
func prefixKeys(b *bolt.Bucket, a string) []string {
	var out []string
	prefix := []byte(a + "\x00")
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out
}

// listJSON decodes every value of a bucket, in key order.
func listJSON[T any](db *bolt.DB, bucket []byte, kind string) ([]T, error) {
	var out []T
	err := db.View(func(tx *bolt.Tx) error {
		return ForEachJSON(tx, bucket, kind, func(_ []byte, x T) error {
			out = append(out, x)
			return nil
		})
	})
	return out, err
}

// ForEachJSON decodes every value of a bucket of tx, a JSON document of
// kind (for errors), and calls fn with it, in key order.
func ForEachJSON[T any](tx *bolt.Tx, bucket []byte, kind string, fn func(key []byte, v T) error) error {
	return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		var x T
		if err := json.Unmarshal(v, &x); err != nil {
			return fmt.Errorf("decode %s %q: %w", kind, k, err)
		}
		return fn(k, x)
	})
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return b.Put([]byte(key), data)
}

func getJSON(b *bolt.Bucket, key, kind string, v any) error {
	data := b.Get([]byte(key))
	if data == nil {
		return fmt.Errorf("%w: %s %s", ErrNotFound, kind, key)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s %s: %w", kind, key, err)
	}
	return nil
}

// NewUUID returns a random RFC 4122 version 4 UUID string (thing ids,
// session and event ids).
func NewUUID() string { return newUUID() }

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// NewSessionID returns a random identifier for an MQTT session (the
// lifecycle events' sessionIdentifier).
func NewSessionID() string { return newUUID() }
