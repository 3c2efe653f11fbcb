package transport

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// tunnel is one tunnel's state machine: the send scheduler, the receiver
// rules, credit, reordering, retransmission, half-close and abort of
// docs/protocol.md, with no I/O, no goroutines, no channels and no clock.
// Its driver (the Endpoint's loop, or a test) calls it with events — the
// application's reads, writes and closes, elements received, answers to the
// elements it sent, the time passing — and asks it what to send next
// (next), when it next needs the time (deadline) and what its callers may
// now learn (readable, writable, closeDone, gone). The time is always
// passed in.
//
// It names the blocks it sends by seq and never learns how they travel: a
// path (the IQ path today) carries each flight and reports its answer.
type tunnel struct {
	env       *env
	sid       string
	peer      string // the peer's full JID, for logs
	bare      string // the peer's bare JID, whose limits the tunnel counts against
	initiator bool
	blockSize int // the largest payload we accept

	state   tstate
	wasOpen bool  // the tunnel was established (proceed sent or received)
	err     error // why the tunnel failed; nil if it has not, or ended cleanly
	// held is set on a responder from its creation until its proceed is
	// written: nothing of the tunnel may leave before it.
	held bool

	// Send side.
	sendQ         []byte // written, not yet in a block
	sflow         sendFlow
	nextSeq       uint16
	oldest        uint16 // oldest unacknowledged seq
	unacked       [256]*flight
	nUnacked      int
	ctrl          []*flight // control flights sent and not yet answered
	retrans       []*flight // flights to send again, in order
	startSent     bool
	firstFlight   bool // data seq 0 sent before proceed
	writeClosed   bool // CloseWrite or Close called
	closeSent     bool
	closeAcked    bool
	abortCond     stanza.Condition
	abortWhy      string // the reason the abort carries (xtls/stanza's Reason constants)
	abortSent     bool
	creditDue     bool
	closeCalled   bool
	closeFrom     time.Time // when Close or CloseWrite began to wait (zero: not waiting)
	lingerUntil   time.Time // a closed tunnel is forgotten then (zero: not lingering)
	finishPending bool      // gone once the answer to the peer's close is written
	peerBlockSize int
	// pathChunk, if not zero, is the largest payload the path that now
	// carries the tunnel's data wants in one block, instead of env.chunk
	// (a bytestream wants the peer's block-size).
	pathChunk  int
	deferred   []*flight // data refused while opening, sent again once established
	pendingErr error     // a data error while opening, applied once established
	rtt        rttEstimator
	// lastHeard is when the peer last sent us anything: an element or an
	// answer. A tunnel that hears nothing for Config.KeepAlive probes the
	// peer, and one that hears nothing for KeepAlive and KeepAliveTimeout
	// together fails with a *PeerGoneError.
	lastHeard time.Time
	probeDue  bool // a keep-alive probe is to be sent
	probing   bool // one was sent since lastHeard
	// holdUntil holds the timeouts of data blocks after one was sent
	// again on a timeout, until that one has had a timeout of its own or
	// a data block is acknowledged.
	holdUntil time.Time
	// re is the tunnel's re-attachment (reattach.go): whether it may be
	// continued from another session, and whether it waits for that now.
	re reattachState

	// Receive side.
	rflow       recvFlow
	ro          reorder
	rbuf        readBuf
	peerClosed  bool // the peer closed its direction: EOF after the buffer
	readStopped bool // Close called: data from the peer is refused
}

type tstate int

const (
	stOpening tstate = iota // initiator: start sent, proceed not yet received
	stOpen                  // established
	stGone                  // both directions closed, or failed
)

