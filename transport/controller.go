package transport

import "time"

// controller bounds the payload that all tunnels of one path have sent and
// not yet seen acknowledged, so that the queue they build on the path stays
// short in time whatever rate the path delivers at: an XEP-0199 ping, a
// chat message, a credit, sent on the same XMPP session while a tunnel
// moves a file, waits only behind that queue.
//
// It is delay-based, in the family of TCP Vegas and FAST: the smallest
// round trip seen lately (base) is the path without our queue; what a round
// trip has beyond it is our queue. Once per round (a window's worth of
// acknowledgements) it looks at the round's smallest round trip:
//   - far below the target, the bound grows (doubling while it starts, an
//     eighth a round after that), if the round used it;
//   - otherwise it moves halfway towards FAST's goal: the window that
//     would leave nothing queued at this round trip, plus alpha, the bytes
//     that make the target's worth of queue at the rate the path delivers;
//     at equilibrium the queue is the target, however long or fast the
//     path.
//
// The target is Config.QueueTarget, or the base round trip on a long path,
// where a few milliseconds of jitter would read as a queue (measured with
// the clients 10 ms apart: rounds of three blocks see 1-5 ms of it, and a
// quarter of the round trip held the tunnel at 0.3 MB/s); BBR too lets a
// round trip's worth queue. A slow start ends only when two rounds in a
// row see the queue, for the same reason. A
// single round trip far above the base (a server's shaper whose burst ran
// out) cuts the bound at once.
//
// Whatever the rounds say, the bound never exceeds twice what the path
// delivers in a base round trip and the target (the bytes that left
// between a block's sending and its acknowledgement, over its round trip,
// the best of the last two rounds, as BBR measures), plus two blocks: on a
// fast path that is twice the bound (it does not slow the start), but
// where a shaper's burst made the first rounds look fast, the bound stops
// growing at the first round whose blocks waited, not at the first answer
// that came back late, by which time the whole bound would wait in the
// shaper's queue.
//
// On a slow path (a server's shaper of a few KB/s) one data stanza takes
// longer on the path than anything else should wait behind it: then the
// blocks themselves shrink, to what the path delivers in slowStanza, and
// grow back when the path is fast again.
//
// Beyond speed, the bound prevents a deadlock: mellium answers every IQ
// from the session's Serve goroutine under the same output lock as our
// data, so a server that stops reading a client while it cannot write to it
// (ejabberd does) would otherwise freeze the session.
//
// It is pure accounting, owned by the loop: no locks, no clock.
type controller struct {
	target   time.Duration // Config.QueueTarget
	cwnd     int           // payload bytes allowed in flight
	inflight int
	max      int // Config.SessionWindow
	chunkMax int // the chunk size the Endpoint wants
	chunk    int // the chunk size allowed now: chunkMax, or less on a slow path

	slowStart bool
	highRound bool // the last round of the start saw a queue

	// base round trip: the smallest of this period and the last.
	base, cur, last time.Duration
	curSmall        bool // cur is a small block's (foldMin)
	periodAt        time.Time

	// the current round
	roundAt    time.Time
	roundBytes int // acknowledged this round
	roundEnd   int // the round ends once this much is acknowledged
	roundMin   time.Duration
	prevMin    time.Duration // the last round's roundMin (zero after a cut)
	roundSmall bool          // roundMin is a small block's (foldMin)
	roundPeak  int           // the most in flight this round
	cut        bool          // the bound was cut this round
	cutUntil   time.Time     // no other cut before then
	chunkAt    time.Time     // the chunk last changed then
	probeUntil time.Time     // one block in flight until then, to see the base
	probing    bool
	appLimited bool // the path had room and nothing to send this round

	total int     // payload bytes acknowledged, all in all
	rate  float64 // payload bytes per second delivered, over the last window
	// bw is the best delivery rate sampled this round and the last.
	bw, bwRound float64
	rateAt      time.Time
	rateBytes   int
	rateAcks    int
}

