package realclient_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/badmac/badmac/devices"
)

// devices.Open knows the real client by its names, with the stores its
// rows run on by default.
func TestDevicesOpenRealClient(t *testing.T) {
	for _, c := range []struct {
		name   string
		stores []string
	}{{"client-inline", []string{"reference", "sqlite"}}, {"client-async", []string{"reference", "sqlite"}},
		{"client-async+buffer", []string{"sqlite"}}} {
		d, err := devices.Open(context.Background(), c.name, devices.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Device == nil || d.Name() != c.name || !slices.Equal(d.Stores, c.stores) {
			t.Errorf("Open(%q): device %v, stores %v; want %s on %v", c.name, d.Device, d.Stores, c.name, c.stores)
		}
		d.Close()
	}
	if _, err := devices.Open(context.Background(), "client-sync", devices.Options{}); err == nil || !strings.Contains(err.Error(), "client-inline|client-async") {
		t.Errorf("Open(client-sync): err = %v, want unknown device listing the client names", err)
	}
}
