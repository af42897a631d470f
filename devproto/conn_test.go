package devproto

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A misbehaving device is an error naming the request, never a hang: the
// fake devices in testdata answer garbage, die, stay silent, answer another
// request, or greet in another protocol.
func TestMisbehavingDevices(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		script string
		want   string
	}{
		{"malformed.sh", "malformed reply to request 1 (state)"},
		{"crash.sh", "exit status 3 before answering request 1 (state); stderr: fake device: out of memory"},
		{"silent.sh", "silent for 1s after request 1 (state)"},
		{"wrongid.sh", "reply to request 99, want 1"},
		{"nohello.sh", "hello line: want v 1"},
	}
	for _, c := range cases {
		t.Run(c.script, func(t *testing.T) {
			// A short timeout only for the silent device, which is silent
			// at any speed; the others get one no loaded machine reaches,
			// so a slow start never reads as silence.
			timeout := time.Minute
			if c.script == "silent.sh" {
				timeout = time.Second
			}
			conn, err := Start(ctx, []string{"sh", filepath.Join("testdata", c.script)}, "", timeout)
			if err == nil {
				_, err = conn.Call(ctx, Request{Op: OpState})
				if !conn.Exited(10 * time.Second) {
					t.Errorf("device still running after the error")
				}
			}
			if err == nil {
				t.Fatalf("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestParseReplyValidates(t *testing.T) {
	req := Request{V: 1, ID: 4, Op: OpDecrypt}
	cases := []struct {
		line, want string
	}{
		{`{"v":1,"id":4,"ok":true,"events":[{"task":"m1","gate":"g1","call":"get session alice.0"}]}`, ""},
		{`{"v":1,"id":4,"ok":true,"events":[{"task":"m1","done":true,"ok":false,"class":"BadMAC","err":"Bad MAC"}]}`, ""},
		{`{"v":1,"id":4,"ok":false,"err":"no such task","events":[]}`, ""},
		{`{"v":1,"id":4,"ok":true,"events":[],"extra":1}`, "unknown field"},
		{`{"v":2,"id":4,"ok":true,"events":[]}`, "protocol version 2"},
		{`{"v":1,"id":4,"ok":false,"events":[]}`, "failed reply without err"},
		{`{"v":1,"id":4,"ok":true,"events":[{"task":"m1"}]}`, "exactly one of gate and done"},
		{`{"v":1,"id":4,"ok":true,"events":[{"task":"m1","gate":"g1"}]}`, "gate without call"},
		{`{"v":1,"id":4,"ok":true,"events":[{"task":"m1","done":true,"ok":false,"class":"Oops"}]}`, "unknown class"},
		{`{"v":1,"id":4,"ok":true,"events":[{"task":"m1","done":true,"ok":true}]}`, "neither pt nor ct"},
		{`{"v":1,"id":4,"ok":true,"events":[{"task":"r1","done":true,"ok":true,"kind":"skmsg","ct":"AA=="}]}`, "ciphertext of kind"},
		{`{"v":1,"id":4,"ok":true,"events":[]} {}`, "trailing data"},
	}
	for _, c := range cases {
		_, err := ParseReply([]byte(c.line), req)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.line, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", c.line, err, c.want)
		}
	}
	// Replies that carry credentials are checked for them.
	if _, err := ParseReply([]byte(`{"v":1,"id":4,"ok":true,"events":[]}`), Request{ID: 4, Op: OpState}); err == nil ||
		!strings.Contains(err.Error(), "no creds") {
		t.Errorf("state reply without creds: %v", err)
	}
}
