package transport

import (
	"context"
	"io"
	"net"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// Addr is the address of one end of a tunnel: a full JID.
type Addr struct {
	JID jid.JID
}

// Network returns "xmpp".
func (a Addr) Network() string { return "xmpp" }

// String returns the full JID.
func (a Addr) String() string { return a.JID.String() }

type connState int

const (
	stateOpening connState = iota // initiator: start sent, proceed not yet received
	stateOpen                     // established
	stateGone                     // both directions closed, or failed
)

// Conn is one tunnel: a reliable, ordered byte stream to a peer's full JID.
// It implements net.Conn. Close flushes what was written (within
// Config.CloseTimeout), closes this direction and stops reading; CloseWrite
// closes only this direction, like a TCP half-close.
type Conn struct {
	ep        *Endpoint
	peer      jid.JID
	peerStr   string
	sid       string
	key       tunnelKey
	initiator bool
	blockSize int // the largest payload we accept

	ctx    context.Context // parent of every IQ's context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the sender and every in-flight IQ (added to only by the sender)

	rdl, wdl            *deadline
	readSem, wrSem      chan struct{} // serialise Read and Write callers
	readWake            chan struct{} // capacity 1: data, EOF or failure for Read
	writeWake           chan struct{} // capacity 1: room, credit or failure for Write
	sendWake            chan struct{} // capacity 1: work for the sender
	estab               chan struct{} // closed when opening is over
	closed              chan struct{} // closed when our close is answered, or on failure
	gone                chan struct{} // closed when the tunnel is gone (failure or both closed)
	senderDone          chan struct{}
	startOnce, stopOnce sync.Once

	mu      sync.Mutex
	state   connState
	wasOpen bool  // the tunnel was established (proceed sent or received)
	err     error // why the tunnel failed; nil if it has not or ended cleanly

	// Send side.
	sendQ         []byte // written, not yet in a block
	sflow         sendFlow
	nextSeq       uint16
	oldest        uint16 // oldest unacknowledged seq
	unacked       [256]*flight
	nUnacked      int
	retrans       []*flight
	issuing       chan struct{} // written channel of the IQ the sender is issuing
	startSent     bool
	firstFlight   bool // data seq 0 sent before proceed
	writeClosed   bool // CloseWrite or Close called
	closeSent     bool
	closeAcked    bool
	abortCond     stanza.Condition
	abortSent     bool
	creditDue     bool
	rtt           rttEstimator
	b64           []byte // Base64 text of the data element being encoded
	closeCalled   bool
	linger        *time.Timer
	peerBlockSize int
	reserved      int       // session budget held by unacknowledged blocks
	budgetWait    bool      // queued for session budget (guarded by the budget's mutex)
	deferred      []*flight // data refused while opening, sent again once established
	pendingErr    error     // a data error while opening, applied once established

	// Receive side.
	rflow       recvFlow
	ro          reorder
	readQ       [][]byte
	readOff     int
	peerClosed  bool // the peer closed its direction: EOF after the buffer
	readStopped bool // Close called: data from the peer is refused
}

func newConn(e *Endpoint, peer jid.JID, sid string, initiator bool) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		ep:         e,
		peer:       peer,
		peerStr:    peer.String(),
		sid:        sid,
		initiator:  initiator,
		blockSize:  e.cfg.BlockSize,
		ctx:        ctx,
		cancel:     cancel,
		rdl:        newDeadline(),
		wdl:        newDeadline(),
		readSem:    make(chan struct{}, 1),
		wrSem:      make(chan struct{}, 1),
		readWake:   make(chan struct{}, 1),
		writeWake:  make(chan struct{}, 1),
		sendWake:   make(chan struct{}, 1),
		estab:      make(chan struct{}),
		closed:     make(chan struct{}),
		gone:       make(chan struct{}),
		senderDone: make(chan struct{}),
	}
	c.key = tunnelKey{c.peerStr, sid}
	c.rflow.init(e.cfg.Window, e.cfg.MaxWindow)
	c.rtt.init(e.cfg)
	if initiator {
		// Until proceed: one data element of at most FirstFlightMax bytes
		// (see chunkLocked).
		c.sflow.limit = xstanza.FirstFlightMax
	}
	return c
}

// accepted sets up a responder from the initiator's start.
func (c *Conn) accepted(st xstanza.Start) {
	c.state = stateOpen
	c.wasOpen = true
	c.peerBlockSize = st.BlockSize
	c.sflow.limit = uint64(st.Window)
	close(c.estab)
}

// proceed is the responder's answer to start.
func (c *Conn) proceed() xstanza.Proceed {
	return xstanza.Proceed{SID: c.sid, BlockSize: c.blockSize, Window: int(c.rflow.window)}
}