const (
	// basePeriod is how long a smallest round trip stays the base: long
	// enough to span the rounds a standing queue lasts, short enough to
	// follow a path that became slower.
	basePeriod = 10 * time.Second
	// The bound starts at initialBlocks blocks and at least initialMin
	// bytes: enough for the first round trips of a fast path, little
	// enough for a slow one to drain in a few seconds.
	initialBlocks = 2
	initialMin    = 4 << 10
	// Until the path has carried earlyBytes (more than the bursts
	// servers' shapers let through at full speed), the bound stays where
	// it starts: whatever it holds when a burst runs out waits in the
	// shaper's queue, about a second and a half behind ejabberd's as
	// Debian ships it (3000 B/s).
	earlyBytes = 32 << 10
	// startChunk is the largest block before the path has shown it is
	// fast (growAfter): one block of it takes about a second on the
	// slowest shaper servers ship (ejabberd's, 3000 B/s), and the first
	// blocks may meet that shaper's queue.
	startChunk = 2048
	// cutDelay is the queueing delay (beyond the fastest round trip, and
	// at least that round trip again) at which a single answer cuts the
	// bound at once.
	cutDelay = 100 * time.Millisecond
	// slowStanza is how long one data stanza may take to cross a slow
	// path: the chunk shrinks to what the path delivers in this time.
	slowStanza = 200 * time.Millisecond
	// growAfter is how much the path must have carried before blocks grow.
	growAfter = 1 << 20
	// minChunk bounds the chunk from below on the slowest paths.
	minChunk = 512
	// The delivery rate is measured over at least rateSpan and rateAcks
	// acknowledgements, or rateSlow on a path that acknowledges seldom.
	rateAcks = 4
	rateSpan = 10 * time.Millisecond
	rateSlow = 200 * time.Millisecond
)

// newController returns the controller of a path whose blocks carry chunk
// bytes at most; when grow is set (the chunk is a default, not the
// application's choice), blocks start smaller and grow as the path shows
// it can carry them.
func newController(target time.Duration, chunk, maximum int, grow bool) *controller {
	c := &controller{target: target, chunkMax: chunk, chunk: chunk, max: max(maximum, chunk), slowStart: true}
	if grow {
		c.chunk = min(chunk, startChunk)
	}
	c.cwnd = min(max(initialBlocks*c.chunk, initialMin), c.max)
	c.roundEnd = c.cwnd
	return c
}

// setChunkMax sets the chunk size the Endpoint wants: at once
// (SetChunkSize), or, when grow says so (the server probe's larger
// choice), as the path shows it can take it: blocks that grow a round at a
// time on a fast path, and never on a slow one, whose shaper would hold a
// large block for seconds.
func (c *controller) setChunkMax(n int, grow bool) {
	c.chunkMax = n
	if grow {
		c.chunk = min(c.chunk, n)
	} else {
		c.chunk = n
	}
	c.cwnd = max(c.cwnd, c.chunk)
}

// effTarget is the queueing delay aimed at: the configured target, or the
// base round trip on a long path.
func (c *controller) effTarget() time.Duration { return max(c.target, c.base) }

// room returns how many more payload bytes may be sent now. With nothing
// in flight one block may always go.
func (c *controller) room() int {
	cwnd := c.cwnd
	if c.probing {
		cwnd = c.chunk
	}
	if c.inflight == 0 {
		return max(cwnd, c.chunk)
	}
	return max(0, cwnd-c.inflight)
}

// roomFresh is room for a tunnel that has just become active: one block
// beyond the bound, never beyond the maximum.
func (c *controller) roomFresh() int {
	return max(0, min(c.room()+c.chunk, c.max-c.inflight))
}

// sent records n payload bytes sent for the first time.
func (c *controller) sent(n int) {
	c.inflight += n
	c.roundPeak = max(c.roundPeak, c.inflight)
}

// dropped returns n payload bytes that will not be acknowledged (their
// tunnel is gone).
func (c *controller) dropped(n int) { c.inflight = max(0, c.inflight-n) }

// idle notes that the path had room and nothing to send: this round's
// rate says what the tunnels offered, not what the path can carry.
func (c *controller) idle() { c.appLimited = true }

