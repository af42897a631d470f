package endpoint

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
)

// world is a device and one contact on reference stores, with the device's
// one-time prekeys as its server would hand them out.
type world struct {
	t    *testing.T
	ctx  context.Context
	dev  *Endpoint
	peer *Endpoint
	pks  []*keys.PreKey
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	dev, err := OnReference(ctx, types.JID{User: "bot", Server: types.DefaultUserServer})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := OnReference(ctx, types.JID{User: "alice", Server: types.DefaultUserServer})
	if err != nil {
		t.Fatal(err)
	}
	pks, err := dev.Device.PreKeys.GetOrGenPreKeys(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, ctx: ctx, dev: dev, peer: peer, pks: pks}
}

// first is the contact's first message to the device: a session built from
// a bundle carrying pk, then a pkmsg.
func (w *world) first(pk *keys.PreKey) (string, []byte) {
	w.t.Helper()
	if err := w.peer.ProcessBundle(w.ctx, w.dev.Address(), w.dev.Bundle(pk)); err != nil {
		w.t.Fatal(err)
	}
	return w.send("m1")
}

func (w *world) send(body string) (string, []byte) {
	w.t.Helper()
	kind, ct, err := w.peer.Encrypt(w.ctx, w.dev.Address(), []byte(body))
	if err != nil {
		w.t.Fatal(err)
	}
	return kind, ct
}

// established is a session the contact has seen acknowledged (the device
// replied), so that its next message is a plain msg.
func (w *world) established() {
	w.t.Helper()
	kind, ct := w.first(w.pks[0])
	if _, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct); err != nil {
		w.t.Fatal(err)
	}
	rk, rct, err := w.dev.Encrypt(w.ctx, w.peer.Address(), []byte("r1"))
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.peer.DecryptDM(w.ctx, w.dev.Address(), rk, rct); err != nil {
		w.t.Fatal(err)
	}
}

// flipMAC flips the last byte of the MAC of the Signal message inside ct
// (for a pkmsg, the inner message is embedded whole).
func (w *world) flipMAC(kind string, ct []byte) []byte {
	w.t.Helper()
	inner := ct
	if kind == PkMsg {
		m, err := protocol.NewPreKeySignalMessageFromBytes(ct, pb.PreKeySignalMessage, pb.SignalMessage)
		if err != nil {
			w.t.Fatal(err)
		}
		inner = m.WhisperMessage().Serialize()
	}
	i := bytes.Index(ct, inner)
	if i < 0 {
		w.t.Fatalf("%s: the signal message is not in the ciphertext", kind)
	}
	out := bytes.Clone(ct)
	out[i+len(inner)-1] ^= 0x01 // the MAC is the signal message's last 8 bytes
	return out
}

// failingSessions is a session store whose reads fail, as a database that
// went away does.
type failingSessions struct{ store.SessionStore }

var errDown = errors.New("connection refused")

func (failingSessions) GetSession(context.Context, string) ([]byte, error) { return nil, errDown }
func (failingSessions) HasSession(context.Context, string) (bool, error)   { return false, errDown }

