package waweb

import (
	"context"
	"fmt"
)

// Traffic counts what a connection carried, so that a driver that runs the
// client in another process can tell when both ends are quiet: the
// websocket messages the server wrote to the client, and those it read
// from the client and finished handling (answers written). A driver that
// lets the client read every written message and waits until the server
// has handled every message the client wrote knows nothing is in flight
// (devices/baileys, the socket device).
type Traffic struct {
	Conn    int // the connection's number, from 1, in accept order
	Written int
	Handled int
	Closed  bool
}

// connTraffic is a connection's counters, guarded by Server.mu.
type connTraffic struct {
	id                     int
	written, read, handled int
	closed                 bool
}

// Traffic is the latest connection's (Conn 0: none yet).
func (s *Server) Traffic() Traffic {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trafficLocked()
}

func (s *Server) trafficLocked() Traffic {
	if s.last == nil {
		return Traffic{}
	}
	t := s.last.traffic
	return Traffic{Conn: t.id, Written: t.written, Handled: t.handled, Closed: t.closed}
}

// WaitTraffic blocks until ok holds for the latest connection's traffic,
// or ctx ends.
func (s *Server) WaitTraffic(ctx context.Context, ok func(Traffic) bool) (Traffic, error) {
	for {
		s.mu.Lock()
		t, ch := s.trafficLocked(), s.trafficChanged()
		s.mu.Unlock()
		if ok(t) {
			return t, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return t, fmt.Errorf("waweb: waiting for the connection (now %+v): %w", t, ctx.Err())
		}
	}
}

func (s *Server) trafficChanged() chan struct{} {
	if s.tchanged == nil {
		s.tchanged = make(chan struct{})
	}
	return s.tchanged
}

// touchTrafficLocked wakes the waiters.
func (s *Server) touchTrafficLocked() {
	if s.tchanged != nil {
		close(s.tchanged)
		s.tchanged = nil
	}
}

func (s *Server) accepted(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns++
	c.traffic.id = s.conns
	s.last = c
	s.touchTrafficLocked()
}

func (c *conn) countWrite() {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.traffic.written++
	c.s.touchTrafficLocked()
}

func (c *conn) countRead() {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.traffic.read++
}

// countHandled marks every message read so far as handled, once no frame
// of them is left in the buffer.
func (c *conn) countHandled() {
	if len(c.buf) > 0 {
		return
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.traffic.handled = c.traffic.read
	c.s.touchTrafficLocked()
}

func (c *conn) countClosed() {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.traffic.closed = true
	c.s.touchTrafficLocked()
}
