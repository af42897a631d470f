package storetest

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// diagnose reads a trace and says, in plain words, every answer a correct
// store cannot have given: the first finding is what the store did wrong
// first. At most limit findings.
//
// A correct store is linearizable per key (each call takes effect at one
// instant between its start and its return) and durable once a call
// returns (whatsmeow assumes both: docs/design.md §3), so a read may
// return the value of the last write that returned before the read began,
// or of any write that overlapped the read, and nothing else. Calls made
// at once by real goroutines overlap, so this holds in free mode as well
// as under the controlled scheduler, where calls never overlap. A crash
// or a Close changes nothing; a rollback puts back what the backup could
// hold. One-time prekeys are judged by their key, not their id: an id
// handed out keeps its key pair until RemovePreKey removes it.
func diagnose(calls []call, limit int, perRun int) []string {
	d := newDiagnosis(calls, perRun)
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s != "" && !seen[s] && len(out) < limit {
			seen[s] = true
			out = append(out, s)
		}
	}
	// Addresses left out with no session are one finding, listing them.
	omitAt, omitted := -1, []string(nil)
	for i := range calls {
		f := d.judge(i)
		if addr, ok := strings.CutPrefix(f, omitNone); ok {
			if omitAt < 0 && len(out) < limit {
				omitAt = len(out)
				out = append(out, "")
			}
			if !slices.Contains(omitted, addr) {
				omitted = append(omitted, addr)
			}
			continue
		}
		add(f)
	}
	if omitAt >= 0 {
		out[omitAt] = fmt.Sprintf("GetManySessions left out %s (no session), where whatsmeow wants every address it asked for, "+
			"nil for none: its send path then fetches no prekey bundle for such a device and the message to it fails "+
			"with ErrNoSession (whatsmeow send.go:1271-1281, 1367-1376)", strings.Join(omitted, ", "))
	}
	return out
}

// omitNone marks a judge result that is an address GetManySessions left
// out though it had no session: diagnose lists them in one finding.
const omitNone = "\x00omitted "

// dwrite is one value a key was given: a put, or a delete (val nil).
type dwrite struct {
	begin, end int
	epoch      int
	inst       int
	method     string
	val        []byte
	n          int // 1-based write number of its key
}

type diagnosis struct {
	calls  []call
	perRun int
	writes map[string][]dwrite // per key, in return order
	epoch  []int               // per call: the rollbacks before it
	// snaps[e] is the span of the snapshot that epoch e+1 was rolled back
	// to (from the clock before its processes were stopped to the one
	// after they went on), and snapEpoch[e] the epoch it was taken in.
	snaps     [][2]int
	snapEpoch []int
	unknown   map[string]int // key or "user|u": the clock from which a migration made it unknown
	stops     []int          // clocks of crashes, Closes and stops
	stopWord  map[int]string
	multi     bool
	pks       *pkModel
}

