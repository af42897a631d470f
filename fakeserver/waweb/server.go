// Package waweb is a fake WhatsApp web server on 127.0.0.1 that an
// unmodified whatsmeow.Client connects to: websocket, the Noise XX
// handshake with a test certificate chain, binary nodes, <success> login,
// answers to the iqs a logged-in client sends, and delivery of the fake
// peers' messages (Conversation). It never contacts WhatsApp: the client is
// pointed at it through Client.SetWebsocketHTTPClient (HTTPClient), whose
// transport sends every request to the loopback listener whatever the URL.
package waweb

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"go.mau.fi/libsignal/keys/prekey"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waWa6"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
	"google.golang.org/protobuf/proto"

	"github.com/badmac/badmac/fakeserver"
	"github.com/badmac/badmac/fakeserver/waweb/weblog"
)

// Server is the fake WhatsApp web endpoint for one device under test.
type Server struct {
	// Core holds the prekeys every device uploaded (the peers' and the
	// device's) and hands out bundles.
	Core *fakeserver.Server

	ca     *CA
	static *keys.KeyPair
	ln     net.Listener
	http   *http.Server

	mu   sync.Mutex
	conn *conn
	// replacedConns: connections a second login replaced, left open for
	// their client to close (events.go replaced); Close closes them.
	replacedConns []*conn
	device        types.JID // from the last login
	users         map[string][]uint16
	logs          []string
	onNode        func(c *conn, n *waBinary.Node) bool // the conversation's stanzas
	onLogin       func()
	onClose       func()
	alias         func(types.JID) types.JID         // a LID device JID → the PN one its prekeys are under
	lidFor        func(types.JID) (types.JID, bool) // a PN user's LID, for usync <lid/> (migration.go)
	ownLID        string                            // the account's LID user; "": none (migration.go)
	closed        bool
	wg            sync.WaitGroup

	wire  *wire  // byte counts on both ends of every connection (wire.go)
	inbox *inbox // non-nil: nodes wait for Process (inbox.go)
	// Traffic (traffic.go): connections accepted, the latest, waiters.
	conns    int
	last     *conn
	tchanged chan struct{}
	// PreKeyCount, if set, is the count a prekey count query answers,
	// given what the server holds for the device.
	PreKeyCount func(held int) int
	// OfflineMarker sends <ib><offline count/></ib> after a login's
	// offline queue, as WhatsApp does: Baileys 6 holds every event
	// (messages.upsert included) until it comes.
	OfflineMarker bool
}

// Listen starts a server on a free port of 127.0.0.1. Clients must trust
// ca (whatsmeow.WACertPubKey = ca.Root.Pub).
func Listen(ca *CA) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("waweb: listen on 127.0.0.1: %w", err)
	}
	s := &Server{Core: fakeserver.New(), ca: ca, static: keys.NewKeyPair(), ln: ln,
		users: make(map[string][]uint16), wire: newWire()}
	s.http = &http.Server{Handler: http.HandlerFunc(s.serveWS), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.http.Serve(countedListener{Listener: ln, w: s.wire})
	}()
	return s, nil
}

// Addr is the listener's address (always on 127.0.0.1).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the listener and drops the connection.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	c := s.conn
	old := s.replacedConns
	s.replacedConns = nil
	s.mu.Unlock()
	if c != nil {
		c.close()
	}
	for _, o := range old {
		o.close()
	}
	err := s.http.Close()
	s.wg.Wait()
	return err
}

// HTTPClient is the client to give whatsmeow's Client.SetWebsocketHTTPClient:
// every request goes to this server, whatever host the URL names. The
// bytes on its connections are counted at both ends (Idle).
func (s *Server) HTTPClient() *http.Client {
	base := &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: s.wire.dialCounted}
	return &http.Client{Transport: rewrite{addr: s.ln.Addr().String(), rt: base}}
}

// HTTPClientFor is HTTPClient for a server at addr in another process. It
// refuses any address that is not on the loopback interface.
func HTTPClientFor(addr string) *http.Client {
	base := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	return &http.Client{Transport: rewrite{addr: addr, rt: base}}
}

// Idle reports whether no byte is in flight between this server and the
// clients of its HTTPClient (every connection closed at both ends or with
// every byte written read at the other), and a generation that changes
// with every byte counted.
func (s *Server) Idle() (bool, uint64) { return s.wire.idle() }

