package main

import (
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSummarizeAndRender(t *testing.T) {
	var rs []result
	for rep := 1; rep <= 3; rep++ {
		f := float64(rep)
		rs = append(rs,
			result{Server: "null", C: 16, Rep: rep, RPS: 5000 + f, P50: 2, P99: 8, ServerCPUPerReq: 140 + f, ServerHWMKiB: 13 << 10, PatchOps: 4},
			result{Server: "webhook", C: 16, Rep: rep, RPS: 4200 + f, P50: 2.5, P99: 10, ServerCPUPerReq: 190 + f, ServerHWMKiB: 40 << 10, PatchOps: 3},
		)
	}
	rows := summarize(rs, []int{16})
	if len(rows) != 1 || rows[0].null.rps != 5002 || rows[0].webhook.cpu != 192 || rows[0].webhook.cpuMin != 191 || rows[0].webhook.cpuMax != 193 {
		t.Fatalf("summarize: %+v", rows)
	}
	md := render(options{reps: 3, duration: 10 * time.Second, warmup: time.Second}, "test machine", rows, "")
	if !strings.Contains(md, "webhook binary, default config,") {
		t.Errorf("report does not say the webhook ran with its defaults:\n%s", md)
	}
	flagged := render(options{reps: 3, duration: 10 * time.Second, warmup: time.Second, flags: []string{"--max-concurrent-streams=16", "--max-connections=96"}}, "test machine", rows, "")
	if !strings.Contains(flagged, "webhook binary, flags `--max-concurrent-streams=16 --max-connections=96`,") {
		t.Errorf("report does not name the webhook's flags:\n%s", flagged)
	}
	for _, want := range []string{
		"| 16 | 5002 | 4202 | 0.84 |",
		"throughput 0.84× null (target ≥ 0.80×): met",
		"CPU per request 1.35× null (target ≤ 1.2×; per-repetition range 191-193 µs vs null 141-143 µs): **missed**",
		"p99 latency 1.25× null (target ≤ 1.3×): met",
		"peak RSS 40.0 MiB (target ≤ 32 MiB): **missed**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
