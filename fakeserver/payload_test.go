package fakeserver

import (
	"reflect"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, p := range []Payload{{ID: "m1", Body: "hello m1"}, {ID: "g2", Body: "", SKDM: []byte{0, 1, 2, 0xff}}, {}} {
		got, err := DecodePayload(p.Encode())
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("%+v: got %+v, %v", p, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {5, 'a'}, {1, 'a', 9}} {
		if _, err := DecodePayload(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}