func newDiagnosis(calls []call, perRun int) *diagnosis {
	d := &diagnosis{calls: calls, perRun: max(perRun, 1), writes: map[string][]dwrite{}, epoch: make([]int, len(calls)),
		unknown: map[string]int{}, stopWord: map[int]string{}, pks: newPKModel()}
	epoch, lastSnap, lastSnapEpoch := 0, [2]int{-1, -1}, 0
	insts := map[int]bool{}
	put := func(key string, c call, val []byte, e int) {
		ws := d.writes[key]
		d.writes[key] = append(ws, dwrite{begin: c.begin, end: c.seq, epoch: e, inst: c.inst, method: c.method, val: val, n: len(ws) + 1})
	}
	// Keys per user, for the deletes of a whole user.
	users := map[string]map[string]bool{}
	for _, c := range calls {
		if c.event == "" && c.key != "" {
			if k := keyOf(c); k != "" {
				kind, addr, _ := strings.Cut(k, "|")
				u := kind + "|" + userOf(addr)
				if users[u] == nil {
					users[u] = map[string]bool{}
				}
				users[u][k] = true
			}
		}
	}
	for i, c := range calls {
		d.epoch[i] = epoch
		switch c.event {
		case "crash", "close", "stop":
			d.stops = append(d.stops, c.seq)
			d.stopWord[c.seq] = c.event
			continue
		case "snapshot":
			lastSnap, lastSnapEpoch = [2]int{c.begin, c.seq}, epoch
			continue
		case "rollback":
			if lastSnap[1] >= 0 {
				epoch++
				d.snaps = append(d.snaps, lastSnap)
				d.snapEpoch = append(d.snapEpoch, lastSnapEpoch)
			}
			d.epoch[i] = epoch
			continue
		case "":
		default:
			continue
		}
		insts[c.inst] = true
		if !c.ok {
			continue
		}
		switch c.method {
		case "PutSession", "PutManySessions", "PutSenderKey", "PutIdentity":
			put(keyOf(c), c, c.val, epoch)
		case "DeleteSession", "DeleteIdentity":
			put(keyOf(c), c, nil, epoch)
		case "DeleteAllSessions", "DeleteAllIdentities":
			kind := "session"
			if c.method == "DeleteAllIdentities" {
				kind = "identity"
			}
			for _, k := range slices.Sorted(maps.Keys(users[kind+"|"+c.key])) {
				put(k, c, nil, epoch)
			}
		case "MigratePNToLID":
			pn, lid, _ := strings.Cut(c.key, ">")
			for _, u := range []string{userOf(pn), userOf(lid)} {
				if _, ok := d.unknown["user|"+u]; !ok {
					d.unknown["user|"+u] = c.begin
				}
			}
		}
	}
	d.multi = len(insts) > 1
	return d
}

// keyOf is the key a call reads or writes: kinds never share keys.
func keyOf(c call) string {
	switch {
	case strings.HasSuffix(c.method, "SenderKey"):
		return "senderkey|" + c.key
	case strings.HasSuffix(c.method, "Identity") || strings.HasSuffix(c.method, "Identities"):
		return "identity|" + c.key
	case strings.Contains(c.method, "Session"):
		return "session|" + c.key
	}
	return ""
}

// userOf is the user part of a Signal address ("alice" of "alice:0" and of
// "alice_1:0").
func userOf(addr string) string {
	u, _, _ := strings.Cut(addr, ":")
	u, _, _ = strings.Cut(u, "_")
	return u
}

// judge says what is wrong with call i, or "".
func (d *diagnosis) judge(i int) string {
	c := d.calls[i]
	if c.event != "" || !c.ok {
		return ""
	}
	switch c.method {
	case "GetSession", "GetManySessions", "GetSenderKey", "HasSession":
		return d.read(i)
	case "GetOrGenPreKeys", "GenOnePreKey", "GetPreKey", "RemovePreKey":
		return d.pks.judge(d, c)
	}
	return ""
}

// admissible lists the writes a read over [b, e] in epoch ep may return,
// and whether what the key held before the epoch's first write may still
// be returned (base).
func (d *diagnosis) admissible(key string, ep, b, e int) (ws []dwrite, base []dwrite, baseNone bool) {
	var done []dwrite
	for _, w := range d.writes[key] {
		if w.epoch != ep || w.begin >= e {
			continue
		}
		if w.end < b {
			done = append(done, w)
		} else {
			ws = append(ws, w) // overlaps the read
		}
	}
	for _, w := range done {
		superseded := false
		for _, w2 := range done {
			if w.end < w2.begin {
				superseded = true
				break
			}
		}
		if !superseded {
			ws = append(ws, w)
		}
	}
	if len(done) == 0 {
		if ep == 0 {
			return ws, nil, true
		}
		// The backup holds what a read over the snapshot's span may
		// return: a write that overlapped it may have reached the copy.
		s := d.snaps[ep-1]
		base, _, baseNone = d.admissible(key, d.snapEpoch[ep-1], s[0], s[1])
		if len(base) == 0 {
			baseNone = true
		}
	}
	return ws, base, baseNone
}

