package bench

import (
	"testing"

	"github.com/google/pprof/profile"
)

func stack(fns ...string) *profile.Sample {
	s := &profile.Sample{}
	for _, fn := range fns { // leaf first
		s.Location = append(s.Location, &profile.Location{Line: []profile.Line{{Function: &profile.Function{Name: fn}}}})
	}
	return s
}

// A sample is charged to the leaf-most frame with an owner: allocation
// and formatting to whoever asked for them.
func TestClassify(t *testing.T) {
	for want, s := range map[string]*profile.Sample{
		CatLogger:  stack("runtime.pcvalue", "runtime.Caller", "go.mau.fi/libsignal/logger.getCaller", "go.mau.fi/libsignal/logger.Debug", "go.mau.fi/libsignal/session.(*Cipher).Encrypt"),
		CatJSON:    stack("runtime.mallocgc", "encoding/json.(*decodeState).object", "go.mau.fi/libsignal/serialize.(*JSONSessionSerializer).Deserialize"),
		CatCrypto:  stack("crypto/internal/fips140/sha256.blockSHANI", "crypto/hmac.New", "go.mau.fi/libsignal/kdf.DeriveSecrets"),
		CatStore:   stack("runtime.memmove", "github.com/badmac/badmac/stores.(*Memory).Get", "github.com/badmac/badmac/endpoint.(*Probe).GetSession"),
		CatHarness: stack("runtime.concatstrings", "github.com/badmac/badmac/harness.(*Run).newDevices.func2", "github.com/badmac/badmac/endpoint.(*Probe).enter"),
		CatGC:      stack("runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker.func2", "runtime.systemstack"),
		CatRuntime: stack("runtime.futex", "runtime.schedule", "runtime.mcall"),
	} {
		if got := classify(s); got != want {
			t.Errorf("%s: got %q, want %q", s.Location[len(s.Location)-1].Line[0].Function.Name, got, want)
		}
	}
}
