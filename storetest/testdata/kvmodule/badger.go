package kvstores

import (
	"errors"
	"io"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/badmac/badmac/stores"
)

type badgerDB struct{ db *badger.DB }

// OpenBadger opens the store on a Badger database in dir, sized small: a
// bot's keys are a few megabytes.
func OpenBadger(dir string) (stores.Set, io.Closer, error) {
	opts := badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(1 << 20).WithValueLogFileSize(1 << 20).
		WithBaseTableSize(1 << 18).WithValueThreshold(1 << 10).WithNumMemtables(1).WithNumLevelZeroTables(1).WithNumLevelZeroTablesStall(2).
		WithBlockCacheSize(1 << 20).WithIndexCacheSize(0)
	db, err := badger.Open(opts)
	if err != nil {
		return stores.Set{}, nil, err
	}
	s := &Store{db: badgerDB{db}}
	return stores.SetOf(s), s, nil
}

func (b badgerDB) Close() error { return b.db.Close() }

func (b badgerDB) view(fn func(tx) error) error {
	return b.db.View(func(t *badger.Txn) error { return fn(badgerTx{t}) })
}

// update retries a transaction that met a concurrent writer (Badger's
// optimistic concurrency): the whole function runs again on fresh data.
func (b badgerDB) update(fn func(tx) error) error {
	for {
		err := b.db.Update(func(t *badger.Txn) error { return fn(badgerTx{t}) })
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
}

type badgerTx struct{ t *badger.Txn }

func (b badgerTx) get(key string) ([]byte, error) {
	it, err := b.t.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return it.ValueCopy(nil)
}

func (b badgerTx) set(key string, val []byte) error {
	return b.t.Set([]byte(key), append([]byte(nil), val...))
}

func (b badgerTx) del(key string) error { return b.t.Delete([]byte(key)) }

func (b badgerTx) keys(prefix string) ([]string, error) {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	it := b.t.NewIterator(opts)
	defer it.Close()
	var out []string
	for it.Seek([]byte(prefix)); it.ValidForPrefix([]byte(prefix)); it.Next() {
		out = append(out, string(it.Item().KeyCopy(nil)))
	}
	return out, nil
}
