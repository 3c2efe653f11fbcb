package main

import (
	"bytes"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/xmppxtls/xtls/xtls"
)

// Every party the bench creates stays on IQs unless its row asks
// otherwise: the IQ-path rows must not measure a proxy.
func TestMovePolicy(t *testing.T) {
	tests := [...]struct {
		t    tuning
		want xtls.BytestreamPolicy
	}{
		0: {tuning{}, xtls.BytestreamOff},
		1: {tuning{chunk: 4096, noQuickAck: true}, xtls.BytestreamOff},
		2: {tuning{moves: moveAuto}, xtls.BytestreamAuto},
		3: {tuning{moves: moveOnRequest}, xtls.BytestreamOnRequest},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			if got := tc.t.moves.policy(); got != tc.want {
				t.Errorf("policy %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBytestreamFlags(t *testing.T) {
	tests := [...]struct {
		args    []string
		measure bool
		big     int64
		bad     bool
	}{
		0: {args: nil, measure: true, big: 256 << 20},
		1: {args: []string{"-measure", "bytestream", "-bs-big", "8"}, measure: true, big: 8 << 20},
		2: {args: []string{"-quick"}, measure: false, big: 256 << 20},
		3: {args: []string{"-bs-big", "0"}, bad: true},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if tc.bad {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.measure["bytestream"] != tc.measure || o.bsBig != tc.big {
				t.Errorf("bytestream measured %v, big %d; want %v, %d", o.measure["bytestream"], o.bsBig, tc.measure, tc.big)
			}
		})
	}
}

// A failed check shows in the table and fails the command; a big
// transfer that failed prints no time.
func TestBytestreamFailures(t *testing.T) {
	r := &bytestreamResult{bigMiB: 256, bigMoved: -1, failed: []string{"SHA-256 differs"}}
	rows := map[string]float64{}
	for _, row := range r.rows() {
		rows[row.label] = row.v
	}
	if v := rows["256 MiB over the server's proxy, stock limits: seconds (SHA-256 exact)"]; !math.IsNaN(v) {
		t.Errorf("a failed big transfer shows %v seconds", v)
	}
	if v := rows["bytestream checks failed (see the log; the command fails)"]; v != 1 {
		t.Errorf("failed checks row %v, want 1", v)
	}
	res := &results{name: "prosody", bytestream: r}
	var stderr bytes.Buffer
	if code := reportFailures(&stderr, res.failures()); code != 1 || !strings.Contains(stderr.String(), "SHA-256 differs") {
		t.Errorf("exit code %d, stderr %q", code, stderr.String())
	}
	if code := reportFailures(io.Discard, (&results{}).failures()); code != 0 {
		t.Errorf("exit code %d without failures", code)
	}
}
