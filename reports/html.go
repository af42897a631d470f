package reports

import (
	"fmt"
	"html/template"
	"io"
	"sort"
)

// WriteHTML writes a self-contained report page (inline CSS, SVG and
// script; nothing loaded from the network): the verdict, the table, a bar
// chart of failure rates per store and discipline, and for each failing
// row a timeline of its counterexample's replayed history in lanes (peer,
// server, store calls, attempts, crashes), the failed attempts marked.
func WriteHTML(w io.Writer, rep *Report) error {
	d := htmlData{Rep: rep, Columns: Columns, Lanes: Lanes}
	for _, r := range rep.Rows {
		d.Rows = append(d.Rows, htmlRow{Row: r, Cells: r.Cells(), Failed: r.Failed()})
		if r.Library != nil {
			d.Library = append(d.Library, r)
		}
		if !r.Failed() || r.Replay == "" {
			continue
		}
		tl := htmlTimeline{Row: r, ID: fmt.Sprintf("tl-%s-%s-%s", r.Discipline, r.Store, r.Scenario)}
		for i, e := range Timeline(r.History) {
			ev := htmlEvent{N: i + 1, Event: e}
			for j, l := range Lanes {
				if l == e.Lane {
					ev.Col = j
				}
			}
			tl.Events = append(tl.Events, ev)
		}
		d.Timelines = append(d.Timelines, tl)
	}
	d.Chart = chart(rep)
	return page.Execute(w, d)
}

type htmlData struct {
	Rep       *Report
	Columns   []string
	Lanes     []Lane
	Rows      []htmlRow
	Chart     svgChart
	Timelines []htmlTimeline
	Library   []Row // rows whose baseline failed too, with their finding
}

// Verdict is the gate and its line, for the banner.
func (d htmlData) Verdict() string     { return d.Rep.Verdict() }
func (d htmlData) VerdictLine() string { return d.Rep.VerdictLine() }
func (d htmlData) Legend() string      { return d.Rep.Legend() }

type htmlRow struct {
	Row
	Cells  []string
	Failed bool
}

type htmlTimeline struct {
	Row
	ID     string
	Events []htmlEvent
}

// Measurement is a not-gated row's line (Row.measurement).
func (t htmlTimeline) Measurement() string { return t.measurement() }

type htmlEvent struct {
	N int
	Event
	Col int
}

// Cells returns the event in its lane among len(Lanes) cells.
func (e htmlEvent) Cells() []bool {
	out := make([]bool, len(Lanes))
	out[e.Col] = true
	return out
}

type svgChart struct {
	Width, Height int
	MaxPct        string
	Bars          []svgBar
	Labels        []svgLabel
}

type svgBar struct {
	X, Y, W, H int
	Class      string
	Title      string
	Value      string
	TextX      int
}

type svgLabel struct {
	X, Y int
	Text string
}

// chart lays out one group of bars per store, one bar per discipline, each
// the blamed share of the messages of that (discipline, store) over all
// scenarios; bars are scaled to the largest rate.
func chart(rep *Report) svgChart {
	type key struct{ store, disc string }
	blamed, msgs := map[key]int{}, map[key]int{}
	var storeOrder, discOrder []string
	seenS, seenD := map[string]bool{}, map[string]bool{}
	for _, r := range rep.Rows {
		k := key{r.Store, r.Discipline}
		blamed[k] += r.Blamed
		msgs[k] += r.Messages
		if !seenS[r.Store] {
			seenS[r.Store] = true
			storeOrder = append(storeOrder, r.Store)
		}
		if !seenD[r.Discipline] {
			seenD[r.Discipline] = true
			discOrder = append(discOrder, r.Discipline)
		}
	}
	maxRate := 0.0
	for k, n := range msgs {
		if n > 0 {
			maxRate = max(maxRate, float64(blamed[k])/float64(n))
		}
	}
	scale := maxRate
	if scale == 0 {
		scale = 1
	}
	const left, barW, barH, gap = 150, 420, 14, 4
	c := svgChart{Width: left + barW + 110, MaxPct: fmt.Sprintf("%.1f%%", 100*maxRate)}
	y := 10
	sort.SliceStable(discOrder, func(i, j int) bool { return discRank(discOrder[i]) < discRank(discOrder[j]) })
	for _, s := range storeOrder {
		groupTop := y
		for _, d := range discOrder {
			k := key{s, d}
			if msgs[k] == 0 && blamed[k] == 0 {
				continue
			}
			rate := 0.0
			if msgs[k] > 0 {
				rate = float64(blamed[k]) / float64(msgs[k])
			}
			w := int(float64(barW) * rate / scale)
			if rate > 0 && w < 2 {
				w = 2
			}
			c.Bars = append(c.Bars, svgBar{X: left, Y: y, W: w, H: barH, Class: "bar-" + d,
				Title: fmt.Sprintf("%s/%s: %d of %d messages blamed", d, s, blamed[k], msgs[k]),
				Value: fmt.Sprintf("%s %.1f%%", d, 100*rate), TextX: left + w + 6})
			y += barH + gap
		}
		c.Labels = append(c.Labels, svgLabel{X: left - 8, Y: (groupTop+y-gap)/2 + 4, Text: s})
		y += 10
	}
	c.Height = y + 10
	return c
}

