package transport

import (
	"math/rand/v2"
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

	// A token bucket in front of the bottleneck, as ejabberd's shaper:
	// up to burst wire bytes pass at wireRate, then slowRate.
	burst, tokens, slowRate float64
	filledAt                time.Time

	// jitter, if not nil, delays each answer beyond the path's own time
	// (a server's event loop, a delayed ACK); answers stay in order.
	jitter func() time.Duration
}

type simBlock struct {
	n          int
	sent, done time.Time
	waited     time.Duration
	delivered  int
}

// service returns how long w wire bytes starting at start take at the
// bottleneck.
func (p *pathSim) service(w int, start time.Time) time.Duration {
	if p.burst == 0 {
		return time.Duration(float64(w) / p.wireRate * float64(time.Second))
	}
	if !p.filledAt.IsZero() {
		p.tokens = min(p.burst, p.tokens+start.Sub(p.filledAt).Seconds()*p.slowRate)
	}
	p.filledAt = start
	if p.tokens >= float64(w) {
		p.tokens -= float64(w)
		return time.Duration(float64(w) / p.wireRate * float64(time.Second))
	}
	d := time.Duration((float64(w) - p.tokens) / p.slowRate * float64(time.Second))
	p.tokens = 0
	p.filledAt = start.Add(d)
	return d
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
			p.busyUntil = start.Add(p.service(stanzaSize(n), start))
			done := p.busyUntil.Add(p.base)
			if p.jitter != nil {
				done = done.Add(p.jitter())
				if k := len(p.inflight); k > 0 && done.Before(p.inflight[k-1].done) {
					done = p.inflight[k-1].done
				}
			}
			p.inflight = append(p.inflight, simBlock{n: n, sent: p.now, done: done, waited: start.Sub(p.now), delivered: p.c.total})
		}
		b := p.inflight[0]
		p.inflight = p.inflight[1:]
		p.now = b.done
		p.c.acked(b.n, b.done.Sub(b.sent), p.now, b.delivered)
		p.acked += b.n
		p.queueing = append(p.queueing, b.waited)
	}
}

// measure runs for d and returns the payload rate, the largest queueing
// delay a block met, and the delay nine blocks in ten met at most.
func (p *pathSim) measure(d time.Duration) (rate float64, worst, p90 time.Duration) {
	p.queueing = p.queueing[:0]
	acked := p.acked
	p.run(d)
	slices.Sort(p.queueing)
	return float64(p.acked-acked) / d.Seconds(), p.queueing[len(p.queueing)-1], p.queueing[len(p.queueing)*9/10]
}

// On a fast path the bound opens within a few round trips and then keeps
// the path busy with about QueueTarget of queue: throughput without a queue
// that a ping would wait behind.
func TestControllerFastPath(t *testing.T) {
	const target = 5 * time.Millisecond
	c := newController(target, 2880, 4<<20, false)
	p := &pathSim{c: c, wireRate: 10e6, base: 500 * time.Microsecond, now: epoch}
	p.run(time.Second) // start
	rate, worst, _ := p.measure(5 * time.Second)
	payloadCap := 10e6 * 2880 / float64(stanzaSize(2880))
	require.GreaterOrEqual(t, rate, 0.9*payloadCap, "throughput")
	require.LessOrEqual(t, worst, 3*target, "queueing delay")
	require.Equal(t, 2880, c.chunk)
}

// Far from the server (100 ms), the bound grows to the bandwidth-delay
// product and beyond by at most about a round trip (the target on a long
// path, where jitter alone is milliseconds; BBR allows as much): the
// queue stays within a round trip, so a ping waits at most about twice
// its idle time.
func TestControllerLongPath(t *testing.T) {
	const target = 5 * time.Millisecond
	c := newController(target, 2880, 4<<20, false)
	p := &pathSim{c: c, wireRate: 10e6, base: 100 * time.Millisecond, now: epoch}
	p.run(5 * time.Second)
	rate, worst, p90 := p.measure(10 * time.Second)
	payloadCap := 10e6 * 2880 / float64(stanzaSize(2880))
	require.GreaterOrEqual(t, rate, 0.9*payloadCap, "throughput")
	require.LessOrEqual(t, p90, p.base+3*target, "queueing delay, nine blocks in ten")
	require.LessOrEqual(t, worst, 3*p.base/2, "queueing delay")
}

// Clients 10 ms apart through a server whose answers come late now and
// then, as measured through Prosody and toxiproxy: a third of them 0-5 ms
// late, one in fifty 40 ms (the server waits for a delayed ACK). Such
// jitter is no queue of ours: a target of a quarter of the round trip, a
// start that ended at the first late round, and a bound cut at each round
// whose answers all came late held such a tunnel at a tenth of the path.
func TestControllerJitteryPath(t *testing.T) {
	const target = 4 * time.Millisecond
	c := newController(target, 2880, 4<<20, false)
	r := rand.New(rand.NewPCG(1, 2))
	p := &pathSim{c: c, wireRate: 10e6, base: 10 * time.Millisecond, now: epoch, jitter: func() time.Duration {
		switch x := r.Float64(); {
		case x < 0.02:
			return 40 * time.Millisecond
		case x < 0.35:
			return time.Duration(r.Int64N(int64(5 * time.Millisecond)))
		}
		return 0
	}}
	p.run(2 * time.Second)
	rate, _, _ := p.measure(10 * time.Second)
	payloadCap := 10e6 * 2880 / float64(stanzaSize(2880))
	require.GreaterOrEqual(t, rate, 0.7*payloadCap, "throughput")
}