type rewrite struct {
	addr string
	rt   http.RoundTripper
}

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	host, _, err := net.SplitHostPort(r.addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("waweb: %q is not a loopback address", r.addr)
	}
	req = req.Clone(req.Context())
	u := *req.URL
	u.Scheme, u.Host = "http", r.addr
	req.URL = &url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawQuery: u.RawQuery}
	return r.rt.RoundTrip(req)
}

// AddUser registers the devices a usync device-list query returns for user.
func (s *Server) AddUser(jid types.JID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.users[jid.User] {
		if d == jid.Device {
			return
		}
	}
	s.users[jid.User] = append(s.users[jid.User], jid.Device)
}

// Logf appends one line to the server log (what the table's counts are
// checked against).
func (s *Server) Logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.logs = append(s.logs, line)
	s.mu.Unlock()
}

// Log returns the server log so far.
func (s *Server) Log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logs...)
}

// Device is the JID of the device that last logged in.
func (s *Server) Device() types.JID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.device
}

// Connected reports whether a logged-in client is connected.
func (s *Server) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil && s.conn.loggedIn
}

// Kick closes the client's connection from the server side (a network
// drop); whatsmeow reconnects by itself when auto-reconnect is on.
func (s *Server) Kick() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// send writes a node to the logged-in client. It reports false when no
// client is connected (the caller keeps the stanza for the next login).
func (s *Server) send(n waBinary.Node) bool {
	s.mu.Lock()
	c := s.conn
	ok := c != nil && c.loggedIn
	s.mu.Unlock()
	if !ok {
		return false
	}
	return c.write(n) == nil
}

type conn struct {
	s      *Server
	ws     *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc

	wmu      sync.Mutex
	wkey     cipher.AEAD
	wcount   uint32
	rkey     cipher.AEAD
	rcount   uint32
	buf      []byte
	traffic  connTraffic // guarded by s.mu
	dict     *dict       // the client's token dictionary; nil: whatsmeow's (3)
	loggedIn bool        // guarded by s.mu
	// gone: the conversation has been told this connection went
	// (onClose ran for it, or a login displaced it as a conflict);
	// guarded by s.mu.
	gone    bool
	closing sync.Once
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{"web.whatsapp.com"}})
	if err != nil {
		s.logLine(weblog.ErrAccept, err)
		return
	}
	ws.SetReadLimit(1 << 24)
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{s: s, ws: ws, ctx: ctx, cancel: cancel}
	s.accepted(c)
	defer c.close()
	if err := c.handshake(); err != nil {
		s.logLine(weblog.ErrHandshake, err)
		return
	}
	c.countHandled()
	for {
		frame, err := c.frame()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) && websocket.CloseStatus(err) == -1 {
				s.logLine(weblog.ErrRead, err)
			}
			return
		}
		pt, err := c.rkey.Open(nil, iv(c.rcount), frame, nil)
		c.rcount++
		if err != nil {
			s.logLine(weblog.ErrDecryptFrame, err)
			return
		}
		raw, err := waBinary.Unpack(pt)
		if err != nil {
			s.logLine(weblog.ErrUnpack, err)
			return
		}
		n, err := c.unmarshal(raw)
		if err != nil {
			s.logLine(weblog.ErrUnmarshal, err)
			return
		}
		if s.enqueue(c, n) {
			continue // Process answers it
		}
		s.handle(c, n)
		c.countHandled()
	}
}

// close ends the connection once; a second caller waits for the first.
// The connection counts as closed (Traffic.Closed) only after the
// server's reaction to it (onClose: the conversation's disconnect, which
// writes the history) has run, so a caller that waits for Closed sees
// the whole disconnect before it goes on: the history's order is the
// schedule's, not the goroutines'.
func (c *conn) close() {
	c.closing.Do(func() {
		c.cancel()
		_ = c.ws.CloseNow()
		c.s.mu.Lock()
		var on func()
		if c.s.conn == c {
			c.s.conn, on, c.gone = nil, c.s.onClose, true
		}
		c.s.mu.Unlock()
		if on != nil {
			on()
		}
		c.countClosed()
	})
}

