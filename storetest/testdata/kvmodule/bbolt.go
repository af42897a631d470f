package kvstores

import (
	"bytes"
	"io"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/badmac/badmac/stores"
)

var bucket = []byte("whatsmeow")

type boltDB struct{ db *bolt.DB }

// OpenBolt opens the store on dir/keys.db. bbolt takes an exclusive file
// lock for the life of the handle: a second process waits up to Timeout
// and fails.
func OpenBolt(dir string) (stores.Set, io.Closer, error) {
	db, err := bolt.Open(filepath.Join(dir, "keys.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return stores.Set{}, nil, err
	}
	if err := db.Update(func(t *bolt.Tx) error { _, err := t.CreateBucketIfNotExists(bucket); return err }); err != nil {
		db.Close()
		return stores.Set{}, nil, err
	}
	s := &Store{db: boltDB{db}}
	return stores.SetOf(s), s, nil
}

func (b boltDB) Close() error { return b.db.Close() }

func (b boltDB) view(fn func(tx) error) error {
	return b.db.View(func(t *bolt.Tx) error { return fn(boltTx{t.Bucket(bucket)}) })
}

func (b boltDB) update(fn func(tx) error) error {
	return b.db.Update(func(t *bolt.Tx) error { return fn(boltTx{t.Bucket(bucket)}) })
}

type boltTx struct{ b *bolt.Bucket }

func (b boltTx) get(key string) ([]byte, error) {
	v := b.b.Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	return append([]byte(nil), v...), nil
}

func (b boltTx) set(key string, val []byte) error {
	return b.b.Put([]byte(key), append([]byte(nil), val...))
}

func (b boltTx) del(key string) error { return b.b.Delete([]byte(key)) }

func (b boltTx) keys(prefix string) ([]string, error) {
	var out []string
	c := b.b.Cursor()
	for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, _ = c.Next() {
		out = append(out, string(k))
	}
	return out, nil
}