// start runs the sender.
func (c *Conn) start() {
	c.startOnce.Do(func() {
		c.wg.Add(1)
		go c.sendLoop()
	})
}

// discard releases a conn that was never started (a refused start).
func (c *Conn) discard() {
	c.startOnce.Do(func() { close(c.senderDone) })
}

// startPending reports whether c is an initiator whose start has not been
// answered: a start from the peer with the same sid then crossed it.
func (c *Conn) startPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.initiator && c.state == stateOpening
}

// crossedBy makes c, an initiator that lost a crossing, give way to the
// peer's tunnel r. It waits until the stanza c's sender may be writing is
// out, so that nothing of c follows r's proceed.
func (c *Conn) crossedBy(r *Conn) {
	c.mu.Lock()
	w := c.issuing
	c.mu.Unlock()
	c.failWith(&CrossedError{Conn: r}, false)
	if w != nil {
		<-w
	}
}

// LocalAddr returns our full JID.
func (c *Conn) LocalAddr() net.Addr { return Addr{c.ep.local} }

// RemoteAddr returns the peer's full JID.
func (c *Conn) RemoteAddr() net.Addr { return Addr{c.peer} }

// Peer returns the peer's full JID.
func (c *Conn) Peer() jid.JID { return c.peer }

// SID returns the tunnel's sid.
func (c *Conn) SID() string { return c.sid }

// Initiator reports whether this side sent the start.
func (c *Conn) Initiator() bool { return c.initiator }

// chunkLocked is the largest payload of the next data element: the
// Endpoint's chunk size (which SetChunkSize may change while the tunnel
// runs) within the peer's block-size, or FirstFlightMax until the peer's
// block-size is known.
func (c *Conn) chunkLocked() int {
	if c.peerBlockSize == 0 {
		return xstanza.FirstFlightMax
	}
	return min(c.peerBlockSize, c.ep.ChunkSize())
}

// PeerBlockSize returns the block-size the peer announced (0 before it is
// known).
func (c *Conn) PeerBlockSize() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerBlockSize
}

// Established waits until the peer has accepted the tunnel (it returns nil at
// once for a tunnel the peer started) or refused it, or ctx ends. A refusal
// comes back as a *PeerError wrapping the peer's stanza.Error; a lost
// crossing as a *CrossedError.
func (c *Conn) Established(ctx context.Context) error {
	select {
	case <-c.estab:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wasOpen {
		return nil
	}
	return c.err
}

// Read reads data in order. It returns io.EOF once the peer has closed its
// direction and everything it sent has been read, and the error that ended
// the tunnel if it failed, once the data that had arrived in order before
// the failure has been read.
func (c *Conn) Read(p []byte) (int, error) {
	if !acquire(c.readSem, c.rdl) {
		return 0, timeoutError{}
	}
	defer func() { <-c.readSem }()
	for {
		c.mu.Lock()
		if c.closeCalled {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		if c.rdl.passed() {
			c.mu.Unlock()
			return 0, timeoutError{}
		}
		// What arrived in order was accepted (acknowledged): a failure
		// that comes later does not take it back.
		if len(c.readQ) > 0 {
			n := c.readLocked(p)
			c.mu.Unlock()
			return n, nil
		}
		// The peer closed its direction after all its data had been
		// acknowledged: that direction ended cleanly, whatever happened
		// to ours afterwards (a write refused because the peer's tunnel
		// is gone, say). The failure is for Write and Close to report.
		if c.peerClosed {
			c.mu.Unlock()
			return 0, io.EOF
		}
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return 0, err
		}
		c.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		select {
		case <-c.readWake:
		case <-c.rdl.wait():
			return 0, timeoutError{}
		}
	}
}

// readLocked copies buffered data into p and grants credit as due.
func (c *Conn) readLocked(p []byte) int {
	n := 0
	for n < len(p) && len(c.readQ) > 0 {
		b := c.readQ[0]
		k := copy(p[n:], b[c.readOff:])
		n += k
		c.readOff += k
		if c.readOff == len(b) {
			putBuf(b)
			c.readQ[0] = nil
			c.readQ = c.readQ[1:]
			c.readOff = 0
		}
	}
	if len(c.readQ) == 0 {
		c.readQ = nil
	}
	c.rflow.consume(n)
	if _, due := c.rflow.update(); due && !c.peerClosed && c.state != stateGone {
		c.creditDue = true
		signal(c.sendWake)
	}
	return n
}

// Write queues p for sending. It blocks while a block's worth of data is
// queued and the peer's credit or the window of unacknowledged IQs holds the
// sender back, and returns once every byte is queued (not acknowledged: Close
// and CloseWrite wait for that). A failure of the tunnel after the last byte
// was queued is reported by the next call, not by this one.
func (c *Conn) Write(p []byte) (int, error) {
	if !acquire(c.wrSem, c.wdl) {
		return 0, timeoutError{}
	}
	defer func() { <-c.wrSem }()
	n := 0
	for {
		if n == len(p) && n > 0 {
			// All of p is queued: what happens to the tunnel from now on
			// is for the next call to report, not this one.
			return n, nil
		}
		c.mu.Lock()
		if err := c.writeErrLocked(); err != nil {
			c.mu.Unlock()
			return n, err
		}
		if c.wdl.passed() {
			c.mu.Unlock()
			return n, timeoutError{}
		}
		if n == len(p) {
			c.mu.Unlock()
			return n, nil
		}
		if room := c.chunkLocked() - len(c.sendQ); room > 0 {
			if c.sendQ == nil {
				c.sendQ = getBuf(c.chunkLocked())
			}
			k := min(room, len(p)-n)
			c.sendQ = append(c.sendQ, p[n:n+k]...)
			n += k
			c.mu.Unlock()
			signal(c.sendWake)
			continue
		}
		c.mu.Unlock()
		select {
		case <-c.writeWake:
		case <-c.wdl.wait():
			return n, timeoutError{}
		}
	}
}

func (c *Conn) writeErrLocked() error {
	switch {
	case c.closeCalled:
		return net.ErrClosed
	case c.err != nil:
		return c.err
	case c.writeClosed:
		return ErrWriteClosed
	}
	return nil
}

// CloseWrite closes this direction: once everything written has been
// acknowledged, a close element tells the peer that no more data comes, and
// CloseWrite returns when the peer has answered it (or the tunnel failed, or
// Config.CloseTimeout passed). Reading goes on until the peer closes its own
// direction.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	if c.closeCalled {
		c.mu.Unlock()
		return net.ErrClosed
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.writeClosed = true
	c.mu.Unlock()
	signal(c.sendWake)
	signal(c.writeWake)
	return c.waitClosed()
}

