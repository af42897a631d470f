package harness

import (
	"fmt"
	"slices"
	"strings"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/stores"
)

// crash kills the device: every live device task is abandoned (it never
// runs again), the storage drops its volatile state (mode says what happens
// to each pending write, see stores.Crasher) and the device is down until a
// restart. Killed receives were never acknowledged, so the server requeues
// them at the restart; killed sends run again then. In the serial baseline
// nothing is in flight and the reference store is durable: a crash is a
// clean restart. A crash of a device that is down does nothing.
func (r *Run) crash(mode string) {
	if r.down {
		return
	}
	r.kill(mode)
	if r.mode == Serial {
		r.restart()
	}
}

// kill is crash without the serial baseline's restart.
func (r *Run) kill(mode string) {
	if r.mode == Free {
		r.wg.Wait() // free mode cannot kill a goroutine: the crash lands between tasks
		r.afterStep()
	}
	r.verdict.crashPoints = append(r.verdict.crashPoints, "crash "+r.crashLocation())
	var killed []string
	if r.sim != nil {
		for _, t := range r.sim.Live() {
			r.noteKilled(t.Name)
			r.sim.Abandon(t)
			killed = append(killed, t.Name)
			if j, ok := r.jobs[t.Name]; ok {
				r.redo = append(r.redo, j)
			}
		}
	}
	lost := 0
	if c, ok := r.storage.(stores.Crasher); ok {
		lost = c.PendingWrites()
		c.Crash(mode)
	}
	r.down = true
	r.crashes++
	r.logLine(crashLine(mode, fmt.Sprintf("killed [%s], %d pending writes hit", strings.Join(killed, " "), lost)))
}

// noteKilled notes a receive killed between its decrypt's store write and
// its ack: on a store that kept the write, its redelivered copy meets an
// old counter whatever the client, which is the crash's (KilledUnacked).
func (r *Run) noteKilled(task string) {
	j, ok := r.jobs[task]
	r.mu.Lock()
	p := r.prog[task]
	r.mu.Unlock()
	if !ok || j.kind != "receive" || p == nil || !p.stored || p.acked || slices.Contains(r.verdict.killedUnacked, j.msg) {
		return
	}
	r.verdict.killedUnacked = append(r.verdict.killedUnacked, j.msg)
	r.log("crash: %s killed after storing its decrypt, before its ack", task)
}

// stop is a clean shutdown (a deploy's SIGTERM): the device finishes what
// it is doing, the store writes out what it buffered and closes
// (stores.Stopper), and the device is down until restart. Tasks still
// running are finished first, in start order, so a stop loses nothing a
// correct store keeps; unlike a crash it is not counted as one.
func (r *Run) stop() {
	if r.down {
		return
	}
	switch r.mode {
	case Free:
		r.wg.Wait()
		r.afterStep()
	case Controlled:
		for {
			rs := r.sim.Runnable()
			if len(rs) == 0 {
				break
			}
			r.sim.Run(rs[0])
			r.afterStep()
			r.record(RunOp{Task: rs[0].Name})
		}
		// Tasks that can never run (none, with a correct discipline) are
		// ended with the process and redone after the restart.
		for _, t := range r.sim.Live() {
			r.sim.Abandon(t)
			if j, ok := r.jobs[t.Name]; ok {
				r.redo = append(r.redo, j)
			}
		}
	}
	if s, ok := r.storage.(stores.Stopper); ok {
		if err := s.Stop(r.ctx); err != nil {
			r.log("stop: the store's clean shutdown failed: %v", err)
		}
	}
	r.down = true
	r.log("stop: clean shutdown")
	if r.mode == Serial {
		r.restart()
	}
}

