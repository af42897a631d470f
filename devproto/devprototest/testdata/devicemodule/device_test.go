// A device author's module: their device speaks the device protocol on
// stdin and stdout, and one test of theirs runs the conformance suite on
// it. Here the device is badmac's Go device (a correct one) and a device
// that answers the hello with a protocol version it does not speak.
package mydevice

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/badmac/badmac/devices/godevice"
	"github.com/badmac/badmac/devproto/devprototest"
)

func TestMain(m *testing.M) {
	switch os.Getenv("MY_DEVICE") {
	case "good":
		if err := godevice.Serve(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Exit(2)
		}
		os.Exit(0)
	case "v2":
		fmt.Println(`{"v":2,"hello":"badmac device v2","device":"mine","variant":"concurrent"}`)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestGood(t *testing.T) {
	t.Setenv("MY_DEVICE", "good")
	devprototest.TestDevice(t, []string{os.Args[0]}, devprototest.Options{Variant: "concurrent"})
}

func TestWrongVersion(t *testing.T) {
	t.Setenv("MY_DEVICE", "v2")
	devprototest.TestDevice(t, []string{os.Args[0]}, devprototest.Options{Variant: "concurrent"})
}
