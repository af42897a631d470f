package storetest

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// write is one value a key was given: a put, or a delete (val nil).
type write struct {
	seq    int
	inst   int
	method string
	val    []byte
}

// model is what a correct store holds: for each key, the last write that
// returned without error. A correct store is durable when a write returns
// (whatsmeow assumes so), so a crash changes nothing; a rollback restores
// the model of the backup.
type model struct {
	writes  map[string][]write // every write per key, in order
	cur     map[string]int     // index of the current write per key; -1: none
	unknown map[string]bool    // keys a call changed in ways not modelled
}

func newModel() *model {
	return &model{writes: map[string][]write{}, cur: map[string]int{}, unknown: map[string]bool{}}
}

func (m *model) copyState() (map[string]int, map[string]bool) {
	cur := make(map[string]int, len(m.cur))
	for k, v := range m.cur {
		cur[k] = v
	}
	unk := make(map[string]bool, len(m.unknown))
	for k, v := range m.unknown {
		unk[k] = v
	}
	return cur, unk
}

func (m *model) put(key string, w write) {
	m.writes[key] = append(m.writes[key], w)
	m.cur[key] = len(m.writes[key]) - 1
}

func (m *model) current(key string) (write, int, bool) {
	i, ok := m.cur[key]
	if !ok || i < 0 {
		return write{}, -1, false
	}
	return m.writes[key][i], i, true
}

// kindOf splits the key space: sessions and sender keys never share keys.
func kindOf(method string) string {
	if strings.HasSuffix(method, "SenderKey") {
		return "senderkey"
	}
	return "session"
}

// userOf is the user part of a Signal address ("alice" of "alice:0" and of
// "alice_1:0").
func userOf(addr string) string {
	u, _, _ := strings.Cut(addr, ":")
	u, _, _ = strings.Cut(u, "_")
	return u
}

// diagnose reads a trace as a correct store would have answered it and
// says, in plain words, every call whose answer differs: the first finding
// is what the store did wrong first. At most limit findings.
func diagnose(calls []call, limit int) []string {
	m := newModel()
	var saved *model
	lastCrash := -1
	stop := "crash"
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] && len(out) < limit {
			seen[s] = true
			out = append(out, s)
		}
	}
	instances := map[int]bool{}
	for _, c := range calls {
		if c.event != "" {
			switch c.event {
			case "crash", "close", "stop":
				lastCrash, stop = c.seq, c.event
			case "snapshot":
				cur, unk := m.copyState()
				saved = &model{writes: m.writes, cur: cur, unknown: unk}
			case "rollback":
				if saved != nil {
					m.cur, m.unknown = saved.copyState()
				}
			}
			continue
		}
		instances[c.inst] = true
		if !c.ok || c.key == "" {
			continue
		}
		key := kindOf(c.method) + "|" + c.key
		switch c.method {
		case "PutSession", "PutManySessions", "PutSenderKey":
			m.put(key, write{seq: c.seq, inst: c.inst, method: c.method, val: c.val})
		case "DeleteSession":
			m.put(key, write{seq: c.seq, inst: c.inst, method: c.method})
		case "DeleteAllSessions":
			for k := range m.cur {
				if strings.HasPrefix(k, "session|") && userOf(strings.TrimPrefix(k, "session|")) == c.key {
					m.put(k, write{seq: c.seq, inst: c.inst, method: c.method})
				}
			}
		case "MigratePNToLID":
			pn, lid, _ := strings.Cut(c.key, ">")
			for k := range m.cur {
				if u := userOf(strings.TrimPrefix(k, "session|")); u == pn || u == lid {
					m.unknown[k] = true
				}
			}
			m.unknown["user|"+pn], m.unknown["user|"+lid] = true, true
		case "HasSession":
			if m.unknown[key] || m.unknown["user|"+userOf(c.key)] {
				continue
			}
			w, _, ok := m.current(key)
			if ok && len(w.val) > 0 && len(c.val) == 0 {
				add(fmt.Sprintf("HasSession %s said no session after %s wrote one%s", c.key, w.method, after(w, lastCrash, stop)))
			}
		case "GetSession", "GetManySessions", "GetSenderKey":
			if m.unknown[key] || m.unknown["user|"+userOf(c.key)] {
				continue
			}
			if d := m.check(key, c, lastCrash, stop, len(instances) > 1); d != "" {
				add(d)
			}
		}
	}
	return out
}

