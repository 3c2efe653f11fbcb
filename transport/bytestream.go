package transport

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/bsframe"
	xstanza "github.com/xmppxtls/xtls/stanza"
)

// The bytestream path carries one tunnel's data and credit over a byte
// stream the two ends share (a SOCKS5 bytestream through a proxy, or a
// direct connection), as binary frames (internal/bsframe) instead of IQ
// stanzas: the same blocks in the same sequence space, each request
// answered as an IQ would be. The tunnel machine does not know which path
// carries a flight: whatever it hands out while the tunnel is on the
// bytestream goes there, except start, close and abort, which always
// travel as IQs. So moving is nothing but sending the next flight on the
// other path, and a flight whose answer the bytestream can no longer bring
// (it broke, or was left) is sent again on the IQ path at once: the
// receiver's rules make a block that arrives twice harmless, so nothing is
// lost or repeated.
//
// Leaving is graceful when either end sends BYE: after its BYE a side sends
// no more requests on the bytestream, only answers; a side that receives
// BYE sends its own if it has not; each side closes the connection once it
// has sent and received BYE and has no request of its own unanswered on it.
// Both ends read in order and answer what they read before they read on,
// so when the peer's BYE arrives every request sent before it has been
// answered.
//
// The loop owns the bytestream's state. Two goroutines serve it while it
// is attached: its reader, which hands each frame to the loop (waiting for
// the loop's verdict on data and credit, as the IQ handler does), and its
// writer, which writes what the loop has encoded, many frames per write.

// ErrBytestreamBroken is the cause recorded for flights sent again on the
// IQ path because the bytestream that carried them broke.
var ErrBytestreamBroken = errors.New("xtls/transport: bytestream broke")

// errBytestreamLeft is the cause for flights sent again because the
// bytestream was left before their answer came.
var errBytestreamLeft = errors.New("xtls/transport: bytestream left")

const (
	// bsWriterBytes is how many encoded bytes may wait for the writer:
	// enough to fill a fast link between two wakeups of the writer, few
	// enough that an acknowledgement timeout measures the network.
	bsWriterBytes = 256 << 10
	// bsStall is how long a bytestream may bring nothing while requests
	// wait on it before it counts as broken.
	bsStall = 10 * time.Second
	// bsRoom is the in-flight room of a tunnel on a bytestream: the
	// bytestream is its own connection, so only the peer's credit and the
	// seq span bound it.
	bsRoom = 1 << 30
)

// PathStats says which path carries a tunnel and what each carried.
type PathStats struct {
	// Bytestream is true while a bytestream carries the tunnel's data.
	Bytestream bool
	// Moves counts the moves onto a bytestream; Fallbacks, the moves back
	// to IQs because a bytestream broke.
	Moves, Fallbacks int
	// SentOnBytestream and ReceivedOnBytestream are the payload bytes of
	// data blocks sent and accepted on bytestreams (a block sent again
	// counts again).
	SentOnBytestream, ReceivedOnBytestream int64
}

type bytestream struct {
	c    *Conn
	conn net.Conn

	// Owned by the loop.
	pending  map[uint32]*bsAttempt
	nextID   uint32
	byeSent  bool
	byeRecv  bool
	detached bool
	lastRead time.Time
	queued   int // encoded bytes handed to the writer and not yet written

	// Shared with the writer.
	wmu   sync.Mutex
	wbuf  []byte
	watts []*bsAttempt // requests whose frames are in wbuf
	wstop bool         // write what is buffered, then close the connection
	wwake chan struct{}

	running atomic.Int32  // the reader and the writer, while they run
	done    chan struct{} // closed when both have ended
}

// bsAttempt is one request sent on a bytestream.
type bsAttempt struct {
	id      uint32
	f       *flight
	try     int // f.tries when it was sent: a later attempt supersedes it
	handed  time.Time
	written time.Time
}

// active reports whether new requests go on the bytestream.
func (s *bytestream) active() bool { return !s.byeSent && !s.byeRecv && !s.detached }

