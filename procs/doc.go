// Package procs runs the device under test as a real child process on a real
// database (docs/design.md §7): the parent holds the fake peer, the server and the
// oracle; the child (`badmac device`) holds the device's store and does its
// decrypts and encrypts; the child is killed with SIGKILL at a failpoint
// (right after its Nth store write), restarted on the same database, and
// driven on. What the oracle sees afterwards is what the database really made
// durable, not a model of it.
//
// Two drivers use the child: Converse (`badmac procs`: a conversation of
// its own, killed at a failpoint inside a request, and ConverseReplicas,
// requests to two processes in flight at once) and Device, the harness's
// device interface (docs/design.md §4.1): the harness's scenarios run on
// the child unchanged, request by request, judged by the harness's oracle.
//
// Parent and child speak the device protocol, v1 (package devproto,
// docs/device-protocol.md "The whatsmeow child"): the child's hello, then
// one request on its stdin and one reply on its stdout, strictly in turn;
// the parent is a devproto.Conn. The child passes the protocol's
// conformance suite (devproto/devprototest).
package procs
