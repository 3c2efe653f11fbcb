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
// acknowledgements) the bound moves halfway towards the window that would
// keep target of queueing delay at the rate the path delivered, plus one
// block to probe for more; a round trip far above that target cuts the
// bound at once. It starts by doubling each round while the queue stays
// below half the target.
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
	target   time.Duration // queueing delay aimed at
	cwnd     int           // payload bytes allowed in flight
	inflight int
	max      int // Config.SessionWindow
	chunkMax int // the chunk size the Endpoint wants
	chunk    int // the chunk size allowed now: chunkMax, or less on a slow path

	slowStart bool

	// base round trip: the smallest of this period and the last.
	base, cur, last time.Duration
	periodAt        time.Time

	// the current round
	roundAt    time.Time
	roundBytes int // acknowledged this round
	roundEnd   int // the round ends once this much is acknowledged
	roundMin   time.Duration
	cut        bool      // the bound was cut this round
	cutUntil   time.Time // no other cut before then
	appLimited bool      // the path had room and nothing to send this round

	rate float64 // payload bytes per second delivered (smoothed over rounds)
}

const (
	// basePeriod is how long a smallest round trip stays the base: long
	// enough to span the rounds a standing queue lasts, short enough to
	// follow a path that became slower.
	basePeriod = 10 * time.Second
	// The bound starts at initialBlocks blocks and at least initialMin
	// bytes: enough for the first round trips of a fast path, little
	// enough for a slow one to drain in a few seconds.
	initialBlocks = 4
	initialMin    = 16 << 10
	// slowStanza is how long one data stanza may take to cross a slow
	// path: the chunk shrinks to what the path delivers in this time.
	slowStanza = 200 * time.Millisecond
	// minChunk bounds the chunk from below on the slowest paths.
	minChunk = 128
)

func newController(target time.Duration, chunk, maximum int) *controller {
	c := &controller{target: target, chunkMax: chunk, chunk: chunk, max: max(maximum, chunk), slowStart: true}
	c.cwnd = min(max(initialBlocks*chunk, initialMin), c.max)
	c.roundEnd = c.cwnd
	return c
}

// setChunkMax sets the chunk size the Endpoint wants (SetChunkSize).
func (c *controller) setChunkMax(n int) {
	c.chunkMax = n
	c.chunk = min(max(c.chunk, minChunk), n)
	if c.chunk < n && c.base == 0 {
		c.chunk = n // nothing measured: no reason to be smaller
	}
	c.cwnd = max(c.cwnd, c.chunk)
}

// room returns how many more payload bytes may be sent now. With nothing
// in flight one block may always go.
func (c *controller) room() int {
	if c.inflight == 0 {
		return max(c.cwnd, c.chunk)
	}
	return max(0, c.cwnd-c.inflight)
}

// roomFresh is room for a tunnel that has just become active: one block
// beyond the bound, never beyond the maximum.
func (c *controller) roomFresh() int {
	return max(0, min(c.room()+c.chunk, c.max-c.inflight))
}

// sent records n payload bytes sent for the first time.
func (c *controller) sent(n int) { c.inflight += n }

// dropped returns n payload bytes that will not be acknowledged (their
// tunnel is gone).
func (c *controller) dropped(n int) { c.inflight = max(0, c.inflight-n) }

// idle notes that the path had room and nothing to send: this round's
// rate says what the tunnels offered, not what the path can carry.
func (c *controller) idle() { c.appLimited = true }

// acked returns n payload bytes acknowledged rtt after they left, at now,
// and adapts the bound.
func (c *controller) acked(n int, rtt time.Duration, now time.Time) {
	c.inflight = max(0, c.inflight-n)
	if n <= 0 || rtt <= 0 {
		return
	}
	if c.periodAt.IsZero() || now.Sub(c.periodAt) > basePeriod {
		c.last, c.cur, c.periodAt = c.cur, 0, now
	}
	if c.cur == 0 || rtt < c.cur {
		c.cur = rtt
	}
	c.base = c.cur
	if c.last != 0 && c.last < c.base {
		c.base = c.last
	}
	if c.roundAt.IsZero() {
		c.roundAt = now
	}
	c.roundBytes += n
	if c.roundMin == 0 || rtt < c.roundMin {
		c.roundMin = rtt
	}
	if rtt-c.base > 4*c.target && c.cwnd > c.chunk && !now.Before(c.cutUntil) {
		// A round trip far above the target: the window built a queue
		// that every other stanza of the session now waits behind. Cut
		// at once, and start a round from here; the acknowledgements of
		// what left before the cut say nothing new.
		c.cutUntil = now.Add(rtt)
		c.cwnd = max(c.chunk, int(int64(c.cwnd)*int64(c.base+c.target)/int64(rtt)))
		c.slowStart = false
		c.cut = true
		c.endRound(now)
		return
	}
	if c.roundBytes >= c.roundEnd {
		c.endRound(now)
	}
}

// endRound adapts the bound, and the chunk, once per round.
func (c *controller) endRound(now time.Time) {
	if d := now.Sub(c.roundAt); d > 0 && c.roundBytes > 0 {
		// A round in which the tunnels had less to send than the path
		// could take says only that the path can carry at least that.
		if r := float64(c.roundBytes) / d.Seconds(); !c.appLimited || r > c.rate {
			if c.rate == 0 {
				c.rate = r
			} else {
				c.rate += (r - c.rate) / 2
			}
		}
	}
	queue := c.roundMin - c.base
	switch {
	case c.cut || c.roundMin == 0:
	case c.slowStart && queue < c.target/2:
		c.cwnd *= 2
	default:
		c.slowStart = false
		goal := int(int64(c.cwnd)*int64(c.base+c.target)/int64(c.roundMin)) + c.chunk
		c.cwnd += (goal - c.cwnd) / 2
	}
	// No single stanza may hold the path for much longer than slowStanza:
	// it is the queue a ping meets behind even one block in flight.
	if c.rate > 0 {
		switch t := stanzaTime(c.chunk, c.rate); {
		case t > slowStanza*3/2 && !c.appLimited:
			c.setChunk(max(minChunk, slowChunk(c.rate, c.chunk)), now)
		case t < slowStanza/2 && queue < c.target && c.chunk < c.chunkMax:
			c.setChunk(2*c.chunk, now)
		}
	}
	c.cwnd = min(max(c.cwnd, c.chunk), c.max)
	c.roundAt = now
	c.roundBytes = 0
	c.roundEnd = c.cwnd
	c.roundMin = 0
	c.cut = false
	c.appLimited = false
}

// setChunk changes the chunk on a path found slow (or no longer slow). The
// smallest round trip then includes another stanza's time on the path: it
// is measured again.
func (c *controller) setChunk(n int, now time.Time) {
	n = min(n, c.chunkMax)
	if n == c.chunk {
		return
	}
	if n < c.chunk {
		c.cwnd = n
	}
	c.chunk = n
	c.cur, c.last, c.periodAt = 0, 0, now
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
