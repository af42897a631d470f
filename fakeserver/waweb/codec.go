package waweb

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/binary/token"
	"go.mau.fi/whatsmeow/types"
)

// A binary-node codec for a token dictionary other than whatsmeow's. The
// wire format of WhatsApp web's nodes is one grammar (list sizes, string
// tokens, dictionary pages, raw bytes, packed nibbles and hex, JIDs); only
// the token lists differ between dictionary versions, and the client names
// its version in the last byte of the connection header. whatsmeow's own
// encoder and decoder (go.mau.fi/whatsmeow/binary) are bound to version 3,
// so a connection that asks for another version (Baileys 6.x asks for 2)
// goes through this codec with that version's lists. The grammar and the
// value types mirror whatsmeow's (binary/encoder.go, decoder.go at the
// pinned commit): JIDs decode as types.JID, attribute values as strings,
// binary content as []byte. Version 3 is never routed here; the tests run
// this codec on version 3's lists against whatsmeow's to check the grammar.

type dict struct {
	single []string
	double [][]string
	sIdx   map[string]byte
	dIdx   map[string][2]byte
}

func newDict(single []string, double [][]string) *dict {
	d := &dict{single: single, double: double, sIdx: map[string]byte{}, dIdx: map[string][2]byte{}}
	for i, s := range single {
		if s != "" {
			d.sIdx[s] = byte(i)
		}
	}
	for p, page := range double {
		for i, s := range page {
			d.dIdx[s] = [2]byte{byte(p), byte(i)}
		}
	}
	return d
}

// dicts are the dictionary versions this server speaks besides
// whatsmeow's own (3).
var dicts = map[byte]*dict{2: dict2}

var errCodec = errors.New("binary node")

// marshal encodes n with the dictionary (the leading 0 byte: uncompressed).
func (d *dict) marshal(n waBinary.Node) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: marshal <%s>: %v", errCodec, n.Tag, r)
		}
	}()
	e := &encoder{d: d, b: []byte{0}}
	e.node(n)
	return e.b, nil
}

type encoder struct {
	d *dict
	b []byte
}

func (e *encoder) int(v, n int) {
	for i := n - 1; i >= 0; i-- {
		e.b = append(e.b, byte(v>>(8*i)))
	}
}

func (e *encoder) listStart(n int) {
	switch {
	case n == 0:
		e.b = append(e.b, token.ListEmpty)
	case n < 256:
		e.b = append(e.b, token.List8, byte(n))
	default:
		e.b = append(e.b, token.List16)
		e.int(n, 2)
	}
}

func (e *encoder) node(n waBinary.Node) {
	if n.Tag == "0" {
		e.b = append(e.b, token.List8, token.ListEmpty)
		return
	}
	attrs := 0
	for _, v := range n.Attrs {
		if v != nil && v != "" {
			attrs++
		}
	}
	size := 2*attrs + 1
	if n.Content != nil {
		size++
	}
	e.listStart(size)
	e.str(n.Tag)
	for k, v := range n.Attrs {
		if v == nil || v == "" {
			continue
		}
		e.str(k)
		e.value(v)
	}
	if n.Content != nil {
		e.value(n.Content)
	}
}

func (e *encoder) value(v any) {
	switch x := v.(type) {
	case nil:
		e.b = append(e.b, token.ListEmpty)
	case types.JID:
		e.jid(x)
	case string:
		e.str(x)
	case int:
		e.str(strconv.Itoa(x))
	case int32:
		e.str(strconv.FormatInt(int64(x), 10))
	case int64:
		e.str(strconv.FormatInt(x, 10))
	case uint:
		e.str(strconv.FormatUint(uint64(x), 10))
	case uint32:
		e.str(strconv.FormatUint(uint64(x), 10))
	case uint64:
		e.str(strconv.FormatUint(x, 10))
	case bool:
		e.str(strconv.FormatBool(x))
	case []byte:
		e.raw(x)
	case []waBinary.Node:
		e.listStart(len(x))
		for _, c := range x {
			e.node(c)
		}
	default:
		panic(fmt.Sprintf("value of type %T", v))
	}
}

func (e *encoder) raw(b []byte) {
	switch n := len(b); {
	case n < 256:
		e.b = append(e.b, token.Binary8, byte(n))
	case n < 1<<20:
		e.b = append(e.b, token.Binary20, byte(n>>16&0x0f), byte(n>>8), byte(n))
	case n < math.MaxInt32:
		e.b = append(e.b, token.Binary32)
		e.int(n, 4)
	default:
		panic(fmt.Sprintf("%d bytes", n))
	}
	e.b = append(e.b, b...)
}

