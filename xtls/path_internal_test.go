package xtls

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The automatic move's back-off grows with every attempt, whether it
// failed or its bytestream broke later, and starts afresh once a move
// comes 10 min after the last that worked.
func TestMoveBackoff(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		steps []bool          // each attempt: moved or not
		gaps  []time.Duration // time from one attempt to the next
		want  []time.Duration // back-off after each attempt
	}{
		{"failures", []bool{false, false, false, false, false, false, false},
			[]time.Duration{0, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute},
			[]time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}},
		{"bytestreams that break", []bool{true, true, true, true},
			[]time.Duration{0, 30 * time.Second, time.Minute, 2 * time.Minute},
			[]time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute}},
		{"a failure after a move", []bool{true, false, true},
			[]time.Duration{0, 30 * time.Second, time.Minute},
			[]time.Duration{30 * time.Second, time.Minute, 2 * time.Minute}},
		{"a move 10 min after the last", []bool{true, true, true},
			[]time.Duration{0, 30 * time.Second, 10 * time.Minute},
			[]time.Duration{30 * time.Second, time.Minute, 30 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p paths
			now := t0
			for i, moved := range tc.steps {
				now = now.Add(tc.gaps[i])
				require.False(t, now.Before(p.next), "attempt %d before its back-off", i)
				p.attempted(moved, now)
				require.Equal(t, tc.want[i], p.backoff, "after attempt %d", i)
				require.Equal(t, now.Add(tc.want[i]), p.next)
			}
		})
	}
}
