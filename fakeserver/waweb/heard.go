package waweb

// HeardFrom counts the device's accepted decryptions of messages from peer
// (what a scenario's generator sees as heard, harness.View).
func (l *Ledger) HeardFrom(peer string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m.Dir != In || m.Peer != peer {
			continue
		}
		for _, a := range m.Attempts {
			if a.OK {
				n++
			}
		}
	}
	return n
}