func (e *encoder) str(s string) {
	if i, ok := e.d.sIdx[s]; ok {
		e.b = append(e.b, i)
	} else if p, ok := e.d.dIdx[s]; ok {
		e.b = append(e.b, token.Dictionary0+p[0], p[1])
	} else if packable(s, "0123456789-.") {
		e.packed(s, token.Nibble8)
	} else if packable(s, "0123456789ABCDEF") {
		e.packed(s, token.Hex8)
	} else {
		e.raw([]byte(s))
	}
}

func packable(s, alphabet string) bool {
	if len(s) > token.PackedMax {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune(alphabet, c) {
			return false
		}
	}
	return true
}

func (e *encoder) packed(s string, tag byte) {
	e.b = append(e.b, tag)
	n := byte((len(s) + 1) / 2)
	if len(s)%2 != 0 {
		n |= 128
		s += "\x00"
	}
	e.b = append(e.b, n)
	for i := 0; i < len(s); i += 2 {
		e.b = append(e.b, pack(tag, s[i])<<4|pack(tag, s[i+1]))
	}
}

func pack(tag, c byte) byte {
	switch {
	case c == 0:
		return 15
	case c >= '0' && c <= '9':
		return c - '0'
	case tag == token.Nibble8 && c == '-':
		return 10
	case tag == token.Nibble8 && c == '.':
		return 11
	case tag == token.Hex8 && c >= 'A' && c <= 'F':
		return 10 + c - 'A'
	}
	panic(fmt.Sprintf("cannot pack %q", c))
}

func (e *encoder) jid(j types.JID) {
	switch {
	case (j.Server == types.DefaultUserServer || j.Server == types.HiddenUserServer) && j.Device > 0,
		j.Server == types.HostedServer, j.Server == types.HostedLIDServer:
		e.b = append(e.b, token.ADJID, j.ActualAgent(), byte(j.Device))
		e.str(j.User)
	case j.Server == types.MessengerServer:
		e.b = append(e.b, token.FBJID)
		e.value(j.User)
		e.int(int(j.Device), 2)
		e.value(j.Server)
	case j.Server == types.InteropServer:
		e.b = append(e.b, token.InteropJID)
		e.value(j.User)
		e.int(int(j.Device), 2)
		e.int(int(j.Integrator), 2)
		e.value(j.Server)
	default:
		e.b = append(e.b, token.JIDPair)
		if j.User == "" {
			e.b = append(e.b, token.ListEmpty)
		} else {
			e.value(j.User)
		}
		e.value(j.Server)
	}
}

// unmarshal decodes one node (already unpacked: no leading flag byte).
func (d *dict) unmarshal(data []byte) (*waBinary.Node, error) {
	r := &decoder{d: d, b: data}
	n, err := r.node()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCodec, err)
	}
	if r.i != len(r.b) {
		return nil, fmt.Errorf("%w: %d leftover bytes", errCodec, len(r.b)-r.i)
	}
	return n, nil
}

type decoder struct {
	d *dict
	b []byte
	i int
}

var errEOS = errors.New("end of stream")

func (r *decoder) bytes(n int) ([]byte, error) {
	if n < 0 || r.i+n > len(r.b) {
		return nil, errEOS
	}
	b := r.b[r.i : r.i+n]
	r.i += n
	return b, nil
}

func (r *decoder) int(n int) (int, error) {
	b, err := r.bytes(n)
	v := 0
	for _, c := range b {
		v = v<<8 | int(c)
	}
	return v, err
}

func (r *decoder) listSize(tag int) (int, error) {
	switch tag {
	case token.ListEmpty:
		return 0, nil
	case token.List8:
		return r.int(1)
	case token.List16:
		return r.int(2)
	}
	return 0, fmt.Errorf("list size with tag %d at %d", tag, r.i)
}

func (r *decoder) node() (*waBinary.Node, error) {
	t, err := r.int(1)
	if err != nil {
		return nil, err
	}
	size, err := r.listSize(t)
	if err != nil {
		return nil, err
	}
	tag, err := r.read(true)
	if err != nil {
		return nil, err
	}
	n := &waBinary.Node{}
	n.Tag, _ = tag.(string)
	if size == 0 || n.Tag == "" {
		return nil, fmt.Errorf("invalid node at %d", r.i)
	}
	if k := (size - 1) / 2; k > 0 {
		n.Attrs = make(waBinary.Attrs, k)
		for range k {
			key, err := r.read(true)
			if err != nil {
				return nil, err
			}
			ks, ok := key.(string)
			if !ok {
				return nil, fmt.Errorf("attribute key of type %T at %d", key, r.i)
			}
			if n.Attrs[ks], err = r.read(true); err != nil {
				return nil, err
			}
		}
	}
	if size%2 == 0 {
		n.Content, err = r.read(false)
	}
	return n, err
}

