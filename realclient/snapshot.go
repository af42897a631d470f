package realclient

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// A goroutine snapshot: every goroutine of the process, its state, its
// pprof labels and its frames, taken at one instant (runtime.Stack with
// all=true stops the world while it writes the traces). The goroutines of
// one run carry the label runLabel, which every goroutine inherits from
// the one that starts it; so the client's goroutines (whatsmeow's handler
// queue, keepalive loop, socket reader, the handlers and every goroutine
// they start) and the server's are found among all the process's, whatever
// else runs beside them. Labels show in tracebacks only with
// GODEBUG=tracebacklabels=1 (Go 1.26), which the runtime reads again
// whenever GODEBUG changes; enableLabels sets it once.

// runLabel is the pprof label key naming a run's goroutines; clientLabel
// names the client process (one per start and restart) a goroutine of the
// run belongs to (the server's have none); taskLabel names one of badmac's
// own goroutines in it (an async reply).
const (
	runLabel    = "badmac-realclient"
	clientLabel = "badmac-client"
	taskLabel   = "badmac-task"
)

var labelsOnce sync.Once

func enableLabels() {
	labelsOnce.Do(func() {
		v := os.Getenv("GODEBUG")
		if v != "" {
			v += ","
		}
		os.Setenv("GODEBUG", v+"tracebacklabels=1")
	})
}

// goroutine is one goroutine in a snapshot.
type goroutine struct {
	id        int64
	state     string            // "chan receive", "running", …
	labels    map[string]string // pprof labels
	frames    []string          // function names, innermost first
	creator   string            // function that started it
	createdIn int64             // the goroutine that started it
}

// blocked reports whether the goroutine waits for another goroutine, a
// lock or a socket: it cannot move until something else does. Running,
// runnable, in a system call, asleep (a timer wakes it), in the garbage
// collector: not blocked.
//
// A wait for a lock counts only when the lock is one of whatsmeow's own
// (a field of its Client: messageSendLock, uploadPreKeysLock, …), taken by
// this run's goroutines alone, whose holder the snapshot judges too. A
// wait for any other lock, or for one of the runtime's semaphores, is
// counted as moving: SQLite's and its C library's locks, and the
// runtime's, are the process's, held for an instant by whatever goroutine
// of whatever run (or by the finalizer) is in a call, which the snapshot
// need not show as one of this run's.
func (g *goroutine) blocked() bool {
	switch g.state {
	case "chan receive", "chan send", "select", "select (no cases)", "chan receive (nil chan)", "chan send (nil chan)",
		"sync.Cond.Wait", "sync.WaitGroup.Wait", "IO wait":
		return true
	case "sync.Mutex.Lock", "sync.RWMutex.Lock", "sync.RWMutex.RLock":
		return strings.HasPrefix(g.locker(), "go.mau.fi/whatsmeow.")
	}
	// "semacquire" is the runtime's own semaphores (a timer's, a
	// goroutine's start): held for an instant, by any goroutine of the
	// process. whatsmeow's handler queue was seen there, between taking
	// a stanza and starting its handler.
	return false
}

// locker is the first frame outside the runtime and sync: the function
// waiting for the lock.
func (g *goroutine) locker() string {
	for _, f := range g.frames {
		if strings.HasPrefix(f, "runtime.") || strings.HasPrefix(f, "sync.") || strings.HasPrefix(f, "internal/") {
			continue
		}
		return f
	}
	return ""
}

// calls reports whether fn is one of the goroutine's frames.
func (g *goroutine) calls(fn string) bool {
	for _, f := range g.frames {
		if f == fn {
			return true
		}
	}
	return false
}

// snapshot returns the goroutines labelled run=value; buf is reused
// between calls (grown as needed).
func snapshot(value string, buf *[]byte) map[int64]*goroutine {
	if len(*buf) == 0 {
		*buf = make([]byte, 1<<18)
	}
	var text []byte
	for {
		n := runtime.Stack(*buf, true)
		if n < len(*buf) {
			text = (*buf)[:n]
			break
		}
		*buf = make([]byte, 2*len(*buf))
	}
	out := map[int64]*goroutine{}
	mark := []byte(strconv.Quote(runLabel) + ": " + strconv.Quote(value))
	for len(text) > 0 {
		var block []byte
		block, text, _ = bytes.Cut(text, blockSep)
		// Only blocks naming the run are parsed (the label is in the
		// block's first line).
		head, _, _ := bytes.Cut(block, []byte{'\n'})
		if !bytes.Contains(head, mark) {
			continue
		}
		g := parseGoroutine(string(block))
		if g != nil && g.labels[runLabel] == value {
			out[g.id] = g
		}
	}
	return out
}

var blockSep = []byte("\n\n")

// parseGoroutine reads one traceback block:
//
//	goroutine 21 [chan receive, 2 minutes labels:{"k": "v"}]:
//	pkg.fn(…)
//		/path/file.go:19 +0x19
//	created by pkg.parent in goroutine 20
//		/path/file.go:17 +0xc6
func parseGoroutine(block string) *goroutine {
	lines := strings.Split(strings.TrimSpace(block), "\n")
	head, ok := strings.CutPrefix(lines[0], "goroutine ")
	if !ok {
		return nil
	}
	idText, rest, ok := strings.Cut(head, " [")
	if !ok {
		return nil
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return nil
	}
	status := strings.TrimSuffix(rest, "]:")
	g := &goroutine{id: id, labels: map[string]string{}}
	if i := strings.Index(status, " labels:{"); i >= 0 {
		g.labels = parseLabels(status[i+len(" labels:{") : len(status)-1])
		status = status[:i]
	}
	g.state, _, _ = strings.Cut(status, ",")
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "\t") {
			continue
		}
		if c, ok := strings.CutPrefix(l, "created by "); ok {
			fn, in, _ := strings.Cut(c, " in goroutine ")
			g.creator = fn
			g.createdIn, _ = strconv.ParseInt(in, 10, 64)
			continue
		}
		if i := strings.LastIndex(l, "("); i > 0 {
			l = l[:i]
		}
		g.frames = append(g.frames, l)
	}
	return g
}

// parseLabels reads `"k": "v", "k2": "v2"` as printed by the runtime
// (quoted with Go escapes).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		k, rest, err := unquotePrefix(s)
		if err != nil {
			break
		}
		rest = strings.TrimPrefix(rest, ": ")
		v, rest2, err := unquotePrefix(rest)
		if err != nil {
			break
		}
		out[k] = v
		s = strings.TrimPrefix(rest2, ", ")
	}
	return out
}

func unquotePrefix(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	return v, s[len(q):], err
}
