package transport

import (
	"container/heap"
	"slices"
	"time"
)

// The loop is the one goroutine that owns an Endpoint's state: the tunnel
// machines, the path's scheduler and in-flight controller, the map of
// tunnels and the timers. Everyone else posts it events — funcs it runs
// with the current time — and returns, or waits for the loop's answer where
// there must be one (a handler's verdict on a received element, a Read's
// data). The loop itself never waits for anything but its next event: it
// does no I/O and takes no lock but the queue's, so a wait for it is short
// and cannot deadlock.
//
// Each turn it runs the events posted since the last, fires the timers that
// are due, brings every tunnel an event touched up to date (wakes its
// reader and writer, ends its Close), lets the path send what it may, and
// sleeps until the next event or the earliest timer.

// post hands f to the loop and returns at once. Once the loop has ended,
// f runs on the caller's goroutine, one at a time.
func (e *Endpoint) post(f func(now time.Time)) {
	e.qmu.Lock()
	if e.stopped {
		e.qmu.Unlock()
		e.deadMu.Lock()
		defer e.deadMu.Unlock()
		now := time.Now()
		f(now)
		e.settle(now)
		return
	}
	e.queue = append(e.queue, f)
	e.qmu.Unlock()
	signal(e.wake)
}

// call runs f on the loop and waits until it has run.
func (e *Endpoint) call(f func(now time.Time)) {
	done := make(chan struct{})
	e.post(func(now time.Time) {
		f(now)
		close(done)
	})
	<-done
}

func (e *Endpoint) run() {
	defer close(e.loopDone)
	var batch []func(time.Time)
	for {
		select {
		case <-e.wake:
		case <-e.timer.C:
		}
		for {
			e.qmu.Lock()
			batch, e.queue = e.queue, batch[:0]
			e.qmu.Unlock()
			now := time.Now()
			for i, f := range batch {
				f(now)
				batch[i] = nil
			}
			e.turn(now)
			e.qmu.Lock()
			if len(e.queue) > 0 {
				e.qmu.Unlock()
				continue
			}
			if e.finished() {
				// Nothing is queued and nothing is left to send: from now
				// on events run where they are posted.
				e.stopped = true
				e.qmu.Unlock()
				e.path.stopWriter()
				return
			}
			e.qmu.Unlock()
			break
		}
		e.rearm(time.Now())
	}
}

// turn does what follows events: timers that are due, tunnels brought up
// to date, the path's sending.
func (e *Endpoint) turn(now time.Time) {
	e.fireTimers(now)
	e.settle(now)
	if e.err == nil || e.closing {
		e.path.pump(now)
		for _, c := range e.bsConns {
			c.bs.pump(now)
		}
		e.settle(now)
	}
	e.endDetached()
}

// finished reports whether the loop may end: the Endpoint has failed or
// been closed, and the path has written all it had to (an abort per
// tunnel) or cannot write any more.
func (e *Endpoint) finished() bool {
	return e.err != nil && e.path.idle()
}

// markDirty notes that an event changed c: the end of the turn brings it up
// to date.
func (e *Endpoint) markDirty(c *Conn) {
	if !c.dirty {
		c.dirty = true
		e.dirty = append(e.dirty, c)
	}
}

// settle brings every tunnel marked dirty up to date.
func (e *Endpoint) settle(now time.Time) {
	for len(e.dirty) > 0 {
		c := e.dirty[len(e.dirty)-1]
		e.dirty[len(e.dirty)-1] = nil
		e.dirty = e.dirty[:len(e.dirty)-1]
		c.dirty = false
		e.update(c, now)
	}
}

// update tells c's waiting callers what they may now learn, and brings its
// place in the scheduler and its timer up to date.
func (e *Endpoint) update(c *Conn, now time.Time) {
	t := c.t
	e.accountSuspension(c, now)
	c.blockSize.Store(int32(t.chunk()))
	// Read and the closers are answered only once the tunnel's state is
	// settled below: whoever a Read that returns EOF or a finished
	// CloseWrite wakes finds Done closed if the tunnel is gone.
	var (
		read    *ioReq
		readN   int
		readErr error
		answers []func() // the closers'
	)
	if r := c.reader; r != nil && t.readable() {
		c.reader = nil
		read = r
		readN, readErr = t.read(r.p)
	}
	if w := c.writer; w != nil {
		c.writer = nil
		e.progressWrite(c, w)
	}
	if len(c.closers) > 0 {
		c.closers = slices.DeleteFunc(c.closers, func(r *closeReq) bool {
			var err error
			switch {
			case r.flush && t.err != nil:
				err = t.err
			case r.flush && t.flushed():
			case r.flush || !t.closeDone():
				return false
			case r.close:
				err = t.finishClose(now)
			default:
				err = t.closeResult()
			}
			answers = append(answers, func() { r.complete(err) })
			return true
		})
	}
	defer func() {
		if read != nil {
			read.complete(readN, readErr)
		}
		for _, a := range answers {
			a()
		}
	}()
	if done, _ := t.established(); done {
		closeOnce(c.estab)
	}
	if t.gone() && !c.forgotten {
		c.forgotten = true
		e.path.cancel(c)
		if c.admitted {
			c.admitted = false
			e.release(t.bare, t.window())
		}
		if c.inflight > 0 {
			e.path.ctl.dropped(c.inflight)
			c.inflight = 0
		}
		if e.tunnels[c.key] == c {
			delete(e.tunnels, c.key)
		}
		if c.bs != nil {
			c.bs.quit(now, e.cfg.CloseTimeout)
		}
		closeOnce(c.goneCh)
	}
	e.path.touch(c, now)
	d := t.deadline()
	if c.bs != nil {
		if x := c.bs.deadline(); !x.IsZero() && (d.IsZero() || x.Before(d)) {
			d = x
		}
	}
	e.armTunnel(c, d)
}

