package devproto

import "testing"

// A Node process that died of an uncaught error ends its stderr with the
// stack and "Node.js vX": the error's line is what an exit reports.
func TestTailLast(t *testing.T) {
	for in, want := range map[string]string{
		"one\ntwo\n":    "two",
		"":              "",
		"only one line": "only one line",
		"/x/auth.js:12\n    throw e\n    ^\n\nTypeError: Cannot read properties of null (reading 'x')\n    at get (/x/auth.js:12:5)\n    at async Promise.all (index 0)\n\nNode.js v20.20.2\n":                                                                                               "TypeError: Cannot read properties of null (reading 'x')",
		"node:events:497\n      throw er; // Unhandled 'error' event\n      ^\n\nError: Socket closed unexpectedly\n    at Socket.<anonymous> (/x/socket.js:194:118)\nEmitted 'error' event on Commander instance at:\n    at RedisSocket.<anonymous> (/x/index.js:1:2)\n\nNode.js v20.20.2": "Error: Socket closed unexpectedly",
	} {
		var b tailBuffer
		b.Write([]byte(in))
		if got := b.last(); got != want {
			t.Errorf("last(%q) = %q, want %q", in, got, want)
		}
	}
}
