package storetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	"github.com/badmac/badmac/devproto"
	"github.com/badmac/badmac/stores"
)

// The store under an Opener lives in a child process (docs/design.md §7,
// "storetest"): storetest runs the user's own test binary again, selected
// by $BADMAC_STORETEST_CHILD and -test.run, and the test's CheckOpener call
// in that process serves the store over a pipe instead of running the
// suite. A crash is SIGKILL of that process: its goroutines, timers, open
// files and file locks die with it, and what the next process opens is what
// the store really left on disk (the page cache survives, as it does when a
// production process is killed; power loss is out of scope).

// childEnv selects the store-server mode; its value is the test's name.
const childEnv = "BADMAC_STORETEST_CHILD"

// isChild reports whether this process is a store server for test name.
func isChild(name string) (bool, bool) {
	v, ok := os.LookupEnv(childEnv)
	return ok, ok && v == name
}

// childArgs are the arguments that run test name alone.
func childArgs(name string) []string {
	return []string{"-test.run=" + runPattern(name), "-test.count=1"}
}

// runPattern is the -test.run pattern that selects exactly test name
// (subtests included: "TestX/sub" is "^TestX$/^sub$").
func runPattern(name string) string {
	var parts []string
	for _, p := range strings.Split(name, "/") {
		parts = append(parts, "^"+regexp.QuoteMeta(p)+"$")
	}
	return strings.Join(parts, "/")
}

// serveChild is the child's whole life: it serves one store instance over
// fds 3 (requests) and 4 (replies) and exits. It never returns.
func serveChild(name string, open Opener) {
	in := os.NewFile(3, "requests")
	out := os.NewFile(4, "replies")
	if in == nil || out == nil {
		fmt.Fprintf(os.Stderr, "storetest: %s is set but fds 3 and 4 are not open: run by storetest only\n", childEnv)
		os.Exit(2)
	}
	srv := &server{open: open, out: out}
	srv.send(devproto.Hello{V: 1, Hello: devproto.StoreVersion, Device: "storetest", Variant: name})
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		req, err := devproto.ParseStoreRequest(sc.Bytes())
		if err != nil {
			fmt.Fprintf(os.Stderr, "storetest child: %v\n", err)
			os.Exit(2)
		}
		switch req.Op {
		case devproto.StoreCall:
			srv.wg.Add(1)
			go func() {
				defer srv.wg.Done()
				rep, err := srv.call(req)
				srv.reply(req, rep, err)
			}()
		case devproto.StoreClose:
			srv.wg.Wait()
			var err error
			if srv.closer != nil {
				err = srv.closer.Close()
			}
			srv.reply(req, devproto.StoreReply{}, err)
			os.Exit(0)
		default:
			srv.wg.Wait()
			rep, err := srv.control(req)
			srv.reply(req, rep, err)
		}
	}
	// The parent went away (or sent its last request): exit without Close,
	// as a killed process would.
	os.Exit(0)
}

type server struct {
	open   Opener
	set    stores.Set
	closer io.Closer
	opened bool
	mu     sync.Mutex
	out    io.Writer
	wg     sync.WaitGroup
}

func (s *server) send(v any) {
	b, _ := json.Marshal(v)
	s.mu.Lock()
	s.out.Write(append(b, '\n'))
	s.mu.Unlock()
}

func (s *server) reply(req devproto.StoreRequest, rep devproto.StoreReply, err error) {
	rep.V, rep.ID, rep.OK = 1, req.ID, err == nil
	if err != nil {
		rep.Err = err.Error()
		if rep.Err == "" {
			rep.Err = "error"
		}
	}
	s.send(rep)
}

func (s *server) control(req devproto.StoreRequest) (devproto.StoreReply, error) {
	ctx := context.Background()
	var rep devproto.StoreReply
	switch req.Op {
	case devproto.StoreOpen:
		if s.opened {
			return rep, fmt.Errorf("open: already open")
		}
		set, c, err := s.open(req.Dir)
		if err != nil {
			return rep, err
		}
		if err := set.Complete(); err != nil {
			return rep, err
		}
		s.set, s.closer, s.opened = set, c, true
		_, rep.Snapshots = c.(Snapshotter)
		return rep, nil
	case devproto.StoreSnapshot, devproto.StoreRestore:
		sn, ok := s.closer.(Snapshotter)
		if !s.opened || !ok {
			return rep, fmt.Errorf("%s: the store has no Snapshot and Restore", req.Op)
		}
		if req.Op == devproto.StoreRestore {
			return rep, sn.Restore(ctx, req.Backup)
		}
		b, err := sn.Snapshot(ctx)
		rep.Backup = b
		return rep, err
	}
	return rep, fmt.Errorf("unknown op %q", req.Op)
}

