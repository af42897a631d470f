package stores

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Disk is an in-memory model of a file system with a page cache: written
// data first lands in the cache (volatile) and becomes durable on fsync, or
// when the kernel writes it back (after WritebackCalls further disk calls:
// logical time, never the wall clock). A crash keeps, drops or tears each
// unsynced write (Crash), as SQLite's crash VFS does.
type Disk struct {
	mu      sync.Mutex
	durable map[string][]byte
	pending []diskOp // unsynced, oldest first
	tick    int64
	// Writeback is the age in disk calls after which an unsynced write
	// reaches the platter on its own (0: never).
	Writeback int64
}

type diskOp struct {
	path   string
	data   []byte
	remove bool
	at     int64
}

// WritebackCalls is the default page cache writeback age.
const WritebackCalls = 24

// NewDisk returns an empty disk.
func NewDisk() *Disk { return &Disk{durable: map[string][]byte{}, Writeback: WritebackCalls} }

// advance counts one disk call and writes back old pending writes. d.mu held.
func (d *Disk) advance() {
	d.tick++
	if d.Writeback <= 0 {
		return
	}
	n := 0
	for n < len(d.pending) && d.tick-d.pending[n].at >= d.Writeback {
		d.apply(d.pending[n], 'k')
		n++
	}
	d.pending = d.pending[n:]
}

func (d *Disk) apply(op diskOp, how byte) {
	switch {
	case how == 'd':
	case op.remove:
		delete(d.durable, op.path)
	case how == 'g':
		// An in-place write truncates, then writes: a torn one keeps a
		// prefix of the new content.
		d.durable[op.path] = append([]byte{}, op.data[:len(op.data)/2]...)
	default:
		d.durable[op.path] = append([]byte{}, op.data...)
	}
}

// view returns the current content of path as the page cache shows it.
func (d *Disk) view(path string) ([]byte, bool) {
	for i := len(d.pending) - 1; i >= 0; i-- {
		if d.pending[i].path == path {
			if d.pending[i].remove {
				return nil, false
			}
			return d.pending[i].data, true
		}
	}
	v, ok := d.durable[path]
	return v, ok
}

// ReadFile returns the content of path, or ok false when it does not exist.
func (d *Disk) ReadFile(path string) ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance()
	v, ok := d.view(path)
	return append([]byte{}, v...), ok
}

// WriteFile writes path in place, into the page cache.
func (d *Disk) WriteFile(path string, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance()
	d.pending = append(d.pending, diskOp{path: path, data: append([]byte{}, data...), at: d.tick})
}

// Remove unlinks path, in the page cache.
func (d *Disk) Remove(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance()
	d.pending = append(d.pending, diskOp{path: path, remove: true, at: d.tick})
}

// Fsync makes every pending write to path durable.
func (d *Disk) Fsync(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance()
	var rest []diskOp
	for _, op := range d.pending {
		if op.path == path {
			d.apply(op, 'k')
		} else {
			rest = append(rest, op)
		}
	}
	d.pending = rest
}

// RenameSync renames from to to and fsyncs the directory: all or nothing,
// durable on return. from must have been fsynced.
func (d *Disk) RenameSync(from, to string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance()
	for _, op := range d.pending {
		if op.path == from || op.path == to {
			return fmt.Errorf("rename %s: unsynced writes pending", from)
		}
	}
	v, ok := d.durable[from]
	if !ok {
		return fmt.Errorf("rename %s: no such file", from)
	}
	d.durable[to] = v
	delete(d.durable, from)
	return nil
}

// RemoveSync unlinks path and fsyncs the directory.
func (d *Disk) RemoveSync(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance()
	var rest []diskOp
	for _, op := range d.pending {
		if op.path != path {
			rest = append(rest, op)
		}
	}
	d.pending = rest
	delete(d.durable, path)
}

