package transport

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The session bound grows while acknowledgements come back as fast as the
// fastest seen, shrinks to its minimum while they queue, and never leaves
// its limits.
func TestBudgetAdapts(t *testing.T) {
	var b budget
	b.init(6144, 4<<20)
	require.Equal(t, 64<<10, b.cwnd)
	now := time.Unix(1000, 0)
	c := &Conn{sendWake: make(chan struct{}, 1)}
	ack := func(rtt time.Duration) {
		require.True(t, b.reserve(c, 6144))
		b.acked(6144, rtt, now)
	}
	for range 2000 {
		ack(time.Millisecond)
	}
	require.Equal(t, 4<<20, b.cwnd, "uncongested: up to the maximum")
	for range 2000 {
		ack(time.Millisecond + rttNoise) // busy endpoints, no queue
	}
	require.Equal(t, 4<<20, b.cwnd, "a few milliseconds more are not a queue")
	const slow = 100 * time.Millisecond
	for range 2000 {
		ack(slow) // queued: (slow - 1 ms - rttNoise) / slow of the window
	}
	// Shrunk until the estimated queue is at most four blocks.
	require.LessOrEqual(t, int64(b.cwnd)*int64(slow-time.Millisecond-rttNoise)/int64(slow), int64(4*6144))
	require.GreaterOrEqual(t, b.cwnd, 2*6144)
	for range 100 {
		ack(time.Millisecond)
	}
	require.Greater(t, b.cwnd, 2*6144)
	require.Zero(t, b.inflight)

	// The base round trip is forgotten after two periods, so a path that got
	// slower for good is not mistaken for a queue forever.
	now = now.Add(basePeriod + time.Second)
	ack(20 * time.Millisecond)
	now = now.Add(basePeriod + time.Second)
	ack(20 * time.Millisecond)
	require.Equal(t, 20*time.Millisecond, b.base)
}
