package devproto

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The whatsmeow child's fields are checked on the replies they belong to,
// both ways: what the child sends passes, each misplaced field is caught.
func TestParseReplyChildFields(t *testing.T) {
	dec := Request{V: 1, ID: 2, Op: OpDecrypt, StopAt: 3}
	enc := Request{V: 1, ID: 2, Op: OpEncrypt}
	state := Request{V: 1, ID: 2, Op: OpState, IDs: []uint32{1, 2}}
	step := Request{V: 1, ID: 2, Op: OpStep, Gate: "g4"}
	creds := `"creds":{"reg":1,"identity":"` + b64(32) + `","spk_id":1,"spk":"` + b64(32) + `","sig":"` + b64(64) + `"}`
	cases := []struct {
		req        Request
		line, want string
	}{
		{dec, `{"v":1,"id":2,"ok":true,"stopped":true,"step":3,"writes":5,"events":[]}`, ""},
		{dec, `{"v":1,"id":2,"ok":true,"receipt":2,"prekey":{"id":9,"pub":"` + b64(32) + `"},"events":[{"task":"m1","done":true,"class":"BadMAC","err":"x"}]}`, ""},
		{enc, `{"v":1,"id":2,"ok":true,"dropped":true,"events":[]}`, ""},
		{enc, `{"v":1,"id":2,"ok":true,"reason":"no session","events":[{"task":"r1","done":true,"class":"NoSession","err":"x","need_bundle":true}]}`, ""},
		{state, `{"v":1,"id":2,"ok":true,` + creds + `,"prekeys":[{"id":2,"pub":"` + b64(32) + `"}],"events":[]}`, ""},
		// With gates a task's end, and its fields, come on a step's reply.
		{step, `{"v":1,"id":2,"ok":true,"receipt":1,"events":[{"task":"m1","done":true,"class":"BadMAC","err":"x"}]}`, ""},
		{step, `{"v":1,"id":2,"ok":true,"reason":"no session","events":[{"task":"r1","done":true,"class":"NoSession","err":"x","need_bundle":true}]}`, ""},
		{step, `{"v":1,"id":2,"ok":true,"dropped":true,"events":[]}`, "dropped or reason on a step"},
		{step, `{"v":1,"id":2,"ok":true,"reason":"x","events":[{"task":"r1","done":true,"class":"Other","err":"x"}]}`, "reason without a need_bundle end"},
		{enc, `{"v":1,"id":2,"ok":true,"stopped":true,"step":1,"events":[]}`, "without stop_at"},
		{dec, `{"v":1,"id":2,"ok":true,"stopped":true,"step":0,"events":[]}`, "stopped reply"},
		{dec, `{"v":1,"id":2,"ok":true,"step":2,"events":[]}`, "step without stopped"},
		{dec, `{"v":1,"id":2,"ok":true,"receipt":5,"events":[]}`, "retry receipt count 5"},
		{enc, `{"v":1,"id":2,"ok":true,"receipt":1,"events":[]}`, "retry receipt on a encrypt reply"},
		{dec, `{"v":1,"id":2,"ok":true,"prekey":{"id":9,"pub":"` + b64(32) + `"},"events":[]}`, "prekey outside"},
		{dec, `{"v":1,"id":2,"ok":true,"dropped":true,"events":[]}`, "dropped or reason on a decrypt"},
		{enc, `{"v":1,"id":2,"ok":true,"dropped":true,"events":[{"task":"r1","done":true,"class":"Other","err":"x"}]}`, "no task runs"},
		{enc, `{"v":1,"id":2,"ok":true,"reason":"x","events":[{"task":"r1","done":true,"class":"Other","err":"x"}]}`, "reason without a need_bundle end"},
		{state, `{"v":1,"id":2,"ok":true,` + creds + `,"prekeys":[{"id":7,"pub":"` + b64(32) + `"}],"events":[]}`, "prekey 7 was not asked for"},
	}
	for _, c := range cases {
		_, err := ParseReply([]byte(c.line), c.req)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.line, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", c.line, err, c.want)
		}
	}
}

func b64(n int) string {
	return strings.Repeat("A", n/3*4) + map[int]string{0: "", 1: "AA==", 2: "AAA="}[n%3]
}

// Requests are read strictly, and a bad one keeps its id so that a device
// can refuse it with a reply.
func TestParseRequest(t *testing.T) {
	if req, err := ParseRequest([]byte(`{"v":1,"id":3,"op":"decrypt","task":"m1","stop_at":2}`)); err != nil || req.StopAt != 2 {
		t.Errorf("good request: %+v, %v", req, err)
	}
	for line, want := range map[string]string{
		`{"v":1,"id":3,"op":"decrypt","bogus":1}`: `unknown field "bogus"`,
		`{"v":2,"id":3,"op":"decrypt"}`:           "bad request",
		`{"v":1,"id":3}`:                          "bad request",
	} {
		req, err := ParseRequest([]byte(line))
		if err == nil || !strings.Contains(err.Error(), want) || req.ID != 3 {
			t.Errorf("%s: id %d, error %v; want id 3 and %q", line, req.ID, err, want)
		}
	}
}

// A device that dies of SIGKILL before answering is Killed (a crash the
// harness expects); one that exits otherwise is not.
func TestKilled(t *testing.T) {
	ctx := context.Background()
	for script, want := range map[string]bool{"selfkill.sh": true, "crash.sh": false} {
		conn, err := Start(ctx, []string{"sh", filepath.Join("testdata", script)}, "", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.Call(ctx, Request{Op: OpState})
		if err == nil || Killed(err) != want {
			t.Errorf("%s: error %v, Killed %v, want %v", script, err, Killed(err), want)
		}
	}
}