// env is what a tunnel reads of its surroundings. Its driver sets it; it
// never changes during an event.
type env struct {
	cfg *Config
	log *slog.Logger
	// chunk is the largest payload the path wants in one data element now
	// (the Endpoint's chunk size, within what the path's controller allows).
	chunk int
	// lastAnswer is when the path last brought an answer to any element of
	// the session: a path that is still delivering is not losing.
	lastAnswer time.Time
	// answerGap is about the longest time between two answers lately
	// while IQs were waiting: no acknowledgement timeout is shorter than
	// twice that.
	answerGap time.Duration
	// rate is the payload bytes per second the path delivers lately (0:
	// not known): an element waits behind the bytes sent before it for as
	// long as they take at that rate, which is a queue, not a loss.
	rate float64
	// grant, if not nil, is asked for more window bytes for a tunnel with
	// the peer bare: the receiver's memory budgets (limits.go).
	grant func(bare string, more int) bool
	// peerHeard, if not nil, says when an element from the peer bare last
	// arrived, on any of its tunnels.
	peerHeard func(bare string) time.Time
}

type kind int

const (
	kStart kind = iota
	kData
	kCredit
	kClose
	kAbort
	kReattach
)

func (k kind) String() string {
	return [...]string{"start", "data", "credit", "close", "close", "reattach"}[k]
}

// flight is one element of the tunnel, kept until it is answered so that it
// can be sent again unchanged.
type flight struct {
	kind    kind
	seq     uint16
	payload []byte
	limit   uint64
	cond    stanza.Condition
	why     string // an abort's reason
	probe   bool   // a keep-alive: a credit the peer already has
	tries   int
	// sent says an attempt of it has left before (the statistics count
	// a block once, however often it goes; tries start afresh after a
	// re-attachment).
	sent bool
	// counted says the block's payload is counted in the IQ path's
	// in-flight bound (path bookkeeping: the machine never reads it).
	counted bool
	// writtenAt is when its latest attempt left (zero while it waits to be
	// sent again or written): its acknowledgement timeout counts from there.
	writtenAt time.Time
	notBefore time.Time // a backoff after a wait error
	counter   uint64    // a re-attach's counter
	to        string    // a re-attach's recipient, if not the tunnel's peer
	settled   bool      // answered, superseded, or the tunnel is gone
	queued    bool      // waiting to be sent again (or deferred until open)
}

// newTunnel returns a tunnel. An initiator is opening: it may send one data
// element of at most FirstFlightMax bytes before proceed.
func newTunnel(e *env, peer, sid string, initiator bool) *tunnel {
	t := &tunnel{env: e, sid: sid, peer: peer, initiator: initiator, blockSize: e.cfg.BlockSize}
	t.rflow.init(e.cfg.Window, e.cfg.MaxWindow)
	t.rtt.init(*e.cfg)
	if initiator {
		t.sflow.limit = xstanza.FirstFlightMax
	} else {
		t.held = true
	}
	return t
}

// accept sets up a responder from the initiator's start. The tunnel sends
// nothing until release.
func (t *tunnel) accept(st xstanza.Start) {
	t.state = stOpen
	t.wasOpen = true
	t.peerBlockSize = st.BlockSize
	t.sflow.limit = uint64(st.Window)
}

// proceed is the responder's answer to start.
func (t *tunnel) proceed() xstanza.Proceed {
	return xstanza.Proceed{SID: t.sid, BlockSize: t.blockSize, Window: int(t.rflow.window)}
}

// window is the receive window the tunnel grants now.
func (t *tunnel) window() int { return int(t.rflow.window) }

// setWindow sets the window the tunnel starts with (what the receiver's
// budgets granted), before it announces it.
func (t *tunnel) setWindow(w int) { t.rflow.init(w, t.env.cfg.MaxWindow) }

// startElement is the initiator's start.
func (t *tunnel) startElement() xstanza.Start {
	return xstanza.Start{SID: t.sid, BlockSize: t.blockSize, Window: int(t.rflow.window)}
}

// release lets a responder send, once its proceed is written.
func (t *tunnel) release() { t.held = false }

// opening reports whether the tunnel is an initiator's whose start has not
// been answered.
func (t *tunnel) opening() bool { return t.initiator && t.state == stOpening }