// acked returns n payload bytes acknowledged rtt after they left, at now,
// and adapts the bound. delivered is what total was when they left.
func (c *controller) acked(n int, rtt time.Duration, now time.Time, delivered int) {
	c.inflight = max(0, c.inflight-n)
	c.total += n
	if n <= 0 || rtt <= 0 {
		return
	}
	if bw := float64(c.total-delivered) / rtt.Seconds(); bw > c.bwRound {
		c.bwRound = bw
	}
	if c.periodAt.IsZero() || now.Sub(c.periodAt) > basePeriod {
		if c.cur > c.base+c.effTarget()/2 {
			// A whole period without a round trip near the base: a
			// standing queue, or a slower path. Drain to one block for
			// about two round trips, so that the next period sees the
			// path without our queue; a standing queue would otherwise
			// pass for the path, period after period, and grow.
			c.probeUntil = now.Add(2 * rtt)
		}
		c.last, c.cur, c.periodAt = c.cur, 0, now
	}
	c.probing = now.Before(c.probeUntil)
	// Blocks of less than half a chunk (a TLS handshake record, the end
	// of a write) cross faster than full ones: as the base, or as a
	// round's smallest round trip, they would read the full blocks' own
	// time on the path as a queue. They count only until a larger one
	// has been seen.
	large := 2*n >= c.chunk
	foldMin(&c.cur, &c.curSmall, rtt, large)
	c.base = c.cur
	if c.last != 0 && c.last < c.base {
		c.base = c.last
	}
	c.measureRate(n, now)
	if c.roundAt.IsZero() {
		c.roundAt = now
	}
	c.roundBytes += n
	foldMin(&c.roundMin, &c.roundSmall, rtt, large)
	if rtt-c.base > max(cutDelay, c.base) && !now.Before(c.cutUntil) {
		// A round trip far above the fastest (a server's shaper whose
		// burst ran out, say): the window built a queue that every other
		// stanza of the session now waits behind. Cut at once, shrink the
		// blocks if one alone is too long for the path, and start a round
		// from here; the acknowledgements of what left before the cut say
		// nothing new. (Smaller excursions are the rounds' to judge, by
		// their smallest round trip: one late answer on a busy machine is
		// not a queue.)
		c.cutUntil = now.Add(rtt)
		c.cwnd = max(c.chunk, int(int64(c.cwnd)*int64(c.base+c.effTarget())/int64(rtt)))
		c.slowStart = false
		c.cut = true
		c.fitChunk(now)
		c.endRound(now)
		return
	}
	if c.roundBytes >= c.roundEnd {
		c.endRound(now)
	}
}

// foldMin folds a round trip into a minimum that holds only large blocks'
// round trips once there is one: small reports whether it holds a small
// block's.
func foldMin(m *time.Duration, small *bool, rtt time.Duration, large bool) {
	switch {
	case *m == 0 || large && *small:
		*m, *small = rtt, !large
	case rtt < *m && (large || *small):
		*m = rtt
	}
}

// measureRate counts n bytes acknowledged at now into the delivery rate:
// what the acknowledgements brought over the last window of at least
// rateSpan and rateAcks acknowledgements. A rate measured while the
// tunnels had less to send than the path could take says only that the
// path carries at least that much.
func (c *controller) measureRate(n int, now time.Time) {
	if c.rateAt.IsZero() {
		c.rateAt = now
		return
	}
	c.rateBytes += n
	c.rateAcks++
	d := now.Sub(c.rateAt)
	if d < rateSpan || c.rateAcks < rateAcks && d < rateSlow {
		return
	}
	if r := float64(c.rateBytes) / d.Seconds(); !c.appLimited || r > c.rate {
		c.rate = r
	}
	c.rateAt, c.rateBytes, c.rateAcks = now, 0, 0
}

// fitChunk shrinks the chunk when one data stanza alone takes longer than
// slowStanza on the path: it is the queue a ping meets behind even one
// block in flight.
func (c *controller) fitChunk(now time.Time) {
	if c.rate <= 0 || c.appLimited || now.Sub(c.chunkAt) < max(c.base, slowStanza) {
		return
	}
	if stanzaTime(c.chunk, c.rate) > slowStanza*5/4 {
		c.setChunk(max(minChunk, slowChunk(c.rate, c.chunk)), now)
	}
}