// frame reads one length-prefixed frame. The client's first websocket
// message starts with the WA header, which handshake strips.
func (c *conn) frame() ([]byte, error) {
	for {
		if len(c.buf) >= 3 {
			n := int(c.buf[0])<<16 | int(c.buf[1])<<8 | int(c.buf[2])
			if len(c.buf) >= 3+n {
				f := c.buf[3 : 3+n]
				c.buf = c.buf[3+n:]
				return f, nil
			}
		}
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return nil, err
		}
		c.countRead()
		if typ != websocket.MessageBinary {
			return nil, fmt.Errorf("websocket message of type %v", typ)
		}
		c.buf = append(c.buf, data...)
	}
}

func (c *conn) writeFrame(data []byte) error {
	f := make([]byte, 3+len(data))
	f[0], f[1], f[2] = byte(len(data)>>16), byte(len(data)>>8), byte(len(data))
	copy(f[3:], data)
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, f); err != nil {
		return err
	}
	c.countWrite()
	return nil
}

func (c *conn) write(n waBinary.Node) error {
	data, err := c.marshal(n)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	ct := c.wkey.Seal(nil, iv(c.wcount), data, nil)
	c.wcount++
	return c.writeFrame(ct)
}

// marshal is waBinary.Marshal, which panics on an attribute of a type it
// does not know; that is a bug here, reported as an error.
func marshal(n waBinary.Node) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("marshal <%s>: %v", n.Tag, r)
		}
	}()
	return waBinary.Marshal(n)
}

func (c *conn) handshake() error {
	// The header (WA 6 3) comes first, then the ClientHello frame.
	for len(c.buf) < 4 {
		_, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return err
		}
		c.countRead()
		c.buf = append(c.buf, data...)
	}
	header := append([]byte(nil), c.buf[:4]...)
	if !strings.HasPrefix(string(header), "WA") {
		return fmt.Errorf("bad connection header %x", header)
	}
	c.buf = c.buf[4:]
	if err := c.useDict(header[3]); err != nil {
		return err
	}
	ns, err := newNoiseState(header)
	if err != nil {
		return err
	}
	f, err := c.frame()
	if err != nil {
		return err
	}
	var hello waWa6.HandshakeMessage
	if err := proto.Unmarshal(f, &hello); err != nil {
		return fmt.Errorf("client hello: %w", err)
	}
	ce := hello.GetClientHello().GetEphemeral()
	if len(ce) != 32 {
		return fmt.Errorf("client hello: ephemeral of %d bytes", len(ce))
	}
	clientEph := [32]byte(ce)
	ns.authenticate(ce)
	eph := keys.NewKeyPair()
	ns.authenticate(eph.Pub[:])
	if err := ns.mix(eph.Priv, &clientEph); err != nil {
		return err
	}
	encStatic := ns.encrypt(c.s.static.Pub[:])
	if err := ns.mix(c.s.static.Priv, &clientEph); err != nil {
		return err
	}
	chain, err := c.s.ca.chain(c.s.static)
	if err != nil {
		return err
	}
	encCert := ns.encrypt(chain)
	out, err := proto.Marshal(&waWa6.HandshakeMessage{ServerHello: &waWa6.HandshakeMessage_ServerHello{
		Ephemeral: eph.Pub[:], Static: encStatic, Payload: encCert}})
	if err != nil {
		return err
	}
	if err := c.writeFrame(out); err != nil {
		return err
	}
	c.countHandled() // the hello is answered; the finish comes next
	f, err = c.frame()
	if err != nil {
		return err
	}
	var fin waWa6.HandshakeMessage
	if err := proto.Unmarshal(f, &fin); err != nil {
		return fmt.Errorf("client finish: %w", err)
	}
	cs, err := ns.decrypt(fin.GetClientFinish().GetStatic())
	if err != nil || len(cs) != 32 {
		return fmt.Errorf("client finish: static key: %v (%d bytes)", err, len(cs))
	}
	clientStatic := [32]byte(cs)
	if err := ns.mix(eph.Priv, &clientStatic); err != nil {
		return err
	}
	pl, err := ns.decrypt(fin.GetClientFinish().GetPayload())
	if err != nil {
		return fmt.Errorf("client finish: payload: %w", err)
	}
	var payload waWa6.ClientPayload
	if err := proto.Unmarshal(pl, &payload); err != nil {
		return fmt.Errorf("client payload: %w", err)
	}
	if c.wkey, c.rkey, err = ns.finish(); err != nil {
		return err
	}
	if payload.Username == nil {
		// A registration (pairing) payload: not supported, devices are
		// provisioned without pairing.
		_ = c.write(waBinary.Node{Tag: "failure", Attrs: waBinary.Attrs{"reason": 401}})
		return fmt.Errorf("client payload without username: pairing is not supported")
	}
	dev := types.JID{User: fmt.Sprint(payload.GetUsername()), Device: uint16(payload.GetDevice()), Server: types.DefaultUserServer}
	s := c.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("server closed")
	}
	old := s.conn
	s.conn, s.device, c.loggedIn = c, dev, true
	s.mu.Unlock()
	if old != nil {
		s.replaced(old)
	}
	s.AddUser(dev)
	s.logLine(weblog.Login, dev)
	if err := c.write(waBinary.Node{Tag: "success", Attrs: s.successAttrs(dev)}); err != nil {
		return err
	}
	s.mu.Lock()
	f2 := s.onLogin
	s.mu.Unlock()
	if f2 != nil {
		f2()
	}
	if s.OfflineMarker {
		return c.write(waBinary.Node{Tag: "ib", Content: []waBinary.Node{{Tag: "offline", Attrs: waBinary.Attrs{"count": 0}}}})
	}
	return nil
}