// List returns the paths under dir, sorted, as the page cache shows them.
func (d *Disk) List(dir string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance()
	set := map[string]bool{}
	for p := range d.durable {
		set[p] = true
	}
	for _, op := range d.pending {
		set[op.path] = !op.remove
	}
	var out []string
	for p, ok := range set {
		if ok && strings.HasPrefix(p, dir) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// Crash drops the page cache: pending write i is kept, dropped or torn
// according to mode[i] ('k', 'd', 'g'); writes past the end are dropped.
func (d *Disk) Crash(mode string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, op := range d.pending {
		how := byte('d')
		if i < len(mode) {
			how = mode[i]
		}
		d.apply(op, how)
	}
	d.pending = nil
}

// Settle makes every pending write durable, as the kernel does with a
// process's unsynced writes after the process exits cleanly.
func (d *Disk) Settle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, op := range d.pending {
		d.apply(op, 'k')
	}
	d.pending = nil
}

// PendingWrites counts unsynced writes.
func (d *Disk) PendingWrites() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

// Snapshot copies the durable content.
func (d *Disk) Snapshot() map[string][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range d.durable {
		out[k] = append([]byte{}, v...)
	}
	return out
}

// Restore replaces the content (pending writes included) with a snapshot.
func (d *Disk) Restore(s map[string][]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = nil
	d.durable = map[string][]byte{}
	for k, v := range s {
		d.durable[k] = append([]byte{}, v...)
	}
}

// Files is a Backend modelled on Baileys' useMultiFileAuthState: one JSON
// file per key in one folder. In place (writeFile, no fsync) by default;
// Atomic writes a temp file, fsyncs it and renames it over the old one.
// Like Baileys' readData, a file that does not parse reads as missing.
type Files struct {
	Disk   *Disk
	Dir    string
	Atomic bool
}

type fileJSON struct {
	V []byte `json:"v"`
}

func (f *Files) path(key string) string {
	return f.Dir + url.PathEscape(key) + ".json"
}

func (f *Files) write(path string, data []byte) error {
	if !f.Atomic {
		f.Disk.WriteFile(path, data)
		return nil
	}
	tmp := path + ".tmp"
	f.Disk.WriteFile(tmp, data)
	f.Disk.Fsync(tmp)
	return f.Disk.RenameSync(tmp, path)
}

func (f *Files) Get(_ context.Context, key string) ([]byte, error) {
	b, ok := f.Disk.ReadFile(f.path(key))
	if !ok {
		return nil, nil
	}
	var v fileJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, nil // Baileys: readData returns null on any error
	}
	return v.V, nil
}

func (f *Files) Put(_ context.Context, key string, val []byte) error {
	b, err := json.Marshal(fileJSON{V: val})
	if err != nil {
		return err
	}
	return f.write(f.path(key), b)
}

func (f *Files) Delete(_ context.Context, key string) error {
	if f.Atomic {
		f.Disk.RemoveSync(f.path(key))
	} else {
		f.Disk.Remove(f.path(key))
	}
	return nil
}

func (f *Files) Keys(_ context.Context, prefix string) ([]string, error) {
	var out []string
	for _, p := range f.Disk.List(f.Dir) {
		name := strings.TrimSuffix(strings.TrimPrefix(p, f.Dir), ".json")
		if strings.HasSuffix(p, ".tmp") {
			continue
		}
		k, err := url.PathUnescape(name)
		if err != nil || !strings.HasPrefix(k, prefix) {
			continue
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// fileStorage is the files variants' storage: one disk, one auth folder.
type fileStorage struct {
	disk   *Disk
	atomic bool
}

const authDir = "auth/"

func (s *fileStorage) files() *Files { return &Files{Disk: s.disk, Dir: authDir, Atomic: s.atomic} }

func (s *fileStorage) Instance(context.Context) (Set, error) {
	return SetOf(&KV{Backend: s.files(), Lock: newLock()}), nil
}
func (s *fileStorage) Close() error                   { return nil }
func (s *fileStorage) Crash(mode string)              { s.disk.Crash(mode) }
func (s *fileStorage) Stop(context.Context) error     { s.disk.Settle(); return nil }
func (s *fileStorage) PendingWrites() int             { return s.disk.PendingWrites() }
func (s *fileStorage) Snapshot() map[string][]byte    { return s.disk.Snapshot() }
func (s *fileStorage) Restore(snap map[string][]byte) { s.disk.Restore(snap) }

// ErrCredsUnreadable is what a correct store says when its credentials file
// is missing or does not parse: refuse to start rather than re-register.
var ErrCredsUnreadable = errors.New("creds.json missing or unreadable: refusing to start with fresh credentials")

const credsFile = authDir + "creds.json"

// LoadCreds reads creds.json. The in-place variant does what Baileys'
// useMultiFileAuthState does: a missing or unreadable file means "no
// credentials" (the caller then makes fresh ones, silently). The atomic
// variant refuses to start.
func (s *fileStorage) LoadCreds(context.Context) ([]byte, error) {
	b, ok := s.disk.ReadFile(credsFile)
	var v fileJSON
	if !ok || json.Unmarshal(b, &v) != nil || len(v.V) == 0 {
		if s.atomic {
			return nil, ErrCredsUnreadable
		}
		return nil, nil
	}
	return v.V, nil
}

func (s *fileStorage) SaveCreds(_ context.Context, creds []byte) error {
	b, err := json.Marshal(fileJSON{V: creds})
	if err != nil {
		return err
	}
	f := s.files()
	return f.write(credsFile, b)
}

func init() {
	Register(Variant{Name: "files",
		Doc:  "Baileys' multi-file auth state: one JSON file per key, written in place without fsync; unreadable creds become fresh creds",
		Open: func(context.Context) (Storage, error) { return &fileStorage{disk: NewDisk()}, nil }})
	Register(Variant{Name: "files-atomic",
		Doc:  "one JSON file per key, temp file + fsync + rename; refuses to start on unreadable creds",
		Open: func(context.Context) (Storage, error) { return &fileStorage{disk: NewDisk(), atomic: true}, nil }})
}
