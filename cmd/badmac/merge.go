package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/badmac/badmac/reports"
)

// shardSpec is -shard K/N (1-based K); N 0 is no sharding.
type shardSpec struct{ K, N int }

func (s shardSpec) String() string {
	if s.N == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.K, s.N)
}

func parseShard(s string) (shardSpec, error) {
	if s == "" {
		return shardSpec{}, nil
	}
	k, n, ok := strings.Cut(s, "/")
	ki, kerr := strconv.Atoi(k)
	ni, nerr := strconv.Atoi(n)
	if !ok || kerr != nil || nerr != nil || ni < 1 || ki < 1 || ki > ni {
		return shardSpec{}, badInput("-shard wants K/N with 1 ≤ K ≤ N, got %q", s)
	}
	return shardSpec{ki, ni}, nil
}

// mergeCmd combines the -json reports of `badmac run -shard K/N`, K = 1..N,
// into the report the unsharded run prints: counts summed, rates
// recomputed, and per row the counterexample of the lowest failing
// schedule (shrinking is deterministic, so it is the one the unsharded run
// shrinks).
func mergeCmd(_ context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlags("merge")
	asJSON := fs.Bool("json", false, "print the merged report as JSON instead of the table")
	wide := fs.Bool("wide", false, "print every column (the default table fits 120 columns)")
	mdFile := fs.String("markdown", "", "also write the merged report as Markdown to `FILE`")
	junitFile := fs.String("junit", "", "also write JUnit XML to `FILE`")
	htmlFile := fs.String("html", "", "also write the HTML report to `FILE`")
	// Flags may come after the files: badmac merge a.json b.json -json.
	files, err := parseFlagsAndFiles(fs, args, stdout)
	if err != nil {
		return 2, err
	}
	if len(files) == 0 {
		return 2, badInput("merge takes the shard reports (badmac run -shard K/N -json > FILE)")
	}
	for _, p := range []string{*mdFile, *junitFile, *htmlFile} {
		if p != "" {
			if err := checkWritable(p); err != nil {
				return 2, badInput("%v", err)
			}
		}
	}
	var shards []*reports.Report
	for _, f := range files {
		rep, err := readReport(f)
		if err != nil {
			return 2, err
		}
		shards = append(shards, rep)
	}
	rep, err := mergeReports(files, shards)
	if err != nil {
		return 2, err
	}
	return writeReport(rep, stdout, *asJSON, *wide, *mdFile, *junitFile, *htmlFile)
}

func readReport(path string) (*reports.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, badInput("%v", err)
	}
	var rep reports.Report
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		return nil, badInput("%s: not a badmac JSON report: %v", path, err)
	}
	if rep.Format != reports.Format {
		return nil, badInput("%s: format %q, want %q", path, rep.Format, reports.Format)
	}
	return &rep, nil
}

// mergeReports checks that the shards are the N slices of one run and
// combines them.
func mergeReports(files []string, shards []*reports.Report) (*reports.Report, error) {
	first := shards[0]
	spec, err := parseShard(first.Shard)
	if err != nil || spec.N == 0 {
		return nil, badInput("%s: not a shard report (no \"shard\": run with -shard K/N)", files[0])
	}
	seen := make([]bool, spec.N+1)
	for i, s := range shards {
		sp, err := parseShard(s.Shard)
		switch {
		case err != nil || sp.N == 0:
			return nil, badInput("%s: not a shard report (no \"shard\": run with -shard K/N)", files[i])
		case sp.N != spec.N:
			return nil, badInput("%s: shard %s of %d, but %s is of %d", files[i], s.Shard, sp.N, files[0], spec.N)
		case seen[sp.K]:
			return nil, badInput("%s: shard %s given twice", files[i], s.Shard)
		case s.Seed != first.Seed || s.Mode != first.Mode || s.Schedules != first.Schedules || s.MustPass != first.MustPass:
			return nil, badInput("%s: seed %d, mode %s, %d schedules per row, -must-pass %q differ from %s's", files[i], s.Seed, s.Mode, s.Schedules, s.MustPass, files[0])
		case len(s.Rows) != len(first.Rows):
			return nil, badInput("%s: %d rows, %s has %d", files[i], len(s.Rows), files[0], len(first.Rows))
		}
		seen[sp.K] = true
		for j, r := range s.Rows {
			f := first.Rows[j]
			if r.Discipline != f.Discipline || r.Store != f.Store || r.Scenario != f.Scenario || r.MustPass != f.MustPass {
				return nil, badInput("%s: row %d is %s/%s/%s, %s has %s/%s/%s", files[i], j+1, r.Discipline, r.Store, r.Scenario, files[0], f.Discipline, f.Store, f.Scenario)
			}
		}
	}
	for k := 1; k <= spec.N; k++ {
		if !seen[k] {
			return nil, badInput("shard %d/%d missing", k, spec.N)
		}
	}
	rep := &reports.Report{Seed: first.Seed, Mode: first.Mode, Schedules: first.Schedules, MustPass: first.MustPass}
	for j := range first.Rows {
		var rows []reports.Row
		for _, s := range shards {
			rows = append(rows, s.Rows[j])
		}
		rep.Rows = append(rep.Rows, mergeRow(rows))
	}
	return rep, nil
}

// mergeRow sums the counts of one row over shards (every int field, so a
// count added later is summed too), recomputes the rate, and keeps the
// rest (counterexample, replay, summary, history) from the shard whose
// failing schedule has the lowest number.
func mergeRow(rows []reports.Row) reports.Row {
	pick := 0
	for i, r := range rows {
		if r.FirstFailing != nil && (rows[pick].FirstFailing == nil || *r.FirstFailing < *rows[pick].FirstFailing) {
			pick = i
		}
	}
	out := rows[pick]
	ov := reflect.ValueOf(&out).Elem()
	for i := range ov.NumField() {
		f := ov.Field(i)
		if f.Kind() != reflect.Int {
			continue
		}
		var sum int64
		for _, r := range rows {
			sum += reflect.ValueOf(r).Field(i).Int()
		}
		f.SetInt(sum)
	}
	// Store failures are judged per schedule (a device may judge some of
	// a row's schedules only, store_judged) or not at all (the reference
	// store, free mode): summed where judged, null where no shard judged.
	out.StoreBlamed, out.StoreJudged = nil, nil
	judged := 0
	for _, r := range rows {
		if r.StoreBlamed != nil {
			n := *r.StoreBlamed
			if out.StoreBlamed != nil {
				n += *out.StoreBlamed
			}
			out.StoreBlamed = &n
			judged += r.Schedules
			if r.StoreJudged != nil {
				judged += *r.StoreJudged - r.Schedules
			}
		}
	}
	if out.StoreBlamed != nil && judged < out.Schedules {
		out.StoreJudged = &judged
	}
	// The library finding of the lowest-numbered schedule, as the
	// unsharded run keeps.
	out.Library = nil
	for _, r := range rows {
		if r.Library != nil && (out.Library == nil || r.Library.Schedule < out.Library.Schedule) {
			out.Library = r.Library
		}
	}
	out.Rate, out.RateLo, out.RateHi = out.PairRate()
	return out
}