// restart brings a crashed device back from what its storage holds: new
// store instances, credentials reloaded (a store that keeps none keeps the
// harness's copy), compared with the previous ones. Fresh credentials are a
// failure of their own (RegeneratedCreds); a store that refuses to start
// leaves the device down for good (StartRefused). Restarting a device that
// is up does nothing.
func (r *Run) restart() {
	if !r.down || r.refused {
		return
	}
	old := r.devs[0].Creds
	creds := old
	fresh := false
	if cs, ok := r.storage.(stores.CredsStore); ok {
		b, err := cs.LoadCreds(r.ctx)
		if err == nil && b != nil {
			creds, err = endpoint.DecodeCreds(b)
		}
		switch {
		case err != nil:
			r.refused = true
			r.log("%s: %v", restartRefused, err)
			return
		case b == nil:
			creds, fresh = endpoint.NewCreds(), true
		}
	}
	if err := r.newDevices(creds); err != nil {
		r.fail(fmt.Errorf("restart: %w", err))
		return
	}
	if !creds.Same(old) {
		r.regenerated = true
		r.log("restart: CREDENTIALS REGENERATED (fresh %v): identity and registration id changed", fresh)
		if err := r.register(); err != nil {
			r.fail(fmt.Errorf("restart: %w", err))
			return
		}
	} else {
		r.log("restart: credentials intact")
		r.checkPreKeys()
		r.refillPreKeys()
	}
	r.down = false
	redo := r.redo
	r.redo = nil
	for _, j := range redo {
		if j.requeue != nil {
			c := r.srv.Redeliver(j.requeue)
			r.log("restart: server redelivers unacknowledged %s as %s", j.name, c.ID)
			continue
		}
		id, _ := r.srv.NextCopy(j.msg)
		r.log("restart: %s %s runs again as %s", j.kind, j.name, id)
		j.name = id
		r.start(j)
	}
}

// rollback is a backup restore (or a volume rolled back): the device dies,
// its storage comes back as the last snapshot, and it restarts from that.
// Without a snapshot, or on storage that cannot restore, it is a crash. In
// the protocol baseline it is a clean restart; in RestoreBaseline's it
// restores the backup too.
func (r *Run) rollback() {
	if r.down {
		return
	}
	sn, ok := r.storage.(stores.Snapshotter)
	if (r.mode == Serial && !r.restores) || !ok || r.snap == nil {
		r.crash("")
		return
	}
	r.kill("")
	sn.Restore(r.snap)
	r.verdict.crashPoints[len(r.verdict.crashPoints)-1] += ", storage restored from the backup"
	r.log("rollback: storage restored from the backup")
	r.restart()
}

// writeCalls are the store calls that change state.

var writeCalls = map[string]bool{
	"PutIdentity": true, "DeleteAllIdentities": true, "DeleteIdentity": true,
	"PutSession": true, "PutManySessions": true, "DeleteAllSessions": true, "DeleteSession": true,
	"MigratePNToLID": true, "GetOrGenPreKeys": true, "GenOnePreKey": true, "RemovePreKey": true,
	"MarkPreKeysAsUploaded": true, "PutSenderKey": true,
}

func isWrite(call string) bool {
	verb, _, _ := strings.Cut(call, " ")
	return writeCalls[verb]
}

// noteCall records a store call a task is about to make (the trace runs
// before the call's yield point; the call itself runs when the task is
// stepped next), and counts it in the task's progress (follow.go).
func (r *Run) noteCall(task, call string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastCall[task] = call
	r.task(task).entered++
	if isWrite(call) {
		r.writes = append(r.writes, call)
		r.writer = append(r.writer, task)
	}
}

// WritesDone counts the store writes that have completed: entered, and the
// task that entered it has been stepped past it (or killed after it).
func (r *Run) WritesDone() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.writes)
	if r.sim == nil {
		return n
	}
	for name, call := range r.lastCall {
		if t := r.tasks[name]; t != nil && !t.Done() && isWrite(call) {
			n-- // parked at the yield point before this write
		}
	}
	return n
}

// WriteLocation describes the point right after write k (1-based):
// "after PutSession alice:0 (in m3), before RemovePreKey (m3)".
func (r *Run) WriteLocation(k int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k < 1 || k > len(r.writes) {
		return fmt.Sprintf("write %d of %d", k, len(r.writes))
	}
	task := r.writer[k-1]
	next := "end of " + task
	if t := r.tasks[task]; t != nil && !t.Done() {
		next = r.lastCall[task] + " (" + task + ")"
	}
	return fmt.Sprintf("after %s (%s, write %d), before %s", r.writes[k-1], task, k, next)
}