// waitClosed waits for our close to be answered, as long as the session's
// IQs are answered at least once per close timeout; past it the tunnel is
// aborted (resource-constraint: the peer did not take the data).
func (c *Conn) waitClosed() error {
	d := c.ep.cfg.CloseTimeout
	t := time.NewTimer(d)
	defer t.Stop()
wait:
	for {
		select {
		case <-c.closed:
			break wait
		case <-t.C:
			// A slow path that is still delivering gets more time: the
			// bound is on the time without progress.
			if since := time.Since(c.ep.lastAnswer()); since < d {
				t.Reset(d - since)
				continue
			}
			c.Abort(stanza.ResourceConstraint, "close timed out with data unacknowledged")
			break wait
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeAcked {
		return nil
	}
	return c.err
}

// Close flushes what was written (it waits, within Config.CloseTimeout, for
// the peer to acknowledge it, whatever the write deadline says), closes this
// direction and stops reading: data the peer sends afterwards is refused with
// item-not-found. Pending and later Reads and Writes return net.ErrClosed.
// Close returns nil if everything written reached the peer, and the error
// that prevented it otherwise. Calling Close again returns nil.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closeCalled {
		c.mu.Unlock()
		return nil
	}
	c.closeCalled = true
	failed := c.err
	c.writeClosed = true
	opening := c.state == stateOpening
	c.mu.Unlock()
	if opening {
		// Nothing can be flushed before the peer answers: give up at once.
		c.Abort(stanza.UndefinedCondition, "closed before the tunnel was established")
		c.mu.Lock()
		failed = c.err
		c.mu.Unlock()
	}
	signal(c.sendWake)
	c.wakeAll()
	var err error
	if failed == nil {
		err = c.waitClosed()
	} else if _, ok := failed.(*CrossedError); !ok {
		err = failed
	}
	c.mu.Lock()
	c.readStopped = true
	c.releaseRecvLocked()
	both := c.peerClosed
	c.mu.Unlock()
	if both || err != nil {
		c.finish(nil)
	} else {
		c.lingerFor(c.ep.cfg.Linger)
	}
	signal(c.sendWake)
	c.stopIQs()
	c.wait(c.ep.cfg.CloseTimeout)
	return err
}

// lingerFor keeps a closed tunnel known for d, so that the peer's close is
// answered closed rather than item-not-found.
func (c *Conn) lingerFor(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateGone || c.linger != nil {
		return
	}
	c.linger = time.AfterFunc(d, func() { c.finish(nil) })
}

