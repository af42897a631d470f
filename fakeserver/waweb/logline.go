package waweb

import "github.com/badmac/badmac/fakeserver/waweb/weblog"

// logLine appends one line of kind k to the server log, in k's format
// (weblog: the server's line formats, written and read back through one
// table; TestEveryWriterUsesAFormat fails on any other Logf here).
func (s *Server) logLine(k weblog.Kind, args ...any) { s.Logf("%s", weblog.Format(k, args...)) }