// UseBytestream moves the tunnel's data and credit onto conn, a byte
// stream to the peer that the two ends have already established and
// authenticated (xtls does both: it negotiates inside TLS and checks an
// authenticator derived from the TLS exporter). Both ends call it on their
// own end of the stream. What was sent on IQs and is not yet acknowledged
// is still answered there; what goes next travels on conn. If conn breaks,
// the tunnel goes on over IQs and sends again there what conn did not
// acknowledge. conn belongs to the tunnel from now on: it is closed when
// the tunnel leaves it or ends.
func (c *Conn) UseBytestream(conn net.Conn) error {
	var err error
	s := &bytestream{c: c, conn: conn, pending: make(map[uint32]*bsAttempt),
		wwake: make(chan struct{}, 1), done: make(chan struct{})}
	e := c.ep
	e.call(func(now time.Time) {
		switch {
		case c.t.gone() || e.err != nil:
			err = net.ErrClosed
		case c.bs != nil:
			err = errors.New("xtls/transport: the tunnel is already on a bytestream")
		case c.t.state != stOpen:
			err = errors.New("xtls/transport: the tunnel is not established")
		default:
			c.bs = s
			s.lastRead = now
			c.paths.Bytestream = true
			c.paths.Moves++
			c.t.pathChunk = xstanza.MaxBlockSize
			e.bsConns = append(e.bsConns, c)
			e.markDirty(c)
		}
	})
	if err != nil {
		return err
	}
	s.running.Store(2)
	e.bsWG.Add(2)
	go func() { defer s.ended(); s.readLoop() }()
	go func() { defer s.ended(); s.writeLoop() }()
	return nil
}

// ended is the last thing the reader and the writer do: the second to end
// closes done.
func (s *bytestream) ended() {
	if s.running.Add(-1) == 0 {
		close(s.done)
	}
	s.c.ep.bsWG.Done()
}

// LeaveBytestream moves the tunnel back to IQs: it sends BYE on the
// bytestream, and the bytestream closes once both ends have said BYE and
// every request on it is answered. It does nothing if the tunnel is not on
// a bytestream. Done reports when the bytestream has closed.
func (c *Conn) LeaveBytestream() (done <-chan struct{}) {
	ch := make(chan struct{})
	c.ep.call(func(now time.Time) {
		s := c.bs
		if s == nil {
			close(ch)
			return
		}
		done = s.done
		s.bye(now)
		c.ep.markDirty(c)
	})
	if done == nil {
		return ch
	}
	return done
}

// Paths returns which path carries the tunnel and what each carried.
func (c *Conn) Paths() (st PathStats) {
	c.ep.call(func(time.Time) { st = c.paths })
	return st
}

// enqueue appends an encoded frame for the writer; att, if not nil, is
// the request it carries.
func (s *bytestream) enqueue(fr bsframe.Frame, att *bsAttempt) {
	s.wmu.Lock()
	n := len(s.wbuf)
	var err error
	s.wbuf, err = bsframe.AppendFrame(s.wbuf, fr)
	if err != nil {
		// Cannot happen: the machine makes no frame the format refuses.
		panic("xtls/transport: " + err.Error())
	}
	s.queued += len(s.wbuf) - n
	if att != nil {
		s.watts = append(s.watts, att)
	}
	s.wmu.Unlock()
	signal(s.wwake)
}

// pump sends the tunnel's next flights while the writer has room: data
// and credit on the bytestream, anything else as IQs.
func (s *bytestream) pump(now time.Time) {
	c, e := s.c, s.c.ep
	for s.active() && s.queued < bsWriterBytes && e.err == nil {
		f := c.t.next(now, bsRoom)
		if f == nil {
			return
		}
		switch f.kind {
		case kData, kCredit:
			s.send(f, now)
		default:
			e.path.send(c, f, now)
		}
		if c.writer != nil {
			w := c.writer
			c.writer = nil
			e.progressWrite(c, w)
		}
		e.markDirty(c)
	}
}

// send puts a request for f on the bytestream.
func (s *bytestream) send(f *flight, now time.Time) {
	s.nextID++
	att := &bsAttempt{id: s.nextID, f: f, try: f.tries, handed: now}
	s.pending[att.id] = att
	fr := bsframe.Frame{ID: att.id}
	if f.kind == kData {
		fr.Type, fr.Seq, fr.Payload = bsframe.Data, f.seq, f.payload
		s.c.paths.SentOnBytestream += int64(len(f.payload))
		st := &s.c.ep.stats
		if !f.sent {
			f.sent = true
			st.dataSent.Add(1)
		} else {
			st.retransmits.Add(1)
		}
	} else {
		fr.Type, fr.Limit = bsframe.Credit, f.limit
	}
	s.enqueue(fr, att)
}

// quit leaves the bytestream at once (the tunnel is over, or has lost its
// path to the peer): BYE, then the writer closes the connection, so that
// the peer's end, which may not know yet, sees the bytestream left, not
// broken; within timeout, or closed. What waited for an answer on it goes
// again on IQs.
func (s *bytestream) quit(now time.Time, timeout time.Duration) {
	_ = s.conn.SetWriteDeadline(now.Add(timeout))
	s.bye(now)
	s.detach(nil, now)
}

