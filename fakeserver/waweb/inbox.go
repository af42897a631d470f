package waweb

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	waBinary "go.mau.fi/whatsmeow/binary"
)

// inbox holds what the clients sent while the server is manual (Manual):
// nodes wait there, unanswered, until the driver calls Process. A client's
// goroutines send concurrently, so the order nodes arrive in is not the
// run's; Process takes them in a canonical order instead (nodeKey), which
// makes the server's answers, and everything they cause, the same on every
// run of a schedule (docs/design.md §8, controlled mode).
type inbox struct {
	mu     sync.Mutex
	nodes  []inNode
	notify func()
}

type inNode struct {
	c   *conn
	n   *waBinary.Node
	key string
}

// Manual makes the server keep every node a client sends (after the
// handshake and login) for Process instead of answering it at once; notify
// (may be nil) is called from the connection's goroutine after each node
// is kept. Call it before the client connects.
func (s *Server) Manual(notify func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inbox = &inbox{notify: notify}
}

// enqueue keeps n for Process when the server is manual.
func (s *Server) enqueue(c *conn, n *waBinary.Node) bool {
	in := s.inboxOf()
	if in == nil {
		return false
	}
	in.mu.Lock()
	in.nodes = append(in.nodes, inNode{c: c, n: n, key: nodeKey(n)})
	notify := in.notify
	in.mu.Unlock()
	if notify != nil {
		notify()
	}
	return true
}

// inboxOf is the inbox, nil when the server is not manual.
func (s *Server) inboxOf() *inbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inbox
}

// Waiting is the number of nodes kept for Process.
func (s *Server) Waiting() int {
	in := s.inboxOf()
	if in == nil {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.nodes)
}

// Process answers the nodes kept so far, in canonical order, on the
// caller's goroutine, and returns how many it took. Answers go to the
// connection each node came on (dropped if it has closed since).
func (s *Server) Process() int {
	in := s.inboxOf()
	if in == nil {
		return 0
	}
	in.mu.Lock()
	nodes := in.nodes
	in.nodes = nil
	in.mu.Unlock()
	slices.SortStableFunc(nodes, func(a, b inNode) int { return strings.Compare(a.key, b.key) })
	for _, x := range nodes {
		s.handle(x.c, x.n)
	}
	return len(nodes)
}

// nodeKey is a node as text without what differs between runs of one
// schedule: timestamps, the ids whatsmeow draws for its iqs, and byte
// content (ciphertexts: keys and padding are random).
func nodeKey(n *waBinary.Node) string {
	var b strings.Builder
	writeKey(&b, n)
	return b.String()
}

func writeKey(b *strings.Builder, n *waBinary.Node) {
	b.WriteString("<" + n.Tag)
	keys := make([]string, 0, len(n.Attrs))
	for k := range n.Attrs {
		if k == "t" || (k == "id" && n.Tag == "iq") {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(b, " %s=%v", k, n.Attrs[k])
	}
	b.WriteString(">")
	if kids, ok := n.Content.([]waBinary.Node); ok {
		for i := range kids {
			writeKey(b, &kids[i])
		}
	}
	b.WriteString("</" + n.Tag + ">")
}