func iqResult(req *waBinary.Node, content any) waBinary.Node {
	return waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{"id": req.Attrs["id"], "type": "result",
		"from": types.ServerJID}, Content: content}
}

// handle answers one node from the client.
func (s *Server) handle(c *conn, n *waBinary.Node) {
	s.mu.Lock()
	on := s.onNode
	s.mu.Unlock()
	if n.Tag == "iq" {
		s.answerIQ(c, n)
		return
	}
	if on != nil && on(c, n) {
		return
	}
	s.logLine(weblog.ErrUnhandled, n.Tag, short(n))
}

func short(n *waBinary.Node) string {
	x := n.XMLString()
	if len(x) > 200 {
		x = x[:200] + "…"
	}
	return x
}

func (s *Server) answerIQ(c *conn, n *waBinary.Node) {
	xmlns, _ := n.Attrs["xmlns"].(string)
	typ, _ := n.Attrs["type"].(string)
	var resp *waBinary.Node
	switch {
	case xmlns == "w:p" && typ == "get", xmlns == "passive" && typ == "set":
		r := iqResult(n, nil)
		resp = &r
	case xmlns == "encrypt" && typ == "get":
		if _, ok := n.GetOptionalChildByTag("count"); ok {
			dev := s.Device()
			held := len(s.Core.Unclaimed(dev.SignalAddress()))
			if s.PreKeyCount != nil {
				held = s.PreKeyCount(held)
			}
			r := iqResult(n, []waBinary.Node{{Tag: "count", Attrs: waBinary.Attrs{"value": held}}})
			resp = &r
		} else if key, ok := n.GetOptionalChildByTag("key"); ok {
			resp = s.fetchPreKeys(n, key)
		}
	case xmlns == "encrypt" && typ == "set":
		resp = s.uploadPreKeys(n)
	case xmlns == "usync" && typ == "get":
		resp = s.usync(n)
	}
	if resp == nil {
		// Never leave an iq unanswered: the client would wait 75 s.
		s.logLine(weblog.ErrUnknownIQ, short(n))
		resp = &waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{"id": n.Attrs["id"], "type": "error",
			"from": types.ServerJID}, Content: []waBinary.Node{{Tag: "error",
			Attrs: waBinary.Attrs{"code": 501, "text": "feature-not-implemented"}}}}
	}
	if err := c.write(*resp); err != nil {
		s.logLine(weblog.ErrAnswerIQ, fmt.Sprint(n.Attrs["id"]), err) // %v of the attribute, as a word
	}
}

func (s *Server) uploadPreKeys(n *waBinary.Node) *waBinary.Node {
	dev := s.Device()
	b, err := parseBundle(uint32(dev.Device), *n)
	if err != nil {
		s.logLine(weblog.ErrPreKeyUpload, err)
		return nil
	}
	var pks []*keys.PreKey
	list := n.GetChildByTag("list")
	for _, kn := range list.GetChildren() {
		k, err := parseKey(kn)
		if err != nil {
			s.logLine(weblog.ErrPreKeyUpload, err)
			return nil
		}
		pub := k.pub
		pks = append(pks, &keys.PreKey{KeyPair: keys.KeyPair{Pub: &pub}, KeyID: k.id})
	}
	// The bundle maker swaps in the one-time prekey handed out.
	s.Core.Upload(dev.SignalAddress(), func(pk *keys.PreKey) *prekey.Bundle {
		return withPreKey(b, pk)
	}, pks)
	s.logLine(weblog.PreKeysUp, dev, len(pks))
	r := iqResult(n, nil)
	return &r
}

