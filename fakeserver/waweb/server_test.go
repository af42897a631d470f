package waweb

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestListensOnLoopbackOnly(t *testing.T) {
	srv, err := Listen(DefaultCA())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok || !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("listener on %v, want 127.0.0.1", srv.Addr())
	}
	// Whatever the URL says, the dial hook goes to the listener.
	resp, err := srv.HTTPClient().Get("http://web.whatsapp.com/ws/chat")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("a plain GET was served as %d; the endpoint only upgrades websockets", resp.StatusCode)
	}
}

func TestDialHookRefusesNonLoopback(t *testing.T) {
	_, err := HTTPClientFor("192.0.2.1:443").Get("http://web.whatsapp.com/ws/chat")
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("err = %v, want a refusal", err)
	}
}