// call makes one store call and returns the store's answer.
func (s *server) call(req devproto.StoreRequest) (rep devproto.StoreReply, err error) {
	ctx := context.Background()
	if !s.opened {
		return rep, fmt.Errorf("%s: the store is not open", req.Method)
	}
	defer func() {
		// A panicking store is a finding, not a dead server.
		if p := recover(); p != nil {
			err = fmt.Errorf("%s panicked: %v", req.Method, p)
		}
	}()
	set := s.set
	var key [32]byte
	copy(key[:], req.Key)
	switch req.Method {
	case "PutIdentity":
		err = set.Identities.PutIdentity(ctx, req.Addr, key)
	case "DeleteAllIdentities":
		err = set.Identities.DeleteAllIdentities(ctx, req.Addr)
	case "DeleteIdentity":
		err = set.Identities.DeleteIdentity(ctx, req.Addr)
	case "IsTrustedIdentity":
		rep.Bool, err = set.Identities.IsTrustedIdentity(ctx, req.Addr, key)
	case "GetSession":
		rep.Record, err = set.Sessions.GetSession(ctx, req.Addr)
		rep.Nil = rep.Record == nil
	case "HasSession":
		rep.Bool, err = set.Sessions.HasSession(ctx, req.Addr)
	case "GetManySessions":
		rep.Records, err = set.Sessions.GetManySessions(ctx, req.Addrs)
		rep.Nil = rep.Records == nil
	case "PutSession":
		err = set.Sessions.PutSession(ctx, req.Addr, req.Record)
	case "PutManySessions":
		err = set.Sessions.PutManySessions(ctx, req.Records)
	case "DeleteAllSessions":
		err = set.Sessions.DeleteAllSessions(ctx, req.Addr)
	case "DeleteSession":
		err = set.Sessions.DeleteSession(ctx, req.Addr)
	case "MigratePNToLID":
		var pn, lid types.JID
		if pn, err = types.ParseJID(req.PN); err == nil {
			if lid, err = types.ParseJID(req.LID); err == nil {
				err = set.Sessions.MigratePNToLID(ctx, pn, lid)
			}
		}
	case "GetOrGenPreKeys":
		var ks []*keys.PreKey
		ks, err = set.PreKeys.GetOrGenPreKeys(ctx, req.Count)
		rep.PreKeys, rep.Nil = wirePreKeys(ks...), ks == nil
	case "GenOnePreKey":
		var k *keys.PreKey
		k, err = set.PreKeys.GenOnePreKey(ctx)
		rep.PreKeys, rep.Nil = wirePreKeys(k), k == nil
	case "GetPreKey":
		var k *keys.PreKey
		k, err = set.PreKeys.GetPreKey(ctx, req.KeyID)
		rep.PreKeys, rep.Nil = wirePreKeys(k), k == nil
	case "RemovePreKey":
		err = set.PreKeys.RemovePreKey(ctx, req.KeyID)
	case "MarkPreKeysAsUploaded":
		err = set.PreKeys.MarkPreKeysAsUploaded(ctx, req.KeyID)
	case "UploadedPreKeyCount":
		rep.Int, err = set.PreKeys.UploadedPreKeyCount(ctx)
	case "PutSenderKey":
		err = set.SenderKeys.PutSenderKey(ctx, req.Group, req.Addr, req.Record)
	case "GetSenderKey":
		rep.Record, err = set.SenderKeys.GetSenderKey(ctx, req.Group, req.Addr)
		rep.Nil = rep.Record == nil
	default:
		err = fmt.Errorf("unknown method %q", req.Method)
	}
	return rep, err
}

// wirePreKeys encodes prekeys; a nil entry, or one without its key pair, is
// left out (the parent sees fewer keys than asked for, or Nil).
func wirePreKeys(ks ...*keys.PreKey) []devproto.StorePreKey {
	var out []devproto.StorePreKey
	for _, k := range ks {
		if k == nil || k.Priv == nil || k.Pub == nil {
			continue
		}
		out = append(out, devproto.StorePreKey{ID: k.KeyID, Priv: k.Priv[:], Pub: k.Pub[:]})
	}
	return out
}

func fromWire(w devproto.StorePreKey) *keys.PreKey {
	var priv, pub [32]byte
	copy(priv[:], w.Priv)
	copy(pub[:], w.Pub)
	return &keys.PreKey{KeyPair: keys.KeyPair{Priv: &priv, Pub: &pub}, KeyID: w.ID}
}