// bye sends BYE once: no request follows it on the bytestream.
func (s *bytestream) bye(now time.Time) {
	if s.byeSent || s.detached {
		return
	}
	s.byeSent = true
	s.enqueue(bsframe.Frame{Type: bsframe.Bye}, nil)
	s.maybeEnd(now)
}

// maybeEnd closes the bytestream once both ends said BYE and nothing of
// ours waits for an answer on it.
func (s *bytestream) maybeEnd(now time.Time) {
	if s.byeSent && s.byeRecv && len(s.pending) == 0 {
		s.detach(nil, now)
	}
}

// detach ends the bytestream: the tunnel is on IQs from now on, and what
// waited for an answer on the bytestream goes again there. cause is nil
// for a graceful end.
func (s *bytestream) detach(cause error, now time.Time) {
	if s.detached {
		return
	}
	s.detached = true
	c, e := s.c, s.c.ep
	why := cause
	if cause != nil && s.byeSent {
		// We were leaving: the peer may close once it has both BYEs, and
		// our NOP kick can then meet a reset. Not a break; whatever had
		// no answer goes again on IQs all the same.
		cause = nil
	}
	if why == nil {
		why = errBytestreamLeft
	}
	if cause != nil {
		c.paths.Fallbacks++
		e.log.Info("xtls: bytestream broke; the tunnel goes on over IQs", "peer", c.peerStr, "sid", c.sid, "err", cause)
	}
	for id, att := range s.pending {
		delete(s.pending, id)
		if f := att.f; !f.settled && f.tries == att.try {
			c.t.retry(f, why, 0, now)
		}
	}
	c.bs = nil
	c.paths.Bytestream = false
	c.t.pathChunk = 0
	for i, x := range e.bsConns {
		if x == c {
			e.bsConns = append(e.bsConns[:i], e.bsConns[i+1:]...)
			break
		}
	}
	s.wmu.Lock()
	s.wstop = true
	s.wmu.Unlock()
	signal(s.wwake)
	if cause != nil {
		// A broken bytestream need not flush: unblock the reader too.
		_ = s.conn.Close()
	}
	e.markDirty(c)
}

// written handles the writer's report that the frames of atts (n bytes)
// left at at, or that the write failed.
func (s *bytestream) written(atts []*bsAttempt, n int, at time.Time, err error) {
	s.queued -= n
	if s.detached {
		return
	}
	if err != nil {
		s.detach(err, at)
		return
	}
	for _, att := range atts {
		if att.f.tries == att.try {
			att.written = at
			s.c.t.onWritten(att.f, at)
		}
	}
	s.c.ep.markDirty(s.c)
}

// answered handles the answer to request id: a result, or an error se.
func (s *bytestream) answered(id uint32, result bool, se stanza.Error, at, now time.Time) {
	att := s.pending[id]
	if att == nil {
		return // not ours, or answered already: ignored
	}
	delete(s.pending, id)
	c, e := s.c, s.c.ep
	if result {
		sent := att.written
		if sent.IsZero() {
			sent = att.handed
		}
		counted := att.f.counted
		if n := c.t.onResult(att.f, at.Sub(sent)); n > 0 && counted {
			// First sent as an IQ: no longer in the IQ path's bound.
			c.inflight -= n
			e.path.ctl.dropped(n)
		}
	} else {
		c.t.onError(att.f, se, now)
	}
	s.maybeEnd(now)
	e.markDirty(c)
}

// received handles a request frame from the peer and returns the answer.
func (s *bytestream) received(fr bsframe.Frame, now time.Time) bsframe.Frame {
	c, e := s.c, s.c.ep
	var r reply
	switch fr.Type {
	case bsframe.Data:
		var malformed error
		if len(fr.Payload) > c.t.blockSize {
			// What the data element's decoder refuses (D4): a block
			// beyond our block-size is a teardown on any path.
			malformed = fmt.Errorf("data of %d bytes, above block-size %d", len(fr.Payload), c.t.blockSize)
		}
		r, _ = c.t.onData(fr.Seq, fr.Payload, malformed)
		if r == replyAck {
			c.paths.ReceivedOnBytestream += int64(len(fr.Payload))
		}
	case bsframe.Credit:
		r, _ = c.t.onCredit(fr.Limit, nil)
	}
	c.t.heard(now)
	e.peerHeard(c.t.bare, now)
	e.markDirty(c)
	switch r {
	case replyAck:
		return bsframe.Frame{Type: bsframe.Result, ID: fr.ID}
	case replyNotFound:
		return bsframe.Frame{Type: bsframe.Error, ID: fr.ID, ErrType: stanza.Cancel, Cond: stanza.ItemNotFound}
	default:
		return bsframe.Frame{Type: bsframe.Error, ID: fr.ID, ErrType: stanza.Modify, Cond: stanza.BadRequest}
	}
}