func withPreKey(b *prekey.Bundle, pk *keys.PreKey) *prekey.Bundle {
	if pk == nil {
		return prekey.NewBundle(b.RegistrationID(), b.DeviceID(), optionalEmpty(), b.SignedPreKeyID(), nil,
			b.SignedPreKey(), b.SignedPreKeySignature(), b.IdentityKey())
	}
	return prekey.NewBundle(b.RegistrationID(), b.DeviceID(), optionalOf(pk.KeyID), b.SignedPreKeyID(),
		djb(*pk.Pub), b.SignedPreKey(), b.SignedPreKeySignature(), b.IdentityKey())
}

func (s *Server) fetchPreKeys(n *waBinary.Node, key waBinary.Node) *waBinary.Node {
	var users []waBinary.Node
	for _, u := range key.GetChildrenByTag("user") {
		jid, ok := u.Attrs["jid"].(types.JID)
		if !ok {
			s.logLine(weblog.ErrPreKeyFetch)
			return nil
		}
		b, err := s.Core.FetchBundle(s.prekeyAddress(jid))
		if err != nil {
			users = append(users, waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid},
				Content: []waBinary.Node{{Tag: "error", Attrs: waBinary.Attrs{"code": 404, "text": "item-not-found"}}}})
			s.logLine(weblog.PreKeyNone, jid)
			continue
		}
		kids := append([]waBinary.Node{{Tag: "registration", Content: be32(b.RegistrationID())}}, bundleNodes(b)...)
		users = append(users, waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid}, Content: kids})
		s.logLine(weblog.PreKeyFetch, jid)
	}
	r := iqResult(n, []waBinary.Node{{Tag: "list", Content: users}})
	return &r
}

func (s *Server) usync(n *waBinary.Node) *waBinary.Node {
	us := n.GetChildByTag("usync")
	// Devices are answered, and lid (a user's LID) once the conversation
	// gives one (lidFor, migration.go); any other protocol of the query
	// gets a user node without that child. Baileys 7 asks lid alone for a
	// phone number's LID: it gets one only in a LID schedule, for a
	// contact whose phase is not pn (devices/baileys/socketlid.go).
	_, devices := us.GetOptionalChildByTag("query", "devices")
	_, lidq := us.GetOptionalChildByTag("query", "lid")
	s.mu.Lock()
	lidFor := s.lidFor
	s.mu.Unlock()
	var out []waBinary.Node
	ul := us.GetChildByTag("list")
	for _, u := range ul.GetChildrenByTag("user") {
		jid, ok := u.Attrs["jid"].(types.JID)
		if !ok {
			return nil
		}
		var kids []waBinary.Node
		if devices {
			s.mu.Lock()
			devs := append([]uint16(nil), s.users[jid.User]...)
			s.mu.Unlock()
			var dl []waBinary.Node
			self := s.Device()
			for _, d := range devs {
				if jid.User == self.User && d == self.Device {
					continue // the asking device is not in its own list
				}
				dl = append(dl, waBinary.Node{Tag: "device", Attrs: waBinary.Attrs{"id": int(d)}})
			}
			kids = append(kids, waBinary.Node{Tag: "devices", Content: []waBinary.Node{{Tag: "device-list", Content: dl}}})
		}
		if lidq && lidFor != nil {
			if lid, ok := lidFor(jid.ToNonAD()); ok {
				kids = append(kids, waBinary.Node{Tag: "lid", Attrs: waBinary.Attrs{"val": lid}})
				s.logLine(weblog.UsyncLID, jid.ToNonAD(), lid)
			}
		}
		out = append(out, waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid.ToNonAD()}, Content: kids})
	}
	r := iqResult(n, []waBinary.Node{{Tag: "usync", Content: []waBinary.Node{{Tag: "list", Content: out}}}})
	return &r
}
