package transport

import (
	"sync"
	"time"
)

// budget bounds the payload bytes that all tunnels of one session have sent
// and not yet seen acknowledged, and shares them out first come, first
// served.
//
// Why a session needs it: mellium writes the answer to every IQ from the
// session's Serve goroutine, under the same output lock as the tunnels' own
// data. If that lock is held by a write the server does not take (it is busy
// writing to us, and we are not reading, because Serve waits for the lock),
// the session deadlocks through the server. ejabberd does exactly this: its
// per-client process blocks on a full socket and stops reading that client.
// Per-tunnel windows do not prevent it (fifty tunnels with a 1 MiB window
// each can have 50 MiB in flight); a bound on the whole session keeps what
// the server may have to queue for us within what the sockets buffer.
//
// The bound adapts to what the path delivers, as TCP Vegas does: it grows
// while acknowledgements come back as fast as the fastest ever seen, and
// shrinks once they come back later because the bytes queue somewhere (a
// server's rate limit, say), keeping only a little queued. A shaped server
// then reads each stanza as it arrives instead of leaving the socket full.
type budget struct {
	mu       sync.Mutex
	cwnd     int // bytes allowed in flight
	inflight int
	min, max int
	// alpha and beta bound the bytes estimated queued on the path: below
	// alpha the bound grows, above beta it shrinks.
	alpha, beta int
	waiters     []*Conn // FIFO; only the head may take budget

	base     time.Duration // smallest round trip seen (this period or the last)
	cur      time.Duration // smallest round trip of this period
	periodAt time.Time
}

const (
	// rttNoise is how much longer than the fastest round trip an
	// acknowledgement may take without counting as queueing: the work of
	// busy endpoints, and a little queue on purpose. A server whose output
	// queue runs dry pays for it: Prosody with Nagle on holds the tail of a
	// stanza for the client's delayed ACK (40 ms), so keeping only two to
	// four blocks queued there cost two thirds of the throughput.
	rttNoise      = 25 * time.Millisecond
	basePeriod    = 30 * time.Second
	initialBlocks = 8        // the bound starts at eight blocks,
	initialMin    = 64 << 10 // and at least 64 KiB, and adapts
)

// init sets the bounds for blocks of up to chunk bytes: at least two blocks,
// at most the configured session window. Like Vegas's thresholds in
// packets, the bound aims at two to four blocks queued on the path.
func (b *budget) init(chunk, maximum int) {
	b.min, b.max = 2*chunk, max(2*chunk, maximum)
	b.alpha, b.beta = 2*chunk, 4*chunk
	b.cwnd = min(max(initialBlocks*chunk, initialMin), b.max)
}

// setChunk moves the thresholds that count in blocks to blocks of chunk
// bytes; the bound itself moves within them as it does anyway.
func (b *budget) setChunk(chunk int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.min = 2 * chunk
	b.max = max(b.min, b.max)
	b.alpha, b.beta = 2*chunk, 4*chunk
	b.cwnd = max(b.cwnd, b.min)
}

func (b *budget) availLocked() int { return b.cwnd - b.inflight }

// reserve takes n bytes for c, or queues c and returns false; c's sender is
// signalled when it is c's turn.
func (b *budget) reserve(c *Conn, n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.waiters) > 0 && b.waiters[0] != c {
		b.enqueueLocked(c)
		return false
	}
	if b.availLocked() < n {
		b.enqueueLocked(c)
		return false
	}
	b.inflight += n
	if len(b.waiters) > 0 && b.waiters[0] == c {
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
		c.budgetWait = false
		if len(b.waiters) > 0 && b.availLocked() > 0 {
			signal(b.waiters[0].sendWake)
		}
	}
	return true
}

// enqueueLocked adds c to the waiters once.
func (b *budget) enqueueLocked(c *Conn) {
	if !c.budgetWait {
		c.budgetWait = true
		b.waiters = append(b.waiters, c)
	}
}

// acked returns the n bytes of a block acknowledged after rtt and adapts
// the bound. Each attempt of a block has its own IQ and
// send time, so any answer gives a valid sample.
func (b *budget) acked(n int, rtt time.Duration, now time.Time) {
	b.mu.Lock()
	if n > 0 {
		if now.Sub(b.periodAt) > basePeriod {
			b.base, b.cur, b.periodAt = b.cur, 0, now
		}
		if b.cur == 0 || rtt < b.cur {
			b.cur = rtt
		}
		if b.base == 0 || rtt < b.base {
			b.base = rtt
		}
		// What the round trip has above the fastest one seen is the bytes
		// queued on the path, less rttNoise.
		queued := 0
		if d := rtt - b.base - rttNoise; d > 0 {
			queued = int(int64(b.cwnd) * int64(d) / int64(rtt))
		}
		// Vegas's thresholds are a few packets; with a large bound, the
		// jitter of a long path alone would read as that much queued, so
		// they grow with the bound: at most an eighth of it queued.
		alpha, beta := max(b.alpha, b.cwnd/16), max(b.beta, b.cwnd/8)
		switch {
		case queued < alpha:
			b.cwnd = min(b.max, b.cwnd+n/2)
		case queued > beta:
			b.cwnd = max(b.min, b.cwnd-n/2)
		}
	}
	b.mu.Unlock()
	b.release(n)
}

// release returns n bytes and wakes the first waiter.
func (b *budget) release(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.inflight -= n
	var w *Conn
	if len(b.waiters) > 0 {
		w = b.waiters[0]
	}
	b.mu.Unlock()
	if w != nil {
		signal(w.sendWake)
	}
}

// forget removes c from the waiters (its tunnel is gone) and returns its
// reserved bytes.
func (b *budget) forget(c *Conn, reserved int) {
	b.mu.Lock()
	if c.budgetWait {
		for i, w := range b.waiters {
			if w == c {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
		c.budgetWait = false
	}
	b.mu.Unlock()
	b.release(reserved)
}
