package fakeserver

import (
	"reflect"
	"testing"
)

// FuzzDecodePayload: any plaintext a device returns (a wrong key can
// decrypt to anything) gives a payload or an error, never a panic, and a
// payload that decodes survives Encode.
func FuzzDecodePayload(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePayload(b)
		if err != nil {
			return
		}
		again, err := DecodePayload(p.Encode())
		if len(again.SKDM) == 0 && len(p.SKDM) == 0 {
			again.SKDM, p.SKDM = nil, nil
		}
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("%q: decoded %+v, after Encode %+v, %v", b, p, again, err)
		}
	})
}
