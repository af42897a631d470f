package devprototest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/badmac/badmac/devices/godevice"
	"github.com/badmac/badmac/devproto/devprototest"
)

// TestMain lets the test binary be the Go device (godevice), or a broken
// variant of it: BADMAC_FAKE names the break, applied to its output lines.
func TestMain(m *testing.M) {
	if fake, ok := os.LookupEnv("BADMAC_FAKE"); ok {
		os.Exit(serveFake(fake))
	}
	os.Exit(m.Run())
}

// breaks are the broken devices: each rewrites one line the correct
// device wrote (n counts lines from 0, the hello).
var breaks = map[string]func(n int, line map[string]any){
	"wrong-version": func(n int, l map[string]any) {
		if n == 0 {
			l["hello"] = "badmac device v2"
		}
	},
	"id-not-echoed": func(n int, l map[string]any) {
		if n == 3 {
			l["id"] = l["id"].(float64) + 1
		}
	},
	"unknown-field": func(n int, l map[string]any) {
		if n == 2 {
			l["extra"] = true
		}
	},
	"wrong-plaintext": func(_ int, l map[string]any) {
		evs, _ := l["events"].([]any)
		for _, e := range evs {
			if ev := e.(map[string]any); ev["done"] == true && ev["pt"] != nil {
				ev["pt"] = "d3Jvbmc=" // "wrong"
			}
		}
	},
	"accepts-anything": func(_ int, l map[string]any) { // refuses nothing
		if l["ok"] == false {
			l["ok"] = true
			delete(l, "err")
		}
	},
}

func serveFake(name string) int {
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for n := 0; sc.Scan(); n++ {
			var l map[string]any
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				panic(err)
			}
			if b := breaks[name]; b != nil {
				b(n, l)
			}
			out, _ := json.Marshal(l)
			os.Stdout.Write(append(out, '\n'))
		}
	}()
	err := godevice.Serve(context.Background(), os.Stdin, pw)
	pw.Close()
	wg.Wait()
	if err != nil {
		fmt.Fprintln(os.Stderr, "godevice:", err)
		return 2
	}
	return 0
}

// The correct device passes.
func TestGoDevice(t *testing.T) {
	t.Setenv("BADMAC_FAKE", "")
	devprototest.TestDevice(t, []string{os.Args[0]}, devprototest.Options{Variant: "concurrent"})
}

// Every broken device is reported, with the break named in the failure.
func TestBrokenDevicesFail(t *testing.T) {
	for name, want := range map[string]string{
		"wrong-version":    `want v 1 "badmac device v1"`,
		"id-not-echoed":    "reply to request 4, want 3",
		"unknown-field":    `unknown field "extra"`,
		"wrong-plaintext":  "decrypt m1: plaintext",
		"accepts-anything": "reset accepted an unknown variant",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("BADMAC_FAKE", name)
			failures := devprototest.Failures(t, []string{os.Args[0]}, devprototest.Options{Variant: "concurrent"})
			if len(failures) == 0 {
				t.Fatalf("the suite passed a device broken by %s", name)
			}
			if !strings.Contains(strings.Join(failures, "\n"), want) {
				t.Errorf("failures do not say %q:\n%s", want, strings.Join(failures, "\n"))
			}
			t.Logf("reported: %s", failures[0])
		})
	}
}
