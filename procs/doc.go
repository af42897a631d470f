// Package procs runs the device under test as a real child process on a real
// database (docs/design.md §7): the parent holds the fake peer, the server and the
// oracle; the child (`badmac device`) holds the device's store and does its
// decrypts and encrypts; the child is killed with SIGKILL, restarted on the
// same database, and driven on. What the oracle sees afterwards is what the database really made
// durable, not a model of it.
//
// One driver uses the child: Device, the harness's device interface
// (docs/design.md §4.1): the harness's scenarios run on the child
// unchanged, judged by the harness's oracle. Without gates each request
// runs whole; with gates (procs+gates, the child's -gates) every store call
// of a request waits for the harness's step, so a SIGKILL lands inside a
// request and two processes on one database have requests in flight at
// once (`badmac procs` is a preset of run -device procs+gates).
//
// Parent and child speak the device protocol, v1 (package devproto,
// docs/device-protocol.md "The whatsmeow child"): the child's hello, then
// one request on its stdin and one reply on its stdout, strictly in turn;
// the parent is a devproto.Conn. The child passes the protocol's
// conformance suite (devproto/devprototest).
package procs