func none(v []byte) bool { return len(v) == 0 }

func same(a, b []byte, presence bool) bool {
	if presence {
		return none(a) == none(b)
	}
	return bytes.Equal(a, b) || none(a) && none(b)
}

// read judges a read of a session or sender key.
func (d *diagnosis) read(i int) string {
	c := d.calls[i]
	key := keyOf(c)
	if from, ok := d.unknown["user|"+userOf(c.key)]; ok && c.seq > from {
		return "" // a migration moved it: MigratePNToLID is judged by its own check
	}
	get := c.method + " " + c.key
	ep := d.epoch[i]
	ws, base, baseNone := d.admissible(key, ep, c.begin, c.seq)
	presence := c.method == "HasSession"
	if c.omitted {
		last := latest(ws)
		if last != nil && !none(last.val) {
			return fmt.Sprintf("GetManySessions left out %s, which %s wrote%s", c.key, last.method, d.insts(*last, c))
		}
		return omitNone + c.key
	}
	for _, w := range append(ws, base...) {
		if same(w.val, c.val, presence) {
			return ""
		}
	}
	if baseNone && none(c.val) {
		return ""
	}
	if presence {
		if none(c.val) {
			if w := latest(ws); w != nil {
				return fmt.Sprintf("HasSession %s said no session after %s wrote one%s", c.key, w.method, d.after(*w, c))
			}
		}
		return ""
	}
	// Another key's record: a store keyed without part of the address.
	if !none(c.val) {
		kind, _, _ := strings.Cut(key, "|")
		for _, k := range slices.Sorted(maps.Keys(d.writes)) {
			if k == key || !strings.HasPrefix(k, kind+"|") {
				continue
			}
			kws := d.writes[k]
			for j := len(kws) - 1; j >= 0; j-- {
				if bytes.Equal(kws[j].val, c.val) {
					return fmt.Sprintf("%s returned the record %s wrote for %s", get, kws[j].method, strings.TrimPrefix(k, kind+"|"))
				}
			}
		}
	}
	all := d.writes[key]
	last := latest(ws)
	total := 0
	for _, w := range all {
		if w.begin < c.seq {
			total = w.n
		}
	}
	if !none(c.val) {
		var found *dwrite
		for j := len(all) - 1; j >= 0; j-- {
			if bytes.Equal(all[j].val, c.val) {
				found = &all[j]
				break
			}
		}
		switch {
		case found == nil && last != nil && !none(last.val):
			return fmt.Sprintf("%s returned %d bytes no call wrote (a torn or corrupted record; the last %s wrote %d bytes)", get, len(c.val), last.method, len(last.val))
		case found == nil:
			return fmt.Sprintf("%s returned %d bytes though nothing was written for %s", get, len(c.val), c.key)
		case found.epoch < ep:
			return fmt.Sprintf("%s returned write %d of %d, which the restored backup did not hold", get, found.n, total)
		case last == nil || none(last.val):
			what := "DeleteSession"
			if last != nil {
				what = last.method
			}
			return fmt.Sprintf("%s returned a record after %s removed it%s", get, what, d.insts(*orZero(last), c))
		case found.begin >= c.seq:
			return fmt.Sprintf("%s returned write %d of %d before that write began", get, found.n, total)
		}
		return d.stale(get, *found, *last, c, total)
	}
	// Nothing, where a record was written.
	if last == nil {
		return ""
	}
	what := "nothing"
	switch {
	case d.multi && last.inst != c.inst && !d.freshAfter(c, *last):
		return d.notSeen(get, what, *last, c, total)
	case last.method == "PutManySessions":
		return fmt.Sprintf("PutManySessions dropped %s (%s then returned %s)%s", c.key, c.method, what, d.insts(*last, c))
	case d.stopBetween(last.end, c.begin) != "":
		return fmt.Sprintf("after reopen, %s %s from %s is missing (%s returned %s)", last.method, c.key, stopWords[d.stopBetween(last.end, c.begin)], c.method, what)
	}
	return fmt.Sprintf("%s returned nothing after %s wrote it (write %d of %d lost)%s", get, last.method, last.n, last.n, d.insts(*last, c))
}