// Every failure class, produced the way it happens in the field, on each
// message type it can hit. The "ok" rows are the controls: the same setup
// without the fault decrypts, so each class comes from its fault alone.
func TestClasses(t *testing.T) {
	cases := []struct {
		name string
		want Class // "" for a message that must decrypt
		run  func(w *world) error
	}{
		{"pkmsg ok", "", func(w *world) error {
			kind, ct := w.first(w.pks[0])
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct)
			return err
		}},
		{"msg ok", "", func(w *world) error {
			w.established()
			kind, ct := w.send("m2")
			if kind != Msg {
				w.t.Fatalf("kind %s, want msg", kind)
			}
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct)
			return err
		}},
		{"msg flipped MAC byte", BadMAC, func(w *world) error {
			w.established()
			kind, ct := w.send("m2")
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, w.flipMAC(kind, ct))
			return err
		}},
		// Before the classifier re-ran the MAC on the state X3DH built,
		// this was reported as NoSession (the record as loaded is empty).
		{"pkmsg flipped MAC byte", BadMAC, func(w *world) error {
			kind, ct := w.first(w.pks[0])
			if kind != PkMsg {
				w.t.Fatalf("kind %s, want pkmsg", kind)
			}
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, w.flipMAC(kind, ct))
			return err
		}},
		{"msg deleted session", NoSession, func(w *world) error {
			w.established()
			if err := w.dev.Device.Sessions.DeleteSession(w.ctx, w.peer.Address().String()); err != nil {
				return err
			}
			kind, ct := w.send("m2")
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct)
			return err
		}},
		// Prekeys regenerated under reused ids: the contact holds a
		// bundle whose one-time prekey has the id of one the device has,
		// with another key. X3DH succeeds and the MAC fails in the new state.
		{"pkmsg right prekey id, other key", BadMAC, func(w *world) error {
			kind, ct := w.first(keys.NewPreKey(w.pks[0].KeyID))
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct)
			return err
		}},
		{"pkmsg missing one-time prekey", InvalidPreKey, func(w *world) error {
			if err := w.dev.Device.PreKeys.RemovePreKey(w.ctx, w.pks[0].KeyID); err != nil {
				return err
			}
			kind, ct := w.first(w.pks[0])
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct)
			return err
		}},
		{"skmsg unknown sender key", NoSenderKey, func(w *world) error {
			if _, err := w.peer.SenderKeyDistribution(w.ctx, "group"); err != nil {
				return err // creates the sender's key; the device never gets it
			}
			ct, err := w.peer.GroupEncrypt(w.ctx, "group", []byte("g1"))
			if err != nil {
				return err
			}
			_, err = w.dev.GroupDecrypt(w.ctx, "group", w.peer.Address(), ct)
			return err
		}},
		{"skmsg ok", "", func(w *world) error {
			skdm, err := w.peer.SenderKeyDistribution(w.ctx, "group")
			if err != nil {
				return err
			}
			if err := w.dev.ProcessSenderKeyDistribution(w.ctx, "group", w.peer.Address(), skdm); err != nil {
				return err
			}
			ct, err := w.peer.GroupEncrypt(w.ctx, "group", []byte("g1"))
			if err != nil {
				return err
			}
			_, err = w.dev.GroupDecrypt(w.ctx, "group", w.peer.Address(), ct)
			return err
		}},
		{"pkmsg untrusted identity", UntrustedIdentity, func(w *world) error {
			other := keys.NewKeyPair()
			if err := w.dev.Device.Identities.PutIdentity(w.ctx, w.peer.Address().String(), *other.Pub); err != nil {
				return err
			}
			kind, ct := w.first(w.pks[0])
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct)
			return err
		}},
		{"msg old counter", OldCounter, func(w *world) error {
			w.established()
			kind, ct := w.send("m2")
			if _, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct); err != nil {
				w.t.Fatalf("first copy: %v", err)
			}
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct)
			return err
		}},
		{"pkmsg store error", StoreError, func(w *world) error {
			w.dev.Probe.Set.Sessions = failingSessions{w.dev.Probe.Set.Sessions}
			kind, ct := w.first(w.pks[0])
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct)
			return err
		}},
		{"msg store error", StoreError, func(w *world) error {
			w.established()
			w.dev.Probe.Set.Sessions = failingSessions{w.dev.Probe.Set.Sessions}
			kind, ct := w.send("m2")
			_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct)
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.run(newWorld(t))
			if c.want == "" {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want %s, decrypted", c.want)
			}
			var f *Failure
			if !errors.As(err, &f) {
				t.Fatalf("want a *Failure, got %T: %v", err, err)
			}
			if got := ClassOf(err); got != c.want {
				t.Fatalf("class %s, want %s (%v)", got, c.want, err)
			}
		})
	}
}

// garbledSessions returns well-formed JSON with every field missing for
// any session: libsignal's record decoder dereferences nil on it.
type garbledSessions struct{ store.SessionStore }

func (garbledSessions) GetSession(context.Context, string) ([]byte, error) { return []byte(`{}`), nil }
func (garbledSessions) HasSession(context.Context, string) (bool, error)   { return true, nil }

// A store that returns a record libsignal cannot decode gets a failure of
// class Other on the message, never a panic that takes the run down.
func TestUndecodableRecordIsAFailure(t *testing.T) {
	w := newWorld(t)
	w.established()
	kind, ct := w.send("m2")
	w.dev.Device.Sessions = garbledSessions{w.dev.Device.Sessions}
	_, err := w.dev.DecryptDM(w.ctx, w.peer.Address(), kind, ct)
	if err == nil {
		t.Fatal("decrypted from an undecodable record")
	}
	if got := ClassOf(err); got != Other {
		t.Fatalf("class %s (%v), want %s", got, err, Other)
	}
}
