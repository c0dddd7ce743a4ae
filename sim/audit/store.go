package audit

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/thingd/thingd/sim/registry"
)

// getJSON decodes the value at key into v; ok is false if there is none.
func getJSON(b *bolt.Bucket, key string, v any) (ok bool, err error) {
	data := b.Get([]byte(key))
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

// mustGetJSON is getJSON failing with registry.ErrNotFound ("kind key").
func mustGetJSON(b *bolt.Bucket, kind, key string, v any) error {
	ok, err := getJSON(b, key, v)
	if err == nil && !ok {
		err = fmt.Errorf("%w: %s %s", registry.ErrNotFound, kind, key)
	}
	return err
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return b.Put([]byte(key), data)
}

// listJSON decodes every value of a bucket, in key order.
func listJSON[T any](tx *bolt.Tx, bucket []byte) ([]T, error) {
	var out []T
	err := registry.ForEachJSON(tx, bucket, string(bucket), func(_ []byte, v T) error {
		out = append(out, v)
		return nil
	})
	return out, err
}

// listPrefixJSON decodes the values whose keys start with prefix+"\x00".
func listPrefixJSON[T any](tx *bolt.Tx, bucket []byte, prefix string) ([]T, error) {
	var out []T
	p := []byte(prefix + "\x00")
	c := tx.Bucket(bucket).Cursor()
	for k, v := c.Seek(p); k != nil && len(k) >= len(p) && string(k[:len(p)]) == string(p); k, v = c.Next() {
		var x T
		if err := json.Unmarshal(v, &x); err != nil {
			return nil, fmt.Errorf("decode %s %q: %w", bucket, k, err)
		}
		out = append(out, x)
	}
	return out, nil
}

// seqKey is the key of the n-th entry under prefix.
func seqKey(prefix string, n int) string { return fmt.Sprintf("%s\x00%06d", prefix, n) }