func orZero(w *dwrite) *dwrite {
	if w == nil {
		return &dwrite{}
	}
	return w
}

// latest is the write among ws that returned last.
func latest(ws []dwrite) *dwrite {
	var l *dwrite
	for i := range ws {
		if l == nil || ws[i].end > l.end {
			l = &ws[i]
		}
	}
	return l
}

// stale words a read that returned an older write (found) than the last
// (last), and says whose fault it is when two instances were involved.
func (d *diagnosis) stale(get string, found, last dwrite, c call, total int) string {
	if d.multi && last.inst != c.inst && !d.freshAfter(c, last) {
		return d.notSeen(get, fmt.Sprintf("write %d of %d", found.n, total), last, c, total)
	}
	if last.method == "PutManySessions" {
		return fmt.Sprintf("PutManySessions dropped %s (%s then returned write %d of %d)%s", c.key, c.method, found.n, last.n, d.insts(last, c))
	}
	if stop := d.stopBetween(last.end, c.begin); stop != "" && found.end < last.begin {
		return fmt.Sprintf("after reopen, %s %s from %s is missing (%s returned write %d of %d)", last.method, c.key, stopWords[stop], c.method, found.n, last.n)
	}
	return fmt.Sprintf("%s returned an older record than the last %s (write %d of %d; %s lost)%s", get, last.method, found.n, last.n, lostWrites(found.n+1, last.n), d.insts(last, c))
}

// notSeen words a read by one instance that missed another instance's
// write, naming the culprit when a later read tells: the write landed
// (some later read returned it) and the reader's instance served an older
// record from something other processes' writes do not reach (a cache);
// or the write was lost (the writer's own instance, or one opened after
// the write, read older).
func (d *diagnosis) notSeen(get, what string, last dwrite, c call, total int) string {
	// shared: another instance than the writer read the write afterwards
	// (it reached the store); own: only the writer did (it may hold it in
	// memory); lost: the writer, or an instance opened after the write,
	// read older with nothing newer written in between.
	shared, own, lost := false, false, false
	for _, o := range d.calls {
		if o.event != "" || !o.ok || o.begin <= last.end || keyOf(o) != keyOf(c) || o.method == "HasSession" || o.omitted ||
			!strings.HasPrefix(o.method, "Get") {
			continue
		}
		switch {
		case !none(last.val) && bytes.Equal(o.val, last.val) && o.inst != last.inst:
			shared = true
		case !none(last.val) && bytes.Equal(o.val, last.val):
			own = true
		case o.inst == last.inst || d.freshAfter(o, last):
			newer := false
			for _, w := range d.writes[keyOf(c)] {
				if w.begin > last.end && w.end < o.begin {
					newer = true
				}
			}
			if !newer {
				lost = true
			}
		}
	}
	who := fmt.Sprintf("%s by instance %s returned %s, not what %s by instance %s wrote before it (write %d of %d)",
		get, d.label(c.inst), what, last.method, d.label(last.inst), last.n, total)
	switch {
	case shared && !lost:
		return who + ": a stale read, not a lost write: the write reached the store (another instance read it afterwards), and instance " +
			d.label(c.inst) + " answered from something another process's writes do not reach (a cache)"
	case own && !shared && lost:
		return who + ": only the writing instance saw its write afterwards, an instance opened after it did not: " +
			"the writing instance keeps writes to itself (a write-back buffer not yet written to the store)"
	case own && !shared:
		return who + ": only the writing instance saw its write afterwards: it keeps writes to itself (a write-back buffer) " +
			"or instance " + d.label(c.inst) + " reads from a cache of its own; no read by a third instance tells which"
	case lost && !shared:
		return who + ": the write was lost (the writing instance, or one opened after it, read the older record too)"
	}
	return who + ": a stale cache in instance " + d.label(c.inst) + " or a lost write; no later read tells which"
}

