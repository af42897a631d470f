package realclient

import (
	"context"
	"fmt"

	"github.com/badmac/badmac/fakeserver/waweb"
)

// drop is the op drop, a network drop: the server closes the client's
// connection (waweb.Server.Kick) and the same Client reconnects and logs
// in; the server's offline queue then redelivers every stanza the device
// had not acknowledged (waweb.Conversation.redeliver), the same ciphertext.
//
// whatsmeow reconnects by itself (go.mau.fi/whatsmeow
// v0.0.0-20251217143725-11cf47c62d32, client.go:541-544: a remote
// disconnect not expected starts autoReconnect; client.go:572: its first
// try waits AutoReconnectErrors × 2 s, which a login resets to 0,
// connectionevents.go:161). A free client does so; the run waits for the
// new connection's login. A controlled client has EnableAutoReconnect off
// (a sleep is the clock's, bot.go newBot), so the run does what
// autoReconnect's first try does, client.connect, once the old
// connection's goroutines have ended, and steps the login's store calls.
func (r *run) drop(ctx context.Context) error {
	if r.down {
		return nil // no connection to drop
	}
	if r.ctl == nil {
		before := r.srv.Traffic().Conn
		r.srv.Kick()
		relogged := func() bool {
			t := r.srv.Traffic()
			return t.Conn > before && !t.Closed && r.srv.Connected()
		}
		wctx, cancel := context.WithTimeout(ctx, r.settle)
		defer cancel()
		if _, err := r.srv.WaitTraffic(wctx, func(waweb.Traffic) bool { return relogged() }); err != nil {
			return fmt.Errorf("drop: the client did not log in again: %w", err)
		}
		return r.nudgeQueued(ctx)
	}
	// The client first finishes what it is doing (finish, as stop): a
	// handler parked at a store call when its connection goes holds
	// whatsmeow's old handler queue loop, which then races the new one
	// for the next stanza (client.go:802-835 handlerQueueLoop: a select
	// on the shared handlerQueue and the old connection's context), so
	// where the drop lands inside a handler is free mode's.
	if err := r.finish(ctx); err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	before := r.srv.Traffic().Conn
	r.srv.Kick()
	// The old connection's goroutines end (whatsmeow's onDisconnect clears
	// the socket) before the new one starts.
	wctx, cancel := context.WithTimeout(ctx, r.settle)
	defer cancel()
	if _, err := r.srv.WaitTraffic(wctx, func(t waweb.Traffic) bool { return t.Conn == before && t.Closed }); err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	if err := r.ctl.settle(ctx); err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	// Logged in again when the login's goroutine has dispatched
	// events.Connected (connectionevents.go handleConnectSuccess), as a
	// first login is (start): not when the server has sent <success>,
	// which would leave the login's goroutine where the race put it.
	logins := r.bot.logins.Load()
	if err := r.connect(ctx, func() bool { return r.bot.logins.Load() > logins }); err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	if err := r.after(ctx); err != nil {
		return err
	}
	return r.nudgeQueued(ctx)
}