// readLoop is the reader goroutine.
func (s *bytestream) readLoop() {
	e := s.c.ep
	r := bsframe.NewReader(s.conn)
	for {
		fr, err := r.Next()
		at := time.Now()
		if err != nil {
			e.post(func(now time.Time) { s.readEnded(err, now) })
			return
		}
		switch fr.Type {
		case bsframe.Data, bsframe.Credit:
			// The loop reads the payload while this goroutine waits: it
			// is valid until the next frame is read.
			e.call(func(now time.Time) {
				s.lastRead = now
				if s.detached {
					return
				}
				s.enqueue(s.received(fr, now), nil)
			})
		case bsframe.Result, bsframe.Error:
			id, result, se := fr.ID, fr.Type == bsframe.Result, stanza.Error{Type: fr.ErrType, Condition: fr.Cond}
			e.post(func(now time.Time) {
				s.lastRead = now
				if !s.detached {
					s.answered(id, result, se, at, now)
				}
			})
		case bsframe.Nop:
		case bsframe.Bye:
			e.post(func(now time.Time) {
				s.lastRead = now
				if s.detached {
					return
				}
				s.byeRecv = true
				s.bye(now)
				s.maybeEnd(now)
				e.markDirty(s.c)
			})
		}
	}
}

// readEnded handles the end of what the peer sends: after both BYEs it is
// the expected end, otherwise the bytestream broke.
func (s *bytestream) readEnded(err error, now time.Time) {
	if s.detached {
		return
	}
	if s.byeRecv {
		// The peer said BYE: an end after it is no break (what waits for
		// an answer goes again on IQs all the same).
		s.detach(nil, now)
		return
	}
	s.detach(&BytestreamError{Err: err}, now)
}

// BytestreamError reports why a bytestream broke; Is matches
// ErrBytestreamBroken.
type BytestreamError struct{ Err error }

func (e *BytestreamError) Error() string {
	return "xtls/transport: bytestream broke: " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *BytestreamError) Unwrap() error { return e.Err }

// Is matches ErrBytestreamBroken.
func (e *BytestreamError) Is(target error) bool { return target == ErrBytestreamBroken }

// bsKick is how long the writer waits, idle after a write, before it
// writes a NOP: some proxies (Prosody 0.12's proxy65) hold back the tail of
// a burst until more bytes come, and the peer may be waiting for it.
const bsKick = 5 * time.Millisecond

// writeLoop is the writer goroutine: it writes what the loop encoded,
// everything buffered at once, and reports what left.
func (s *bytestream) writeLoop() {
	e := s.c.ep
	var spare []byte
	kick := time.NewTimer(time.Hour)
	kick.Stop()
	defer kick.Stop()
	kicked := true // nothing written since the last NOP
	for {
		s.wmu.Lock()
		for len(s.wbuf) == 0 && !s.wstop {
			s.wmu.Unlock()
			if !kicked {
				kick.Reset(bsKick)
			}
			select {
			case <-s.wwake:
				kick.Stop()
			case <-kick.C:
				kicked = true
				if _, err := s.conn.Write([]byte{byte(bsframe.Nop)}); err != nil {
					e.post(func(now time.Time) { s.written(nil, 0, now, err) })
					_ = s.conn.Close()
					return
				}
			}
			s.wmu.Lock()
		}
		kicked = false
		if len(s.wbuf) == 0 {
			s.wmu.Unlock()
			_ = s.conn.Close()
			return
		}
		buf, atts := s.wbuf, s.watts
		s.wbuf, s.watts = spare[:0], nil
		s.wmu.Unlock()
		_, err := s.conn.Write(buf)
		at := time.Now()
		n := len(buf)
		e.post(func(time.Time) { s.written(atts, n, at, err) })
		if err != nil {
			_ = s.conn.Close()
			s.wmu.Lock()
			s.wbuf, s.watts = nil, nil
			s.wmu.Unlock()
			return
		}
		spare = buf
	}
}

// onTimer counts a bytestream that brings nothing while requests wait on
// it as broken.
func (s *bytestream) onTimer(now time.Time) {
	if !s.detached && len(s.pending) > 0 && !now.Before(s.lastRead.Add(bsStall)) {
		s.detach(&BytestreamError{Err: errors.New("stalled")}, now)
	}
}

// deadline is when the bytestream next needs onTimer (zero: never).
func (s *bytestream) deadline() time.Time {
	if s.detached || len(s.pending) == 0 {
		return time.Time{}
	}
	return s.lastRead.Add(bsStall)
}
