package waweb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// wire counts the bytes on every connection between this server and the
// clients its HTTPClient dials, on both ends: what one end wrote and the
// other has not read yet is in flight. A driver that has seen every
// goroutine of the run blocked knows nothing is on its way only when
// nothing is in flight (Wire.Idle): a goroutine blocked reading a socket
// is idle only if no byte is coming (docs/design.md §8, controlled mode).
type wire struct {
	mu    sync.Mutex
	pairs map[string]*pair // by the client end's local address
	gen   uint64           // changes with every count
}

// pair is one TCP connection seen from both ends.
type pair struct {
	clientW, clientR, serverW, serverR int64
	client, server                     bool // each end seen
	clientClosed, serverClosed         bool
}

func newWire() *wire { return &wire{pairs: map[string]*pair{}} }

func (w *wire) update(key string, fn func(p *pair)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pairs[key]
	if p == nil {
		p = &pair{}
		w.pairs[key] = p
	}
	fn(p)
	w.gen++
}

// Idle reports whether no byte is in flight on any connection (each one
// closed at both ends, or open at both with every byte written read), and
// a generation that changes whenever a count does: two calls with the same
// generation saw the same counts.
func (w *wire) idle() (bool, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.pairs {
		if p.clientClosed && p.serverClosed {
			continue
		}
		if !p.client || !p.server || p.clientClosed || p.serverClosed ||
			p.clientW != p.serverR || p.serverW != p.clientR {
			return false, w.gen
		}
	}
	return true, w.gen
}

// countedConn is one end of a connection, counting what it reads and
// writes. A read that fails (the other end closed) closes this end for the
// count; one that times out does not (net/http aborts its background read
// of a connection it hands over that way).
type countedConn struct {
	net.Conn
	w      *wire
	key    string
	client bool
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	var ne net.Error
	closed := err != nil && !(errors.As(err, &ne) && ne.Timeout())
	c.w.update(c.key, func(p *pair) {
		if c.client {
			p.clientR += int64(n)
			p.clientClosed = p.clientClosed || closed
		} else {
			p.serverR += int64(n)
			p.serverClosed = p.serverClosed || closed
		}
	})
	return n, err
}

func (c *countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.w.update(c.key, func(p *pair) {
		if c.client {
			p.clientW += int64(n)
		} else {
			p.serverW += int64(n)
		}
	})
	return n, err
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.w.update(c.key, func(p *pair) {
		if c.client {
			p.clientClosed = true
		} else {
			p.serverClosed = true
		}
	})
	return err
}

func (w *wire) clientConn(c net.Conn) net.Conn {
	key := c.LocalAddr().String()
	w.mu.Lock()
	if p := w.pairs[key]; p != nil && p.clientClosed {
		delete(w.pairs, key) // a new connection on a port an old one used
	}
	w.mu.Unlock()
	w.update(key, func(p *pair) { p.client = true })
	return &countedConn{Conn: c, w: w, key: key, client: true}
}

// countedListener counts the server end of every connection it accepts.
type countedListener struct {
	net.Listener
	w *wire
}

func (l countedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	key := c.RemoteAddr().String()
	l.w.mu.Lock()
	if p := l.w.pairs[key]; p != nil && p.serverClosed {
		delete(l.w.pairs, key) // a new connection on a port an old one used
	}
	l.w.mu.Unlock()
	l.w.update(key, func(p *pair) { p.server = true })
	return &countedConn{Conn: c, w: l.w, key: key}, nil
}

// dialCounted dials addr and counts the client end.
func (w *wire) dialCounted(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return w.clientConn(c), nil
}

// Debug lists the connections' counts (tests).
func (s *Server) WireDebug() string {
	s.wire.mu.Lock()
	defer s.wire.mu.Unlock()
	out := ""
	for k, p := range s.wire.pairs {
		out += fmt.Sprintf("%s %+v\n", k, *p)
	}
	return out
}