// read is one value: a string (asString) or bytes, a JID, or a list.
func (r *decoder) read(asString bool) (any, error) {
	t, err := r.int(1)
	if err != nil {
		return nil, err
	}
	switch t {
	case token.ListEmpty:
		return nil, nil
	case token.List8, token.List16:
		size, err := r.listSize(t)
		if err != nil {
			return nil, err
		}
		list := make([]waBinary.Node, size)
		for i := range list {
			n, err := r.node()
			if err != nil {
				return nil, err
			}
			list[i] = *n
		}
		return list, nil
	case token.Binary8, token.Binary20, token.Binary32:
		var n int
		switch t {
		case token.Binary8:
			n, err = r.int(1)
		case token.Binary20:
			n, err = r.int(3)
			n &= 0x0fffff
		default:
			n, err = r.int(4)
		}
		if err != nil {
			return nil, err
		}
		b, err := r.bytes(n)
		if err != nil || !asString {
			return b, err
		}
		return string(b), nil
	case token.Dictionary0, token.Dictionary1, token.Dictionary2, token.Dictionary3:
		i, err := r.int(1)
		if err != nil {
			return nil, err
		}
		page := t - token.Dictionary0
		if page >= len(r.d.double) || i >= len(r.d.double[page]) {
			return nil, fmt.Errorf("double-byte token %d/%d", page, i)
		}
		return r.d.double[page][i], nil
	case token.JIDPair:
		user, err := r.read(true)
		if err != nil {
			return nil, err
		}
		server, err := r.read(true)
		if err != nil {
			return nil, err
		}
		s, ok := server.(string)
		if !ok {
			return nil, fmt.Errorf("jid pair without server at %d", r.i)
		}
		u, _ := user.(string)
		return types.NewJID(u, s), nil
	case token.ADJID:
		b, err := r.bytes(2)
		if err != nil {
			return nil, err
		}
		user, err := r.read(true)
		if err != nil {
			return nil, err
		}
		u, _ := user.(string)
		return types.NewADJID(u, b[0], b[1]), nil
	case token.FBJID, token.InteropJID:
		user, err := r.read(true)
		if err != nil {
			return nil, err
		}
		dev, err := r.int(2)
		if err != nil {
			return nil, err
		}
		integrator := 0
		if t == token.InteropJID {
			if integrator, err = r.int(2); err != nil {
				return nil, err
			}
		}
		server, err := r.read(true)
		if err != nil {
			return nil, err
		}
		u, _ := user.(string)
		s, _ := server.(string)
		return types.JID{User: u, Device: uint16(dev), Integrator: uint16(integrator), Server: s}, nil
	case token.Nibble8, token.Hex8:
		return r.packed(t)
	}
	if t >= 1 && t < len(r.d.single) {
		return r.d.single[t], nil
	}
	return nil, fmt.Errorf("invalid token %d at %d", t, r.i)
}

func (r *decoder) packed(tag int) (string, error) {
	start, err := r.int(1)
	if err != nil {
		return "", err
	}
	b, err := r.bytes(start & 127)
	if err != nil {
		return "", err
	}
	var s strings.Builder
	for _, c := range b {
		for _, v := range []byte{c >> 4, c & 15} {
			switch {
			case v < 10:
				s.WriteByte('0' + v)
			case tag == token.Hex8:
				s.WriteByte('A' + v - 10)
			case v == 10:
				s.WriteByte('-')
			case v == 11:
				s.WriteByte('.')
			case v == 15:
				s.WriteByte(0)
			default:
				return "", fmt.Errorf("invalid nibble %d", v)
			}
		}
	}
	out := s.String()
	if start>>7 != 0 && len(out) > 0 {
		out = out[:len(out)-1]
	}
	return out, nil
}

// useDict sets the connection's dictionary from the header's last byte.
func (c *conn) useDict(version byte) error {
	if version == token.DictVersion {
		return nil
	}
	d, ok := dicts[version]
	if !ok {
		return fmt.Errorf("connection header asks for token dictionary %d (this server speaks 2 and %d)", version, token.DictVersion)
	}
	c.dict = d
	return nil
}

func (c *conn) marshal(n waBinary.Node) ([]byte, error) {
	if c.dict != nil {
		return c.dict.marshal(n)
	}
	return marshal(n)
}

func (c *conn) unmarshal(raw []byte) (*waBinary.Node, error) {
	if c.dict != nil {
		return c.dict.unmarshal(raw)
	}
	return waBinary.Unmarshal(raw)
}
