package baileys

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	rn, err := NewRunner(ctx, "6.17.16", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rn.Close()
	for _, v := range []string{"stock", "seedfix", "locked"} {
		o, err := rn.Run(ctx, &Schedule{Device: "baileys@6.17.16", Variant: v, Scenario: "reply", Seed: 1, Contacts: []string{"alice"}})
		if err != nil {
			t.Fatal(err)
		}
		c := o.Result.Counts()
		fmt.Println(v, c.Messages, c.Delivered, c.Blamed, c.Failures, o.Result.Summary())
		if testing.Verbose() {
			fmt.Println(strings.Join(o.Result.History, "\n"))
		}
	}
}
