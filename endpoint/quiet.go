package endpoint

import "go.mau.fi/libsignal/logger"

// libsignal logs every MAC failure to stdout through a package-level logger;
// badmac's output must be clean and deterministic, so install a silent one.
type silent struct{}

func (silent) Debug(caller, msg string)   {}
func (silent) Info(caller, msg string)    {}
func (silent) Warning(caller, msg string) {}
func (silent) Error(caller, msg string)   {}
func (silent) Configure(settings string)  {}

func init() {
	var l logger.Loggable = silent{}
	logger.Setup(&l)
}