// established reports whether opening is over, and how: nil if the tunnel
// was established, the error that refused it otherwise.
func (t *tunnel) established() (done bool, err error) {
	if t.state == stOpening {
		return false, nil
	}
	if t.wasOpen {
		return true, nil
	}
	return true, t.err
}

// gone reports whether the tunnel is over: failed, or both directions
// closed.
func (t *tunnel) gone() bool { return t.state == stGone }

// chunk is the largest payload of the next data element: the path's chunk
// size within the peer's block-size, or FirstFlightMax until the peer's
// block-size is known.
func (t *tunnel) chunk() int {
	if t.peerBlockSize == 0 {
		return xstanza.FirstFlightMax
	}
	if t.pathChunk > 0 {
		return min(t.peerBlockSize, t.pathChunk)
	}
	return min(t.peerBlockSize, t.env.chunk)
}

// write queues what fits of p (a block's worth is queued at most) and
// returns how much it took. The caller has checked writeErr.
func (t *tunnel) write(p []byte) int {
	room := t.chunk() - len(t.sendQ)
	if room <= 0 || len(p) == 0 {
		return 0
	}
	if t.sendQ == nil {
		t.sendQ = getBuf(t.chunk())
	}
	k := min(room, len(p))
	t.sendQ = append(t.sendQ, p[:k]...)
	return k
}

// writeErr is what a Write would fail with now, or nil.
func (t *tunnel) writeErr() error {
	switch {
	case t.closeCalled:
		return net.ErrClosed
	case t.err != nil:
		return t.err
	case t.writeClosed:
		return ErrWriteClosed
	}
	return nil
}

// writable reports whether a waiting Write can make progress: there is
// room in the queue, or Write must fail.
func (t *tunnel) writable() bool {
	return t.writeErr() != nil || t.chunk()-len(t.sendQ) > 0
}

// read copies buffered data into p and grants credit as due. With nothing
// to copy it returns what a Read must return then: io.EOF once the peer
// closed its direction, the failure, or (0, nil) to wait.
func (t *tunnel) read(p []byte) (int, error) {
	if t.closeCalled {
		return 0, net.ErrClosed
	}
	// What arrived in order was accepted (acknowledged): a failure that
	// comes later does not take it back.
	if t.rbuf.len() > 0 {
		n := t.rbuf.read(p)
		t.rflow.consume(n)
		if _, due := t.rflow.update(); due && !t.peerClosed && t.state != stGone {
			t.creditDue = true
		}
		return n, nil
	}
	// The peer closed its direction after all its data had been
	// acknowledged: that direction ended cleanly, whatever happened to ours
	// afterwards. The failure is for Write and Close to report.
	if t.peerClosed {
		return 0, io.EOF
	}
	return 0, t.err
}

// readable reports whether a waiting Read can return.
func (t *tunnel) readable() bool {
	return t.closeCalled || t.rbuf.len() > 0 || t.peerClosed || t.err != nil
}

// closeWrite closes this direction: the close element follows the data.
func (t *tunnel) closeWrite(now time.Time) error {
	if t.closeCalled {
		return net.ErrClosed
	}
	if t.err != nil {
		return t.err
	}
	t.writeClosed = true
	if t.closeFrom.IsZero() {
		t.closeFrom = now
	}
	return nil
}

// close begins Close: this direction closes after a flush, and reading
// stops once it has (finishClose). An opening tunnel has nothing to flush
// and is aborted at once. It reports false if Close was called before.
func (t *tunnel) close(now time.Time) bool {
	if t.closeCalled {
		return false
	}
	t.closeCalled = true
	t.writeClosed = true
	if t.state == stOpening {
		t.abort(stanza.UndefinedCondition, "closed before the tunnel was established")
	}
	if t.closeFrom.IsZero() {
		t.closeFrom = now
	}
	return true
}

