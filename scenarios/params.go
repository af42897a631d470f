package scenarios

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/badmac/badmac/harness"
)

// Scenario parameters reshape a scenario's workload on its name:
// reply:messages=30:contacts=2:burst=4:reply=1 is the scenario reply with
// 30 messages from two contacts, sent in bursts of at most 4, and a reply
// to every one. The parameters are part of the name, so the schedule's
// header (scenario NAME) carries them and a replay file names the
// workload it was generated from; Lookup reads them back. The name is
// canonical: parameters in the order below, each once.
//
//	messages=N  messages the contacts send (1..maxParamMessages)
//	contacts=N  contacts, one device each (1..len(contactNames)):
//	            alice, bob, carol, dave
//	burst=K     the contacts send in bursts of 1..K messages (seeded), the
//	            next burst only once every queued stanza is delivered and
//	            every reply read (1..100); 1 is one message at a time
//	reply=P     the chance the bot replies to each message (0..1)
//	drop=P      the chance the server drops the connection during each
//	            burst (each message without burst=K): once it is sent, at
//	            a random point among its deliveries, replies and reads,
//	            before the next burst (maybeDrop): the op drop, which
//	            the real client implements (whatsmeow reconnects, the
//	            server redelivers what was not acknowledged) and the model
//	            refuses
var paramKeys = []string{"messages", "contacts", "burst", "reply", "drop"}

// maxParamMessages bounds messages=N: a schedule's ops grow with it
// (maxOps).
const maxParamMessages = 1000

// contactNames are the contacts contacts=N gives, in order.
var contactNames = []string{"alice", "bob", "carol", "dave"}

// withParams returns sc reshaped by the parameters ps (the name after the
// scenario's, split on ':'), named canonically.
func withParams(sc Scenario, ps []string) (Scenario, error) {
	vals := map[string]string{}
	for _, p := range ps {
		k, v, ok := strings.Cut(p, "=")
		known := false
		for _, pk := range paramKeys {
			known = known || pk == k
		}
		switch {
		case !ok || v == "":
			return Scenario{}, fmt.Errorf("scenario %s: parameter %q: want KEY=VALUE (keys: %s)", sc.Name, p, strings.Join(paramKeys, ", "))
		case !known:
			return Scenario{}, fmt.Errorf("scenario %s: unknown parameter %q (keys: %s)", sc.Name, k, strings.Join(paramKeys, ", "))
		case vals[k] != "":
			return Scenario{}, fmt.Errorf("scenario %s: parameter %s given twice", sc.Name, k)
		}
		vals[k] = v
	}
	if sc.Instances > 1 || sc.Group || sc.Crash != "" || len(sc.Mix) > 0 || sc.LID != nil {
		return Scenario{}, fmt.Errorf("scenario %s takes no parameters (burst, reply, multi and reorder do)", sc.Name)
	}
	num := func(k string, lo, hi int) (int, error) {
		n, err := strconv.Atoi(vals[k])
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("scenario %s: %s=%s: want a whole number in %d..%d", sc.Name, k, vals[k], lo, hi)
		}
		vals[k] = strconv.Itoa(n) // canonical: messages=030 is messages=30
		return n, nil
	}
	name := sc.Name
	for _, k := range paramKeys {
		v := vals[k]
		if v == "" {
			continue
		}
		var err error
		switch k {
		case "messages":
			sc.Messages, err = num(k, 1, maxParamMessages)
		case "contacts":
			var n int
			n, err = num(k, 1, len(contactNames))
			sc.Contacts = nil
			for _, c := range contactNames[:n] {
				sc.Contacts = append(sc.Contacts, harness.Contact{User: c, Devices: 1})
			}
		case "burst":
			sc.BurstMax, err = num(k, 1, 100)
			sc.Burst = false
		case "reply":
			sc.Reply, v, err = chance(sc.Name, k, v)
		case "drop":
			sc.Drop, v, err = chance(sc.Name, k, v)
		}
		if err != nil {
			return Scenario{}, err
		}
		if k != "reply" && k != "drop" {
			v = vals[k] // num's canonical form
		}
		name += ":" + k + "=" + v
	}
	sc.Name = name
	return sc, nil
}

// chance is parameter k's value v as a chance in [0, 1], and canonically.
func chance(scenario, k, v string) (float64, string, error) {
	p, err := strconv.ParseFloat(v, 64)
	if err != nil || !(p >= 0 && p <= 1) {
		return 0, "", fmt.Errorf("scenario %s: %s=%s: want a chance in [0, 1]", scenario, k, v)
	}
	return p, strconv.FormatFloat(p, 'g', -1, 64), nil
}

// Base is the scenario's name without its parameters.
func (s Scenario) Base() string {
	b, _, _ := strings.Cut(s.Name, ":")
	return b
}