// progressWrite copies what fits of a waiting Write into c's queue and
// completes it once all of it is queued or the tunnel cannot take it.
func (e *Endpoint) progressWrite(c *Conn, w *ioReq) {
	t := c.t
	for {
		if w.n == len(w.p) && w.n > 0 {
			// All of p is queued: what happens to the tunnel from now on
			// is for the next call to report, not this one.
			w.complete(w.n, nil)
			return
		}
		if err := t.writeErr(); err != nil {
			w.complete(w.n, err)
			return
		}
		if w.n == len(w.p) {
			w.complete(0, nil)
			return
		}
		k := t.write(w.p[w.n:])
		if k == 0 {
			c.writer = w
			return
		}
		w.n += k
	}
}

// addTunnel makes c known to the Endpoint.
func (e *Endpoint) addTunnel(c *Conn, now time.Time) {
	e.tunnels[c.key] = c
	c.t.heard(now)
	e.markDirty(c)
	if _, ok := e.sess.(sessionState); ok && e.watchAt.IsZero() {
		e.watchAt = now.Add(watchInterval)
	}
}

// forget brings c, which is gone, up to date at once: its key and its
// limits are free for what comes next.
func (e *Endpoint) forget(c *Conn) {
	e.update(c, time.Now())
}

// shutdown fails every tunnel with err. dead says the session can no longer
// write: nothing more is sent.
func (e *Endpoint) shutdown(err error, dead bool) {
	if dead {
		e.path.kill()
	}
	if e.err != nil {
		return
	}
	e.err = err
	for _, c := range e.conns() {
		c.t.fail(err)
		e.markDirty(c)
	}
}

func (e *Endpoint) conns() []*Conn {
	cs := make([]*Conn, 0, len(e.tunnels))
	for _, c := range e.tunnels {
		cs = append(cs, c)
	}
	return cs
}

// watch checks, while tunnels exist, that the session is alive: mellium
// offers no notification when Serve returns, and what is in flight would
// otherwise wait for its timeouts.
func (e *Endpoint) watch(now time.Time) {
	if e.watchAt.IsZero() || now.Before(e.watchAt) {
		return
	}
	e.watchAt = time.Time{}
	st, ok := e.sess.(sessionState)
	if !ok || e.err != nil {
		return
	}
	if st.State()&xmppClosed != 0 {
		e.lose(ErrSessionClosed, now)
		return
	}
	if len(e.tunnels) > 0 {
		e.watchAt = now.Add(watchInterval)
	}
}

// Timers: one timer for the loop, at the earliest of the tunnels'
// deadlines (kept in a heap; an entry whose tunnel has since chosen another
// deadline is stale and skipped) and the Endpoint's own.

type timerEntry struct {
	at time.Time
	c  *Conn
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = timerEntry{}
	*h = old[:len(old)-1]
	return x
}

// armTunnel makes sure c's timer fires no later than d (zero: none).
func (e *Endpoint) armTunnel(c *Conn, d time.Time) {
	if d.IsZero() {
		c.timerAt = time.Time{}
		return
	}
	if c.timerAt.IsZero() || d.Before(c.timerAt) {
		c.timerAt = d
		heap.Push(&e.timers, timerEntry{at: d, c: c})
	}
}

// fireTimers runs the timers that are due.
func (e *Endpoint) fireTimers(now time.Time) {
	for len(e.timers) > 0 && !now.Before(e.timers[0].at) {
		x := heap.Pop(&e.timers).(timerEntry)
		if !x.at.Equal(x.c.timerAt) {
			continue // stale
		}
		x.c.timerAt = time.Time{}
		x.c.t.onTimer(now)
		if x.c.bs != nil {
			x.c.bs.onTimer(now)
		}
		e.markDirty(x.c)
	}
	e.watch(now)
	e.path.onTimer(now)
}

// rearm sets the loop's timer to the earliest deadline.
func (e *Endpoint) rearm(now time.Time) {
	var d time.Time
	at := func(x time.Time) {
		if !x.IsZero() && (d.IsZero() || x.Before(d)) {
			d = x
		}
	}
	if len(e.timers) > 0 {
		at(e.timers[0].at)
	}
	at(e.watchAt)
	at(e.path.deadline())
	if d.IsZero() {
		e.timer.Stop()
		return
	}
	e.timer.Reset(max(d.Sub(now), 0))
}