// closeDone reports whether a waiting Close or CloseWrite may return: our
// close was answered, or the tunnel failed.
func (t *tunnel) closeDone() bool { return t.closeAcked || t.err != nil || t.state == stGone }

// flushed reports whether everything written has been acknowledged.
func (t *tunnel) flushed() bool { return len(t.sendQ) == 0 && t.nUnacked == 0 }

// closeResult is what CloseWrite returns once closeDone.
func (t *tunnel) closeResult() error {
	if t.closeAcked {
		return nil
	}
	return t.err
}

// finishClose ends Close once closeDone: reading stops, and the tunnel is
// gone or lingers so that the peer's own close is still answered. It
// returns what Close returns: nil if everything written reached the peer.
func (t *tunnel) finishClose(now time.Time) error {
	err := t.closeResult()
	var ce *CrossedError
	if errors.As(err, &ce) {
		err = nil
	}
	t.readStopped = true
	t.rbuf.release()
	t.ro.release()
	if t.peerClosed || err != nil {
		t.finish(nil)
	} else if t.state != stGone {
		t.lingerUntil = now.Add(t.env.cfg.Linger)
	}
	return err
}

// abort aborts both directions: the peer gets a close with cond, and Read
// and Write fail with an *AbortError. reason is for our own error and logs.
func (t *tunnel) abort(cond stanza.Condition, reason string) {
	t.abortBecause(cond, "", reason, nil)
}

// abortBecause is abort with why, a reason the peer learns (the close
// element's reason), and err, what Read and Write fail with if not an
// *AbortError.
func (t *tunnel) abortBecause(cond stanza.Condition, why, reason string, err error) {
	if t.state == stGone || t.abortCond != "" {
		return
	}
	if t.initiator && !t.startSent {
		t.startSent = true // never started: nothing to tell the peer
	} else {
		t.abortCond = cond
		t.abortWhy = why
	}
	t.env.log.Info("xtls: tunnel aborted", "peer", t.peer, "sid", t.sid, "condition", cond, "why", why, "reason", reason)
	if err == nil {
		err = &AbortError{Condition: cond, Reason: reason, Why: why}
	}
	t.fail(err)
}

// fail ends the tunnel with err, if it has not ended.
func (t *tunnel) fail(err error) {
	if t.state == stGone {
		return
	}
	t.err = err
	t.finish(err)
}

// finish makes the tunnel gone. Blocks held behind a gap can never be
// delivered; those in order stay for Read (Close releases them).
func (t *tunnel) finish(err error) {
	if t.state == stGone {
		return
	}
	t.state = stGone
	t.lingerUntil = time.Time{}
	if err != nil {
		t.ro.release()
	}
	if t.sendQ != nil {
		putBuf(t.sendQ)
		t.sendQ = nil
	}
	// Payloads of unacknowledged blocks are dropped, not pooled: the path
	// may hold an encoding of one.
	for _, f := range t.unacked {
		if f != nil {
			f.settled = true
		}
	}
	clear(t.unacked[:])
	t.nUnacked = 0
	for _, f := range t.ctrl {
		if f.kind != kAbort {
			f.settled = true
		}
	}
	t.ctrl = nil
	t.retrans = nil
	t.deferred = nil
}

// inFlight returns the payload bytes sent and not yet acknowledged.
func (t *tunnel) inFlight() int {
	n := 0
	if t.nUnacked == 0 {
		return 0
	}
	for s := t.oldest; s != t.nextSeq; s++ {
		if f := t.unacked[s&255]; f != nil {
			n += len(f.payload)
		}
	}
	return n
}

