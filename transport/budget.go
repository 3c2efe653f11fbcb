package transport

import "sync"

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
type budget struct {
	mu      sync.Mutex
	avail   int
	waiters []*Conn // FIFO; only the head may take budget
}

func (b *budget) init(n int) { b.avail = n }

// reserve takes n bytes for c, or queues c and returns false; c's sender is
// signalled when it is c's turn.
func (b *budget) reserve(c *Conn, n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.waiters) > 0 && b.waiters[0] != c {
		b.enqueueLocked(c)
		return false
	}
	if b.avail < n {
		b.enqueueLocked(c)
		return false
	}
	b.avail -= n
	if len(b.waiters) > 0 && b.waiters[0] == c {
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
		c.budgetWait = false
		if len(b.waiters) > 0 && b.avail > 0 {
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

// release returns n bytes and wakes the first waiter.
func (b *budget) release(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.avail += n
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