// freshAfter reports whether call o's instance was opened after write w
// returned (it can hold no copy older than w).
func (d *diagnosis) freshAfter(o call, w dwrite) bool {
	for _, c := range d.calls {
		if c.event == "" && c.inst == o.inst {
			return c.begin > w.end
		}
	}
	return false
}

// label is an instance as the history names it: @i of the schedule's
// device instances, and the restart it was opened after.
func (d *diagnosis) label(inst int) string {
	s := fmt.Sprintf("@%d", inst%d.perRun)
	if r := inst / d.perRun; r > 0 {
		s += fmt.Sprintf(" (opened after restart %d)", r)
	}
	return s
}

// insts is the instance clause of a finding when two instances ran.
func (d *diagnosis) insts(w dwrite, c call) string {
	if !d.multi {
		return d.after(w, c)
	}
	return fmt.Sprintf(" (written by instance %s, read by instance %s)", d.label(w.inst), d.label(c.inst))
}

// after is the crash clause of a finding: empty unless write w returned
// before a crash (or Close) and the reopen that read.
func (d *diagnosis) after(w dwrite, c call) string {
	if s := d.stopBetween(w.end, c.begin); s != "" {
		return " (" + stopWords[s] + ", read after reopen)"
	}
	return ""
}

// stopBetween is the last crash, Close or stop between two clocks, or "".
func (d *diagnosis) stopBetween(from, to int) string {
	word := ""
	for _, s := range d.stops {
		if s > from && s < to {
			word = d.stopWord[s]
		}
	}
	return word
}

var stopWords = map[string]string{"crash": "before the crash", "close": "before Close", "stop": "before the clean shutdown (Close)"}

func lostWrites(from, to int) string {
	if from == to {
		return fmt.Sprintf("write %d", to)
	}
	return fmt.Sprintf("writes %d to %d", from, to)
}

// pkModel follows one-time prekeys by identity.
type pkModel struct {
	keys map[uint32]pkEntry
	// saved is the model at the last snapshot; a rollback puts it back.
	saved map[uint32]pkEntry
	next  int // the call index up to which the model is built
}

type pkEntry struct {
	priv    [32]byte
	method  string
	end     int
	removed int // clock RemovePreKey returned at; 0: not removed
	// unsure: restored from a backup taken while a call that made or
	// removed this key was under way; the copy may hold it or not.
	unsure bool
}

func newPKModel() *pkModel { return &pkModel{keys: map[uint32]pkEntry{}} }

// upTo applies every call before the one at clock c.begin to the model:
// generations that returned before it began, removals likewise.
func (m *pkModel) upTo(d *diagnosis, c call) {
	for m.next < len(d.calls) {
		o := d.calls[m.next]
		if o.seq >= c.begin {
			return
		}
		m.next++
		switch o.event {
		case "snapshot":
			m.saved = maps.Clone(m.keys)
			m.unsureOver(d, o.begin, o.seq)
			continue
		case "rollback":
			if m.saved != nil {
				m.keys = maps.Clone(m.saved)
			}
			continue
		case "":
		default:
			continue
		}
		if !o.ok {
			continue
		}
		switch o.method {
		case "GetOrGenPreKeys", "GenOnePreKey":
			for _, k := range o.prekeys {
				if e, ok := m.keys[k.id]; !ok || e.removed > 0 || e.unsure {
					m.keys[k.id] = pkEntry{priv: *k.priv, method: o.method, end: o.seq}
				}
			}
		case "RemovePreKey":
			if e, ok := m.keys[o.prekeys[0].id]; ok {
				e.removed, e.unsure = o.seq, false
				m.keys[o.prekeys[0].id] = e
			}
		}
	}
}