func discRank(d string) int {
	switch d {
	case "concurrent":
		return 0
	case "whatsmeow":
		return 1
	case "locked":
		return 2
	}
	return 3
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>badmac report, seed {{.Rep.Seed}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1f24; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
h2 { font-size: 1.15em; margin-top: 1.6em; }
.verdict { font-weight: bold; padding: .4em .7em; border-radius: 4px; display: inline-block; }
.pass { background: #dafbe1; color: #116329; }
.fail { background: #ffebe9; color: #a40e26; }
.notgated { background: #eaeef2; color: #57606a; }
.legend { background: none; padding: 0; font-size: 12px; color: #57606a; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { border: 1px solid #d0d7de; padding: 3px 6px; }
th { background: #f6f8fa; position: sticky; top: 0; }
#results td { text-align: right; white-space: nowrap; }
#results td:nth-child(-n+3) { text-align: left; }
#results tr.failed td { background: #fff5f5; }
#results tr.gated.failed td { background: #ffd8d3; }
svg text { font: 12px system-ui, sans-serif; }
.bar-concurrent { fill: #cf222e; } .bar-whatsmeow { fill: #bf8700; } .bar-locked { fill: #1a7f37; }
.timeline { table-layout: fixed; width: 100%; max-width: 1400px; }
.timeline th:first-child { width: 2.5em; }
.timeline td { vertical-align: top; font: 12px ui-monospace, monospace; overflow-wrap: anywhere; }
.timeline tr:has(.ev-crash) td, .timeline tr:has(.failed) td { background: #fffbf0; }
.timeline td.n { color: #6e7781; text-align: right; }
.ev { display: inline-block; padding: 1px 4px; border-radius: 3px; }
.ev-peer { background: #ddf4ff; } .ev-server { background: #f6f8fa; } .ev-device { background: #eef1f4; } .ev-store { background: #fbefff; }
.ev-attempt { background: #dafbe1; } .ev-crash { background: #fff1c5; font-weight: bold; }
.ev.failed { background: #cf222e; color: #fff; font-weight: bold; }
pre { background: #f6f8fa; padding: .6em; overflow-x: auto; font-size: 12px; }
.task { font-weight: bold; }
</style>
</head>
<body>
<h1>badmac report</h1>
<p>seed {{.Rep.Seed}}, mode {{.Rep.Mode}}, {{.Rep.Schedules}} schedules per row; * = must pass</p>
{{if eq .Verdict "pass"}}<p class="verdict pass">{{.VerdictLine}}</p>
{{else if eq .Verdict "fail"}}<p class="verdict fail">{{.VerdictLine}}</p>
{{else}}<p class="verdict notgated">{{.VerdictLine}}</p>{{end}}
<p class="gate">{{.Rep.GateLine}}{{with .Rep.MeasuredLine}}<br>{{.}}{{end}}</p>
<pre class="legend">{{.Legend}}</pre>

<h2>Results</h2>
<label><input type="checkbox" id="only-failed"> show only rows with failures</label>
<table id="results">
<thead><tr>{{range .Columns}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr class="{{if .Failed}}failed{{end}}{{if .MustPass}} gated{{end}}">{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody>
</table>

<h2>Failure rate per store</h2>
<p>Blamed messages over all messages of each (discipline, store), all scenarios; bars scaled to the largest rate, {{.Chart.MaxPct}}.</p>
<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{{.Chart.Width}}" height="{{.Chart.Height}}" role="img" aria-label="failure rate per store">
{{range .Chart.Labels}}<text x="{{.X}}" y="{{.Y}}" text-anchor="end">{{.Text}}</text>
{{end}}{{range .Chart.Bars}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect><text x="{{.TextX}}" y="{{.Y}}" dy="11">{{.Value}}</text>
{{end}}</svg>

<h2>Baseline failures</h2>
<p>Messages the protocol baseline (one task at a time, a store that loses nothing: see each row's baseline above) fails too: the protocol's or libsignal's, never blamed on a pair or a store.</p>
{{if not .Library}}<p>None.</p>{{end}}
{{range .Library}}<section class="library"><h3>{{.Discipline}}/{{.Store}}/{{.Scenario}}: {{.LibraryFailures}} messages: {{.Library.Summary}}</h3>
{{if .Library.Replay}}<p>Replay: <code>{{.Library.Replay}}</code></p>{{end}}
{{if .Library.Counterexample}}<details><summary>schedule</summary><pre>{{.Library.Counterexample}}</pre></details>{{end}}
{{if .Library.History}}<details><summary>history</summary><pre>{{range .Library.History}}{{.}}
{{end}}</pre></details>{{end}}
</section>
{{end}}

<h2>Counterexamples</h2>
{{if not .Timelines}}<p>No failing rows.</p>{{end}}
{{range .Timelines}}
<section class="counterexample" id="{{.ID}}">
<h3>{{if .MustPass}}FAIL {{.Discipline}}/{{.Store}}/{{.Scenario}} (must pass): {{.Summary}}{{else}}measured, not gated: {{.Discipline}}/{{.Store}}/{{.Scenario}}: {{.Measurement}}{{end}}</h3>
<p>Replay: <code>{{.Replay}}</code></p>
{{if not .Events}}<p>No replayed history (free-mode failures are not replayable).</p>{{else}}<table class="timeline">
<thead><tr><th>#</th>{{range $.Lanes}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range $e := .Events}}<tr class="event"><td class="n">{{$e.N}}</td>{{range $e.Cells}}<td>{{if .}}<span class="ev ev-{{$e.Lane}}{{if $e.Failed}} failed{{end}}">{{if $e.Task}}<span class="task">{{$e.Task}}</span> {{end}}{{$e.Text}}</span>{{end}}</td>{{end}}</tr>
{{end}}</tbody>
</table>{{end}}
{{if .Counterexample}}<details><summary>schedule</summary><pre>{{.Counterexample}}</pre></details>{{end}}
</section>
{{end}}
<script>
document.getElementById("only-failed").addEventListener("change", function (e) {
  for (const tr of document.querySelectorAll("#results tbody tr")) {
    tr.style.display = e.target.checked && !tr.classList.contains("failed") ? "none" : "";
  }
});
</script>
</body>
</html>
`))
