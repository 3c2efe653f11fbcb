package transport

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pathSim is a path with a bottleneck that delivers rate payload bytes per
// second (stanzaSize bytes on the wire per block) behind a fixed base
// round trip, as a server's input does: what is sent beyond what it can
// take waits in a queue.
type pathSim struct {
	c         *controller
	wireRate  float64 // wire bytes per second
	base      time.Duration
	now       time.Time
	busyUntil time.Time
	inflight  []simBlock
	acked     int             // payload bytes acknowledged
	queueing  []time.Duration // how long each block waited behind others
}

type simBlock struct {
	n          int
	sent, done time.Time
	waited     time.Duration
}

// run sends as the controller allows and delivers acknowledgements for d.
func (p *pathSim) run(d time.Duration) {
	end := p.now.Add(d)
	for p.now.Before(end) {
		for {
			n := p.c.chunk
			if n > p.c.room() {
				break
			}
			p.c.sent(n)
			start := p.now
			if p.busyUntil.After(start) {
				start = p.busyUntil
			}
			p.busyUntil = start.Add(time.Duration(float64(stanzaSize(n)) / p.wireRate * float64(time.Second)))
			p.inflight = append(p.inflight, simBlock{n: n, sent: p.now, done: p.busyUntil.Add(p.base), waited: start.Sub(p.now)})
		}
		b := p.inflight[0]
		p.inflight = p.inflight[1:]
		p.now = b.done
		p.c.acked(b.n, b.done.Sub(b.sent), p.now)
		p.acked += b.n
		p.queueing = append(p.queueing, b.waited)
	}
}

// measure runs for d and returns the payload rate and the largest queueing
// delay a block met.
func (p *pathSim) measure(d time.Duration) (rate float64, worst time.Duration) {
	p.queueing = p.queueing[:0]
	acked := p.acked
	p.run(d)
	return float64(p.acked-acked) / d.Seconds(), slices.Max(p.queueing)
}

// On a fast path the bound opens within a few round trips and then keeps
// the path busy with about QueueTarget of queue: throughput without a queue
// that a ping would wait behind.
func TestControllerFastPath(t *testing.T) {
	const target = 5 * time.Millisecond
	c := newController(target, 2880, 4<<20)
	p := &pathSim{c: c, wireRate: 10e6, base: 500 * time.Microsecond, now: epoch}
	p.run(time.Second) // start
	rate, worst := p.measure(5 * time.Second)
	payloadCap := 10e6 * 2880 / float64(stanzaSize(2880))
	require.GreaterOrEqual(t, rate, 0.9*payloadCap, "throughput")
	require.LessOrEqual(t, worst, 3*target, "queueing delay")
	require.Equal(t, 2880, c.chunk)
}

// Far from the server (100 ms), the bound grows to the bandwidth-delay
// product and beyond by about QueueTarget.
func TestControllerLongPath(t *testing.T) {
	const target = 5 * time.Millisecond
	c := newController(target, 2880, 4<<20)
	p := &pathSim{c: c, wireRate: 10e6, base: 100 * time.Millisecond, now: epoch}
	p.run(5 * time.Second)
	rate, worst := p.measure(10 * time.Second)
	payloadCap := 10e6 * 2880 / float64(stanzaSize(2880))
	require.GreaterOrEqual(t, rate, 0.9*payloadCap, "throughput")
	require.LessOrEqual(t, worst, 3*target, "queueing delay")
}

// Behind a shaper of 3000 bytes per second (ejabberd's "normal", as Debian
// ships it), even one 2880-byte block is more than a second of queue: the
// blocks shrink to what the path carries in slowStanza, and the path stays
// busy.
func TestControllerSlowPath(t *testing.T) {
	const target = 5 * time.Millisecond
	c := newController(target, 2880, 4<<20)
	p := &pathSim{c: c, wireRate: 3000, base: 2 * time.Millisecond, now: epoch}
	p.run(30 * time.Second)
	require.Less(t, c.chunk, 2880)
	require.LessOrEqual(t, stanzaSize(c.chunk), int(3000*slowStanza.Seconds()*1.3), "a stanza takes about slowStanza")
	rate, worst := p.measure(60 * time.Second)
	wire := rate * float64(stanzaSize(c.chunk)) / float64(c.chunk)
	require.GreaterOrEqual(t, wire, 0.8*3000, "the shaper's rate is used")
	require.LessOrEqual(t, worst, 2*slowStanza, "a stanza waits behind about one other")

	// The shaper is lifted: the blocks grow back and the bound opens.
	p.wireRate = 10e6
	p.run(5 * time.Second)
	require.Equal(t, 2880, c.chunk)
	rate, worst = p.measure(5 * time.Second)
	require.GreaterOrEqual(t, rate, 0.9*10e6*2880/float64(stanzaSize(2880)))
	require.LessOrEqual(t, worst, 3*target)
}

// A round trip far above the target cuts the bound at once, and the bound
// never leaves its limits.
func TestControllerLimits(t *testing.T) {
	c := newController(5*time.Millisecond, 4096, 64<<10)
	require.Equal(t, 16<<10, c.cwnd)
	now := epoch
	for range 1000 {
		c.sent(4096)
		c.acked(4096, time.Millisecond, now)
		now = now.Add(time.Millisecond)
	}
	require.Equal(t, 64<<10, c.cwnd, "uncongested: up to the maximum")
	c.sent(4096)
	c.acked(4096, 100*time.Millisecond, now)
	require.Less(t, c.cwnd, 8<<10, "cut at once")
	require.GreaterOrEqual(t, c.cwnd, c.chunk)
	// A fresh tunnel's one block beyond the bound stops at the maximum.
	for c.room() >= c.chunk {
		c.sent(c.chunk)
	}
	require.LessOrEqual(t, c.roomFresh(), c.chunk)
	c.inflight = c.max
	require.Zero(t, c.roomFresh())

	// The base round trip is forgotten after two periods, so a path that got
	// slower for good is not mistaken for a queue forever.
	c.inflight = 0
	now = now.Add(basePeriod + time.Second)
	c.acked(4096, 20*time.Millisecond, now)
	now = now.Add(basePeriod + time.Second)
	c.acked(4096, 20*time.Millisecond, now)
	require.Equal(t, 20*time.Millisecond, c.base)
}