// Abort aborts both directions at once: the peer gets a close with the error
// condition cond, and pending and later Reads and Writes on both ends fail
// with an *AbortError. reason is for our own error and logs.
func (c *Conn) Abort(cond stanza.Condition, reason string) {
	c.mu.Lock()
	if c.state == stateGone || c.abortCond != "" {
		c.mu.Unlock()
		return
	}
	if c.initiator && !c.startSent {
		c.startSent = true // never started: nothing to tell the peer
	} else {
		c.abortCond = cond
	}
	c.mu.Unlock()
	c.ep.log.Info("xtls: tunnel aborted", "peer", c.peerStr, "sid", c.sid, "condition", cond, "reason", reason)
	c.failWith(&AbortError{Condition: cond, Reason: reason}, false)
	signal(c.sendWake)
}

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline sets the read deadline; a pending Read returns a timeout
// error (os.ErrDeadlineExceeded) when it passes. The deadline may be moved.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the write deadline. A Write that times out has
// queued the bytes it reports and nothing more; the tunnel remains usable.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdl.set(t)
	return nil
}

// Done returns a channel that is closed when the tunnel is gone: both
// directions closed, or failed.
func (c *Conn) Done() <-chan struct{} { return c.gone }

// PeerClosed reports whether the peer has closed its direction.
func (c *Conn) PeerClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerClosed
}

// Err returns why the tunnel failed, or nil.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// acquire takes the semaphore sem, waiting at most until d passes.
func acquire(sem chan struct{}, d *deadline) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	select {
	case sem <- struct{}{}:
		return true
	case <-d.wait():
		return false
	}
}

func (c *Conn) wakeAll() {
	signal(c.readWake)
	signal(c.writeWake)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func closeOnce(ch chan struct{}) {
	if !isClosed(ch) {
		close(ch)
	}
}

// failWith ends the tunnel with err (if it has not ended). dead says the
// session can no longer write, so IQ contexts are cancelled at once instead
// of once the sender has stopped.
func (c *Conn) failWith(err error, dead bool) {
	c.mu.Lock()
	if c.state == stateGone {
		c.mu.Unlock()
		if dead {
			c.cancel()
		}
		return
	}
	c.err = err
	c.mu.Unlock()
	c.finish(err)
	if dead {
		c.cancel()
	}
}

// finish makes the tunnel gone: it is forgotten by the Endpoint, its waiters
// are woken and, once the sender has stopped and every stanza it issued is
// written, the contexts of IQs still waiting for results are cancelled.
func (c *Conn) finish(err error) {
	c.mu.Lock()
	if c.state == stateGone {
		c.mu.Unlock()
		return
	}
	c.state = stateGone
	if c.linger != nil {
		c.linger.Stop()
	}
	closeOnce(c.estab)
	closeOnce(c.closed)
	closeOnce(c.gone)
	if err != nil {
		// Blocks held behind a gap can never be delivered; those in order
		// stay for Read (Close releases them).
		c.ro.release(putBuf)
	}
	c.releaseSendLocked()
	reserved := c.reserved
	c.reserved = 0
	c.mu.Unlock()
	c.ep.budget.forget(c, reserved)
	c.ep.remove(c)
	c.wakeAll()
	signal(c.sendWake)
	c.stopIQs()
}

// stopIQs cancels, once the sender has stopped and everything it issued is
// written, the IQs still waiting for their results: the tunnel is gone, or
// it was closed and no longer reads, so no answer matters any more.
func (c *Conn) stopIQs() {
	c.stopOnce.Do(func() {
		go func() {
			<-c.senderDone
			c.ep.syncOut()
			c.cancel()
		}()
	})
}

// wait waits up to d for the tunnel's sender and IQ goroutines to end. Once
// the sender has stopped nothing adds to c.wg any more, so waiting on it is
// safe from then on.
func (c *Conn) wait(d time.Duration) {
	ch := make(chan struct{})
	go func() {
		<-c.senderDone
		c.wg.Wait()
		close(ch)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		c.ep.log.Warn("xtls: tunnel goroutines still running after close", "peer", c.peerStr, "sid", c.sid)
	}
}

func (c *Conn) releaseRecvLocked() {
	for _, b := range c.readQ {
		putBuf(b)
	}
	c.readQ = nil
	c.readOff = 0
	c.ro.release(putBuf)
}

func (c *Conn) releaseSendLocked() {
	if c.sendQ != nil {
		putBuf(c.sendQ)
		c.sendQ = nil
	}
	// Payloads of unacknowledged blocks are left to the garbage collector:
	// an IQ goroutine may be encoding one right now.
	clear(c.unacked[:])
	c.nUnacked = 0
	c.retrans = nil
}