// Behind a shaper of 3000 bytes per second (ejabberd's "normal", as Debian
// ships it), even one 2880-byte block is more than a second of queue: the
// blocks shrink to what the path carries in slowStanza (but not below
// minChunk, whose stanza takes ~0.3 s there), and the path stays busy.
func TestControllerSlowPath(t *testing.T) {
	const target = 5 * time.Millisecond
	c := newController(target, 2880, 4<<20, false)
	p := &pathSim{c: c, wireRate: 3000, base: 2 * time.Millisecond, now: epoch}
	p.run(30 * time.Second)
	require.Less(t, c.chunk, 2880)
	require.LessOrEqual(t, stanzaSize(c.chunk), max(int(3000*slowStanza.Seconds()*1.3), stanzaSize(minChunk)), "a stanza takes about slowStanza")
	rate, worst, _ := p.measure(60 * time.Second)
	wire := rate * float64(stanzaSize(c.chunk)) / float64(c.chunk)
	require.GreaterOrEqual(t, wire, 0.8*3000, "the shaper's rate is used")
	require.LessOrEqual(t, worst, 2*time.Duration(float64(stanzaSize(c.chunk))/3000*float64(time.Second)), "a stanza waits behind about one other")

	// The shaper is lifted: the blocks grow back and the bound opens.
	p.wireRate = 10e6
	p.run(5 * time.Second)
	require.Equal(t, 2880, c.chunk)
	rate, worst, _ = p.measure(5 * time.Second)
	require.GreaterOrEqual(t, rate, 0.9*10e6*2880/float64(stanzaSize(2880)))
	require.LessOrEqual(t, worst, 3*target)
}

// ejabberd as Debian ships it lets a client's first 20000 bytes through at
// full speed, then 3000 B/s: what the bound holds when the burst runs out
// waits in the shaper's queue, and every other stanza of the session
// behind it. The blocks start small and the bound stops growing at the
// first round whose blocks waited, so that queue drains within about a
// second; then the blocks shrink to the shaper and the path stays busy.
func TestControllerShaperBurst(t *testing.T) {
	const target = 4 * time.Millisecond
	c := newController(target, 16384, 4<<20, true)
	p := &pathSim{c: c, wireRate: 10e6, base: 2 * time.Millisecond, now: epoch, burst: 20000, tokens: 20000, slowRate: 3000}
	p.run(20 * time.Second)
	slices.Sort(p.queueing)
	require.LessOrEqual(t, p.queueing[len(p.queueing)-1], 1500*time.Millisecond, "the queue when the burst ran out")
	rate, worst, _ := p.measure(60 * time.Second)
	wire := rate * float64(stanzaSize(c.chunk)) / float64(c.chunk)
	require.GreaterOrEqual(t, wire, 0.8*3000, "the shaper's rate is used")
	require.LessOrEqual(t, worst, 2*time.Duration(float64(stanzaSize(c.chunk))/3000*float64(time.Second)), "a stanza waits behind about one other")
}

// Blocks start at startChunk and grow to the chunk the Endpoint wants once
// the path has carried growAfter and shown it is fast.
func TestControllerChunkGrows(t *testing.T) {
	const target = 4 * time.Millisecond
	c := newController(target, 16384, 4<<20, true)
	require.Equal(t, startChunk, c.chunk)
	p := &pathSim{c: c, wireRate: 30e6, base: time.Millisecond, now: epoch}
	p.run(time.Second)
	require.Equal(t, 16384, c.chunk)
	rate, _, _ := p.measure(2 * time.Second)
	require.GreaterOrEqual(t, rate, 0.9*30e6*16384/float64(stanzaSize(16384)), "throughput")
}

// A round trip far above the target cuts the bound at once, and the bound
// never leaves its limits.
func TestControllerLimits(t *testing.T) {
	c := newController(5*time.Millisecond, 4096, 64<<10, false)
	require.Equal(t, 8<<10, c.cwnd, "two blocks")
	now := epoch
	for range 100 { // rounds that fill the bound
		n := c.room() / 4096
		delivered := c.total
		for range n {
			c.sent(4096)
		}
		for range n {
			c.acked(4096, time.Millisecond, now, delivered)
		}
		now = now.Add(time.Millisecond)
	}
	require.Equal(t, 64<<10, c.cwnd, "uncongested: up to the maximum")
	c.sent(4096)
	c.acked(4096, time.Millisecond, now, c.total)
	c.sent(4096)
	c.acked(4096, 300*time.Millisecond, now, c.total)
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
	c.acked(4096, 20*time.Millisecond, now, c.total)
	now = now.Add(basePeriod + time.Second)
	c.acked(4096, 20*time.Millisecond, now, c.total)
	require.Equal(t, 20*time.Millisecond, c.base)
}