// unsureOver marks, in the backup just saved, every key a prekey call
// overlapping the snapshot's span [b, e] made or removed: the copy was
// taken somewhere in the span, so it may hold that call's effect or not.
func (m *pkModel) unsureOver(d *diagnosis, b, e int) {
	for _, o := range d.calls {
		if o.event != "" || !o.ok || o.begin >= e || o.seq <= b {
			continue
		}
		switch o.method {
		case "GetOrGenPreKeys", "GenOnePreKey", "RemovePreKey":
			for _, k := range o.prekeys {
				en, ok := m.saved[k.id]
				if !ok && k.priv != nil {
					en = pkEntry{priv: *k.priv, method: o.method, end: o.seq}
				}
				en.unsure = true
				m.saved[k.id] = en
			}
		}
	}
}

// judge says what is wrong with a prekey call.
func (m *pkModel) judge(d *diagnosis, c call) string {
	m.upTo(d, c)
	switch c.method {
	case "GetOrGenPreKeys", "GenOnePreKey":
		for _, k := range c.prekeys {
			e, ok := m.keys[k.id]
			if !ok || e.removed > 0 || e.unsure {
				continue
			}
			if e.priv != *k.priv {
				if s := d.stopBetween(e.end, c.begin); s != "" {
					return fmt.Sprintf("after the %s, prekey %d has a different key than the one %s handed out before it "+
						"(%s reused the id: the store forgot which ids it had given out; a contact holding the old key fails with Bad MAC or InvalidPreKey)",
						crashNoun[s], k.id, e.method, c.method)
				}
				return fmt.Sprintf("%s handed out prekey %d with a different key than %s had given it "+
					"(the id was reused; a contact holding the old key fails with Bad MAC or InvalidPreKey)", c.method, k.id, e.method)
			}
			if c.method == "GenOnePreKey" {
				return fmt.Sprintf("GenOnePreKey handed out prekey %d again (%s had already given it out)", k.id, e.method)
			}
		}
	case "GetPreKey":
		k := c.prekeys[0]
		e, ok := m.keys[k.id]
		switch {
		case !ok:
		case e.unsure && (k.priv == nil || *k.priv == e.priv):
		case e.removed > 0 && k.priv != nil:
			return fmt.Sprintf("GetPreKey %d returned the prekey after RemovePreKey removed it (a replayed prekey message would be accepted again)", k.id)
		case e.removed > 0:
		case k.priv == nil && d.removing(k.id, e.end, c):
			// A RemovePreKey of the same id overlapped the read (real
			// goroutines: two receives of prekey messages that carry it):
			// nothing is a correct answer.
		case k.priv == nil:
			return fmt.Sprintf("GetPreKey %d returned nothing, though %s handed it out and RemovePreKey never removed it%s "+
				"(a contact given it in a bundle fails with InvalidPreKey)", k.id, e.method, d.afterWord(e.end, c.begin))
		case *k.priv != e.priv:
			return fmt.Sprintf("GetPreKey %d returned a different key than the one %s handed out%s "+
				"(a contact that used the uploaded one fails with Bad MAC)", k.id, e.method, d.afterWord(e.end, c.begin))
		}
	}
	return ""
}

// removing reports whether a RemovePreKey of id that returned after the
// prekey was handed out (at clock from) overlapped call c: it began before
// c returned and returned after c began, so its delete may land first.
func (d *diagnosis) removing(id uint32, from int, c call) bool {
	for _, o := range d.calls {
		if o.method == "RemovePreKey" && len(o.prekeys) > 0 && o.prekeys[0].id == id &&
			o.seq > from && o.begin < c.seq && o.seq >= c.begin {
			return true
		}
	}
	return false
}

var crashNoun = map[string]string{"crash": "crash", "close": "Close and reopen", "stop": "clean restart"}

func (d *diagnosis) afterWord(from, to int) string {
	if s := d.stopBetween(from, to); s != "" {
		return " (" + stopWords[s] + ", read after reopen)"
	}
	return ""
}