// endRound adapts the bound, and the chunk, once per round.
func (c *controller) endRound(now time.Time) {
	queue := c.roundMin - c.base
	target := c.effTarget()
	// A round that never filled the bound says nothing about a larger one.
	used := c.roundPeak >= c.cwnd-2*c.chunk
	switch {
	case c.cut || c.roundMin == 0:
	case c.slowStart && queue < target/2:
		c.highRound = false
		if used && c.total >= earlyBytes {
			c.cwnd *= 2
		}
	case c.slowStart && !c.highRound:
		// One round above the target ends the start only if the next
		// agrees: on a long path one slow answer in a round of a few
		// (a server's event loop, a delayed ACK) is as likely as a queue,
		// and leaving the start early costs many round trips.
		c.highRound = true
	case queue < target/4:
		// Well below the target: the path has room. Grow by an eighth a
		// round, much faster than FAST's alpha on a long, fast path, and
		// little enough that the round it takes to see the queue builds
		// only a fraction of the round trip.
		c.slowStart = false
		if used {
			c.cwnd += c.cwnd / 8
		}
	default:
		// FAST TCP's update: the window that would leave nothing queued
		// at this round's smallest round trip, plus alpha, the bytes that
		// make the target's worth of queue at the rate the path delivers;
		// halfway there each round.
		c.slowStart = false
		// The smaller of this round's and the last's: a round of a few
		// blocks whose answers were all late by chance (a server that
		// holds its output for a delayed ACK: 40 ms) is no queue, and one
		// round's delay in seeing a real one is what the cut is for.
		rm := c.roundMin
		if c.prevMin != 0 && c.prevMin < rm {
			rm = c.prevMin
		}
		alpha := max(minChunk, int(c.rate*target.Seconds()))
		goal := int(int64(c.cwnd)*int64(c.base)/int64(rm)) + alpha
		c.cwnd += (goal - c.cwnd) / 2
	}
	c.fitChunk(now)
	// Blocks grow back (or towards a larger chunk the server's software
	// suits) only once the path has carried more than any shaper's burst:
	// ejabberd's lets 20 KB through at full speed before the rate applies.
	if c.chunk < c.chunkMax && c.total >= growAfter && c.rate > 0 && stanzaTime(c.chunk, c.rate) < slowStanza/2 && queue < target {
		c.setChunk(2*c.chunk, now)
	}
	if bw := max(c.bw, c.bwRound); bw > 0 {
		// No more than twice what the path delivers in a base round trip
		// and the target: a bound that makes the blocks wait gains
		// nothing but a queue.
		limit := int(2*bw*(c.base+target).Seconds()) + 2*c.chunk
		if c.cwnd > limit {
			c.cwnd = limit
			c.slowStart = false
		}
	}
	c.bw, c.bwRound = c.bwRound, 0
	c.cwnd = min(max(c.cwnd, c.chunk), c.max)
	c.roundAt = now
	c.roundBytes = 0
	c.roundEnd = c.cwnd
	c.prevMin = c.roundMin
	if c.cut {
		c.prevMin = 0
	}
	c.roundMin = 0
	c.roundPeak = c.inflight
	c.cut = false
	c.appLimited = false
}

// setChunk changes the chunk on a path found slow (or no longer slow).
func (c *controller) setChunk(n int, now time.Time) {
	n = min(n, c.chunkMax)
	if n == c.chunk {
		return
	}
	if n < c.chunk {
		c.cwnd = n
	}
	c.chunk = n
	c.chunkAt = now
}

// stanzaTime is how long a data stanza with chunk bytes of payload takes on
// a path that delivers rate payload bytes per second in such stanzas.
func stanzaTime(chunk int, rate float64) time.Duration {
	return time.Duration(float64(chunk) / rate * float64(time.Second))
}

// slowChunk returns the payload of a data stanza that a path delivering
// rate payload bytes per second (in stanzas with chunk bytes of payload)
// carries in slowStanza.
func slowChunk(rate float64, chunk int) int {
	if rate <= 0 || chunk <= 0 {
		return chunk
	}
	wireRate := rate * float64(stanzaSize(chunk)) / float64(chunk)
	text := wireRate*slowStanza.Seconds() - iqOverhead
	return int(text * 3 / 4)
}

// stanzaSize is roughly the size on the wire of a data IQ carrying n bytes.
func stanzaSize(n int) int { return b64len(n) + iqOverhead }

func b64len(n int) int { return (n + 2) / 3 * 4 }

// iqOverhead is roughly what an IQ and a data element add to the Base64
// text.
const iqOverhead = 200