// after is the crash clause of a finding: empty unless write w came before
// the last crash (or Close) and reopen.
func after(w write, lastCrash int, stop string) string {
	if lastCrash > w.seq {
		return " (" + stopWords[stop] + ", read after reopen)"
	}
	return ""
}

var stopWords = map[string]string{"crash": "before the crash", "close": "before Close", "stop": "before the clean shutdown (Close)"}

// check explains a get whose answer is not the current write of its key.
func (m *model) check(key string, c call, lastCrash int, stop string, multi bool) string {
	w, i, ok := m.current(key)
	if ok && bytes.Equal(w.val, c.val) || !ok && len(c.val) == 0 || ok && len(w.val) == 0 && len(c.val) == 0 {
		return ""
	}
	get := c.method + " " + c.key
	inst := func(w write) string {
		if !multi {
			return ""
		}
		return fmt.Sprintf(" (written by instance %d, read by instance %d)", w.inst+1, c.inst+1)
	}
	if len(c.val) > 0 {
		// Another key's record: a store keyed without part of the address.
		kind, _, _ := strings.Cut(key, "|")
		for _, k := range slices.Sorted(maps.Keys(m.writes)) {
			ws := m.writes[k]
			if k == key || !strings.HasPrefix(k, kind+"|") {
				continue
			}
			for j := len(ws) - 1; j >= 0; j-- {
				if bytes.Equal(ws[j].val, c.val) {
					return fmt.Sprintf("%s returned the record %s wrote for %s", get, ws[j].method, strings.TrimPrefix(k, kind+"|"))
				}
			}
		}
	}
	ws := m.writes[key]
	if !ok {
		if len(ws) > 0 && len(c.val) > 0 {
			return fmt.Sprintf("%s returned a record after %s removed it", get, ws[len(ws)-1].method)
		}
		return fmt.Sprintf("%s returned %d bytes though nothing was written for %s", get, len(c.val), c.key)
	}
	if len(w.val) == 0 {
		return fmt.Sprintf("%s returned a record after %s removed it%s", get, w.method, inst(w))
	}
	// An older record of the same key, or none: a write was lost.
	older := -1
	if len(c.val) > 0 {
		for j := i - 1; j >= 0; j-- {
			if bytes.Equal(ws[j].val, c.val) {
				older = j
				break
			}
		}
		if older < 0 {
			for j := i + 1; j < len(ws); j++ {
				if bytes.Equal(ws[j].val, c.val) {
					return fmt.Sprintf("%s returned write %d of %d, which the restored backup did not hold", get, j+1, len(ws))
				}
			}
			return fmt.Sprintf("%s returned %d bytes no call wrote (a torn or corrupted record; the last %s wrote %d bytes)", get, len(c.val), w.method, len(w.val))
		}
	}
	what := "nothing"
	if older >= 0 {
		what = fmt.Sprintf("write %d of %d", older+1, i+1)
	}
	switch {
	case w.method == "PutManySessions":
		return fmt.Sprintf("PutManySessions dropped %s (%s then returned %s)%s", c.key, c.method, what, inst(w))
	case lastCrash > w.seq:
		return fmt.Sprintf("after reopen, %s %s from %s is missing (%s returned %s)", w.method, c.key, stopWords[stop], c.method, what)
	case c.method == "GetManySessions" && older < 0:
		return fmt.Sprintf("GetManySessions left out %s, which %s wrote%s", c.key, w.method, inst(w))
	case older >= 0:
		return fmt.Sprintf("%s returned an older record than the last %s (write %d of %d; %s lost)%s", get, w.method, older+1, i+1, lostWrites(older+2, i+1), inst(w))
	}
	return fmt.Sprintf("%s returned nothing after %s wrote it (write %d of %d lost)%s", get, w.method, i+1, i+1, inst(w))
}

func lostWrites(from, to int) string {
	if from == to {
		return fmt.Sprintf("write %d", to)
	}
	return fmt.Sprintf("writes %d to %d", from, to)
}