// crashLocation names the point a crash lands at now: right after the
// last store write that has completed (a task parked at the yield point
// before a write has not made it), in WriteLocation's words.
func (r *Run) crashLocation() string {
	r.mu.Lock()
	k := 0
	for i := len(r.writes) - 1; i >= 0 && k == 0; i-- {
		task := r.writer[i]
		parked := false
		if t := r.tasks[task]; t != nil && !t.Done() && isWrite(r.lastCall[task]) && r.lastWrite(task) == i {
			parked = true
		}
		if !parked {
			k = i + 1
		}
	}
	r.mu.Unlock()
	if k == 0 {
		return "after registration, before any store write by a device task"
	}
	return r.WriteLocation(k)
}

// lastWrite is the index of the last write task entered (-1: none).
func (r *Run) lastWrite(task string) int {
	for i := len(r.writer) - 1; i >= 0; i-- {
		if r.writer[i] == task {
			return i
		}
	}
	return -1
}

// PendingWrites is how many writes the storage would lose in a crash now.
func (r *Run) PendingWrites() int {
	if c, ok := r.storage.(stores.Crasher); ok {
		return c.PendingWrites()
	}
	return 0
}

// Down reports whether the device is crashed and not restarted.
func (r *Run) Down() bool { return r.down }

// Prekey counts on connect, from whatsmeow's prekeys.go (pinned version).
const (
	minPreKeyCount    = 5  // MinPreKeyCount
	wantedPreKeyCount = 50 // WantedPreKeyCount
)

// refillPreKeys is what whatsmeow does on connect (connectionevents.go
// handleConnectSuccess, lines 181-192): the store's UploadedPreKeyCount and
// the server's count of one-time prekeys it still holds; when either is
// below MinPreKeyCount, uploadPreKeys (prekeys.go lines 50-96):
// GetOrGenPreKeys(WantedPreKeyCount), the upload, MarkPreKeysAsUploaded up
// to the last. A store that forgot which ids it handed out hands out old
// ids here with new keys, and the server holds both.
func (r *Run) refillPreKeys() {
	dev := r.devs[0]
	db, err := dev.Device.PreKeys.UploadedPreKeyCount(r.ctx)
	if err != nil {
		r.log("restart: counting the store's prekeys failed: %v", err)
		return // whatsmeow logs it and goes on without uploading
	}
	server := len(r.srv.Unclaimed(dev.Address()))
	if server >= minPreKeyCount && db >= minPreKeyCount {
		return
	}
	pks, err := dev.Device.PreKeys.GetOrGenPreKeys(r.ctx, wantedPreKeyCount)
	if err != nil || len(pks) == 0 {
		r.log("restart: getting prekeys to upload failed: %v", err)
		return
	}
	r.srv.Upload(dev.Address(), dev.Bundle, pks)
	if err := dev.Device.PreKeys.MarkPreKeysAsUploaded(r.ctx, pks[len(pks)-1].KeyID); err != nil {
		r.log("restart: marking prekeys uploaded failed: %v", err)
		return
	}
	r.log("restart: the server held %d prekeys and the store counted %d uploaded: %d more uploaded (ids %d to %d)",
		server, db, len(pks), pks[0].KeyID, pks[len(pks)-1].KeyID)
}

// checkPreKeys is the restart invariant for one-time prekeys: every prekey
// the server still hands out must be in the store, with the same key, or the
// contact that gets it in a bundle fails with InvalidPreKey.
func (r *Run) checkPreKeys() {
	dev := r.devs[0]
	lost := 0
	for _, pk := range r.srv.Unclaimed(dev.Address()) {
		got, err := dev.Device.PreKeys.GetPreKey(r.ctx, pk.KeyID)
		if err != nil || got == nil || *got.Priv != *pk.Priv {
			lost++
		}
	}
	if lost > 0 {
		r.lostPreKeys += lost
		r.log("restart: %d UNUSED PREKEYS LOST (uploaded, not yet handed out)", lost)
	}
}