// deadline returns when the tunnel next needs onTimer, or the zero time.
func (t *tunnel) deadline() time.Time {
	var d time.Time
	peer := t.peerProgress() // once: it is a map lookup, and up to 256 blocks ask
	at := func(x time.Time) {
		if !x.IsZero() && (d.IsZero() || x.Before(d)) {
			d = x
		}
	}
	if t.re.suspended && t.state != stGone {
		// Nothing travels but a re-attach: only its timeout and the
		// bound count.
		at(t.re.until)
		for _, f := range t.ctrl {
			at(t.due(f, 0, peer))
		}
		for _, f := range t.retrans {
			if f.kind == kReattach {
				at(f.notBefore)
			}
		}
		if t.re.peerSide {
			at(t.re.probeAt)
		}
	} else if t.state != stGone {
		t.eachData(func(f *flight, ahead int) { at(t.due(f, ahead, peer)) })
		for _, f := range t.ctrl {
			at(t.due(f, 0, peer))
		}
		for _, f := range t.retrans {
			at(f.notBefore)
		}
		if !t.closeFrom.IsZero() && !t.closeDone() {
			at(t.laterOfProgress(t.closeFrom).Add(t.env.cfg.CloseTimeout))
		}
		if t.keepingAlive() {
			// A probe that is due but cannot leave yet (a bytestream's
			// writer is full) needs no timer: the loop would spin on it.
			if !t.probing && !t.probeDue {
				at(t.lastHeard.Add(t.env.cfg.KeepAlive))
			}
			at(t.lastHeard.Add(t.env.cfg.KeepAlive + t.env.cfg.KeepAliveTimeout))
		}
	}
	at(t.lingerUntil)
	return d
}

// keepingAlive reports whether the tunnel checks that its peer is there:
// it is open, not closed on our side, and keep-alive is on.
func (t *tunnel) keepingAlive() bool {
	return t.env.cfg.KeepAlive > 0 && t.state == stOpen && !t.readStopped && !t.held && !t.lastHeard.IsZero() && !t.re.suspended
}

// heard records that the peer sent us something at now: proof of life.
func (t *tunnel) heard(now time.Time) {
	if now.After(t.lastHeard) {
		t.lastHeard = now
	}
	t.probing = false
	t.probeDue = false
}

// laterOfProgress returns the later of x and the path's last answer.
func (t *tunnel) laterOfProgress(x time.Time) time.Time {
	if t.env.lastAnswer.After(x) {
		return t.env.lastAnswer
	}
	return x
}

// peerProgress returns when an element from the peer last arrived, on any
// of its tunnels, or the zero time.
func (t *tunnel) peerProgress() time.Time {
	if t.env.peerHeard == nil {
		return time.Time{}
	}
	return t.env.peerHeard(t.bare)
}

// onTimer handles the time passing: acknowledgement timeouts, backoffs that
// ended, a close that waited too long, a linger that ended.
func (t *tunnel) onTimer(now time.Time) {
	if !t.lingerUntil.IsZero() && !now.Before(t.lingerUntil) {
		t.finish(nil)
		return
	}
	if t.state == stGone {
		return
	}
	if t.re.suspended {
		t.onTimerSuspended(now)
		return
	}
	if !t.closeFrom.IsZero() && !t.closeDone() &&
		!now.Before(t.laterOfProgress(t.closeFrom).Add(t.env.cfg.CloseTimeout)) {
		// A slow path that is still delivering gets more time: the bound is
		// on the time without progress.
		t.abortBecause(stanza.ResourceConstraint, xstanza.ReasonTimeout, "close timed out with data unacknowledged", nil)
		return
	}
	if t.keepingAlive() {
		silent := now.Sub(t.lastHeard)
		switch {
		case silent >= t.env.cfg.KeepAlive+t.env.cfg.KeepAliveTimeout:
			// Nothing from the peer, not even an answer to a probe: it is
			// gone. A tunnel that may be re-attached waits for it to come
			// back; otherwise, if it is not gone, the abort tells it why.
			if t.suspend(now, &PeerGoneError{Why: fmt.Sprintf("nothing heard for %v", silent.Round(time.Second))}) {
				return
			}
			t.abortBecause(stanza.RemoteServerTimeout, xstanza.ReasonPeerGone, "peer silent",
				&PeerGoneError{Why: fmt.Sprintf("nothing heard for %v", silent.Round(time.Second))})
			return
		case silent >= t.env.cfg.KeepAlive && !t.probing:
			t.probeDue = true
		}
	}
	// Data: the oldest late block goes again, and the others wait for a
	// timeout of their own from now, as TCP restarts its timer on a
	// retransmission: on a path that delivers in order, the blocks behind
	// a lost one are usually not lost, and sending them all again would
	// only lengthen the queue.
	var late []*flight
	peer := t.peerProgress()
	t.eachData(func(f *flight, ahead int) {
		if len(late) == 0 && t.timedOut(f, ahead, now, peer) {
			late = append(late, f)
		}
	})
	for _, f := range t.ctrl {
		if t.timedOut(f, 0, now, peer) {
			late = append(late, f)
		}
	}
	for _, f := range late {
		if t.state == stGone {
			return
		}
		if f.kind == kData {
			t.holdUntil = now.Add(t.rtt.timeout(f.tries + 1))
		}
		t.retry(f, ErrAckTimeout, 0, now)
	}
}

// eachData calls fn for each data block in flight, oldest first, with the
// payload bytes of the blocks in flight before it.
func (t *tunnel) eachData(fn func(f *flight, ahead int)) {
	ahead := 0
	for s := t.oldest; t.nUnacked > 0 && s != t.nextSeq; s++ {
		if f := t.unacked[s&255]; f != nil {
			fn(f, ahead)
			if !f.writtenAt.IsZero() {
				ahead += len(f.payload)
			}
		}
	}
}

// due is when f's latest attempt times out: a full timeout after the later
// of its sending and the path's last answer (as TCP restarts its
// retransmission timer on each acknowledgement: an element waiting behind
// others a slow path is still delivering is not lost), plus what the
// ahead bytes sent before it take at the path's rate. peer is
// peerProgress(). Zero while the attempt waits to be written or f waits to
// be sent again.
func (t *tunnel) due(f *flight, ahead int, peer time.Time) time.Time {
	if f.writtenAt.IsZero() || f.settled || f.queued {
		return time.Time{}
	}
	// On a path that releases one answer every few seconds (a server's
	// shaper), an element waits that long behind each one before it: that
	// is a queue, not a loss, and sending it again would only lengthen it.
	rto := max(t.rtt.timeout(f.tries), 2*t.env.answerGap)
	if f.kind == kStart {
		// A start is not sent again on a timeout (the peer may have created
		// the tunnel), so it waits longer: an overloaded responder must not
		// fail a Dial that its context would still allow.
		rto = max(rto, t.env.cfg.StartTimeout)
	}
	if t.env.rate > 0 && ahead > 0 {
		rto += time.Duration(float64(ahead) / t.env.rate * float64(time.Second))
	}
	d := t.laterOfProgress(f.writtenAt).Add(rto)
	if h := peer; h.After(f.writtenAt) {
		// The peer's stanzas keep coming: its answer may wait in its
		// server's queue behind them (a shaper reads its client at a few
		// KB/s), and a server delivers one sender's stanzas in order. A
		// full timeout from the last of them, but not beyond peerWait
		// timeouts: an answer that was lost must not wait for the peer
		// to fall silent.
		d = later(d, earlier(h.Add(rto), f.writtenAt.Add(peerWait*rto)))
	}
	if f.kind == kData && d.Before(t.holdUntil) {
		d = t.holdUntil
	}
	return d
}

// peerWait bounds, in timeouts after its sending, how long the peer's
// stanzas that keep arriving hold an element's timeout off.
const peerWait = 4

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (t *tunnel) timedOut(f *flight, ahead int, now, peer time.Time) bool {
	d := t.due(f, ahead, peer)
	return !d.IsZero() && !now.Before(d)
}
