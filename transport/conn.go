package transport

import (
	"context"
	"net"
	"slices"
	"sync/atomic"
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

// Conn is one tunnel: a reliable, ordered byte stream to a peer's full JID.
// It implements net.Conn. Close flushes what was written (within
// Config.CloseTimeout), closes this direction and stops reading; CloseWrite
// closes only this direction, like a TCP half-close.
//
// Its methods may be called from any goroutine, as net.Conn requires: they
// hand their work to the Endpoint's loop, which owns the tunnel, and wait
// for its answer and their deadlines only.
type Conn struct {
	ep         *Endpoint
	t          *tunnel                 // owned by the loop
	peerAddr   atomic.Pointer[jid.JID] // the peer's full JID (a re-attachment changes it)
	reattached atomic.Int32            // re-attachments so far (Reattachments)
	blockSize  atomic.Int32            // the payload of a block now (BlockSize), published by the loop
	sid        string
	initiator  bool

	rdl, wdl       *deadline
	readSem, wrSem chan struct{} // serialise Read and Write callers
	estab          chan struct{} // closed when opening is over
	goneCh         chan struct{} // closed when the tunnel is gone

	// Owned by the loop.
	peer    jid.JID
	peerStr string
	key     tunnelKey
	// boundLocal is the full JID the peer knows us by: the session's when
	// the tunnel began or was last re-attached.
	boundLocal string
	// epoch: the loop has taken the tunnel's requeues up to this one into
	// account (reattach_endpoint.go).
	epoch     uint32
	reader    *ioReq // a Read waiting for data
	writer    *ioReq // a Write waiting for room
	closers   []*closeReq
	sched     schedState
	timerAt   time.Time // the deadline the loop's timer heap holds for the tunnel
	dirty     bool
	forgotten bool        // gone, and forgotten by the Endpoint
	admitted  bool        // holds a slot and its window in the Endpoint's limits
	inflight  int         // payload bytes of data blocks sent as IQs and not acknowledged
	bs        *bytestream // the bytestream that carries the tunnel's data, or nil
	paths     PathStats
}

// onBytestream reports whether the tunnel's next flights go on a
// bytestream rather than the IQ path.
func (c *Conn) onBytestream() bool { return c.bs != nil && c.bs.active() }

func newConn(e *Endpoint, peer jid.JID, sid string, initiator bool) *Conn {
	c := &Conn{
		ep:        e,
		peer:      peer,
		peerStr:   peer.String(),
		sid:       sid,
		initiator: initiator,
		rdl:       newDeadline(),
		wdl:       newDeadline(),
		readSem:   make(chan struct{}, 1),
		wrSem:     make(chan struct{}, 1),
		estab:     make(chan struct{}),
		goneCh:    make(chan struct{}),
	}
	c.key = tunnelKey{c.peerStr, sid}
	c.peerAddr.Store(&peer)
	c.boundLocal = e.localStr
	c.t = newTunnel(&e.env, c.peerStr, sid, initiator)
	c.t.bare = peer.Bare().String()
	return c
}

// ioReq is a Read or a Write handed to the loop: the loop fills or drains
// p while the caller waits, and completes it once.
type ioReq struct {
	p       []byte
	n       int
	err     error
	expired bool // the deadline had passed when the call began
	done    chan struct{}
}

func newIOReq(p []byte, d *deadline) *ioReq {
	return &ioReq{p: p, expired: d.passed(), done: make(chan struct{})}
}

// complete ends the request; p is not referenced afterwards.
func (r *ioReq) complete(n int, err error) {
	r.n, r.err, r.p = n, err, nil
	close(r.done)
}

// closeReq is a Close or CloseWrite waiting for our close to be answered,
// or a Flush waiting for what was written to be acknowledged.
type closeReq struct {
	close bool // Close, not CloseWrite
	flush bool // Flush
	err   error
	done  chan struct{}
}

func (r *closeReq) complete(err error) {
	r.err = err
	close(r.done)
}

// LocalAddr returns our full JID.
// After a re-attachment it is the new session's.
func (c *Conn) LocalAddr() net.Addr { return Addr{c.ep.LocalAddr()} }

// RemoteAddr returns the peer's full JID.
func (c *Conn) RemoteAddr() net.Addr { return Addr{c.Peer()} }

// Peer returns the peer's full JID: the one the tunnel began with, or the
// one it was last re-attached to.
func (c *Conn) Peer() jid.JID { return *c.peerAddr.Load() }

// BlockSize returns how many payload bytes one block of the tunnel
// carries now, as the loop last saw it: the peer's limit, and on the IQ
// path the session's chunk, which is smaller on a slow path (a server's
// shaper: about what the path delivers in 200 ms) and grows on a fast one.
// A layer above that wants what it writes to leave in small pieces on a
// slow path (so that something it writes later is not queued long behind
// it) sizes its writes from it.
func (c *Conn) BlockSize() int {
	if n := c.blockSize.Load(); n > 0 {
		return int(n)
	}
	return xstanza.FirstFlightMax
}

// SID returns the tunnel's sid.
func (c *Conn) SID() string { return c.sid }

// Initiator reports whether this side sent the start.
func (c *Conn) Initiator() bool { return c.initiator }

// PeerBlockSize returns the block-size the peer announced (0 before it is
// known).
func (c *Conn) PeerBlockSize() (n int) {
	c.ep.call(func(time.Time) { n = c.t.peerBlockSize })
	return n
}

// Established waits until the peer has accepted the tunnel (it returns nil at
// once for a tunnel the peer started) or refused it, or ctx ends. A refusal
// comes back as a *PeerError wrapping the peer's stanza.Error; a lost
// crossing as a *CrossedError.
func (c *Conn) Established(ctx context.Context) (err error) {
	select {
	case <-c.estab:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.ep.call(func(time.Time) { _, err = c.t.established() })
	return err
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
	r := newIOReq(p, c.rdl)
	c.ep.post(func(time.Time) {
		t := c.t
		switch {
		case t.closeCalled:
			r.complete(0, net.ErrClosed)
			return
		case r.expired:
			r.complete(0, timeoutError{})
			return
		}
		n, err := t.read(r.p)
		if n > 0 || err != nil || len(r.p) == 0 {
			r.complete(n, err)
			c.ep.markDirty(c) // credit may be due
			return
		}
		c.reader = r
	})
	c.wait(r, c.rdl, &c.reader)
	return r.n, r.err
}

// Write queues p for sending. It blocks while a block's worth of data is
// queued and the peer's credit, the window of unacknowledged IQs or the
// path holds the sender back, and returns once every byte is queued (not
// acknowledged: Close and CloseWrite wait for that). A failure of the
// tunnel after the last byte was queued is reported by the next call, not
// by this one.
func (c *Conn) Write(p []byte) (int, error) {
	if !acquire(c.wrSem, c.wdl) {
		return 0, timeoutError{}
	}
	defer func() { <-c.wrSem }()
	r := newIOReq(p, c.wdl)
	c.ep.post(func(time.Time) {
		if err := c.t.writeErr(); err != nil {
			r.complete(0, err)
			return
		}
		if r.expired {
			r.complete(0, timeoutError{})
			return
		}
		c.ep.progressWrite(c, r)
		c.ep.markDirty(c)
	})
	c.wait(r, c.wdl, &c.writer)
	return r.n, r.err
}

// wait waits for r, or for d to pass: then r is taken back from the loop
// (slot is where the loop keeps it) and completed with a timeout, with what
// it had done by then.
func (c *Conn) wait(r *ioReq, d *deadline, slot **ioReq) {
	select {
	case <-r.done:
		return
	case <-d.wait():
	}
	c.ep.call(func(time.Time) {
		if *slot == r {
			*slot = nil
			r.complete(r.n, timeoutError{})
		}
	})
	<-r.done
}

// CloseWrite closes this direction: once everything written has been
// acknowledged, a close element tells the peer that no more data comes, and
// CloseWrite returns when the peer has answered it (or the tunnel failed, or
// Config.CloseTimeout passed without progress). Reading goes on until the
// peer closes its own direction.
func (c *Conn) CloseWrite() error {
	return c.closeDir(false)
}

// closeDir runs Close (all) or CloseWrite on the loop and waits for our
// close to be answered.
func (c *Conn) closeDir(all bool) error {
	r := &closeReq{close: all, done: make(chan struct{})}
	c.ep.post(func(now time.Time) {
		if all && !c.t.close(now) {
			r.complete(nil) // Close called before
			return
		}
		if !all {
			if err := c.t.closeWrite(now); err != nil {
				r.complete(err)
				return
			}
		}
		c.closers = append(c.closers, r)
		c.ep.markDirty(c)
	})
	<-r.done
	return r.err
}

// Close flushes what was written (it waits, within Config.CloseTimeout, for
// the peer to acknowledge it, whatever the write deadline says), closes this
// direction and stops reading: data the peer sends afterwards is refused with
// item-not-found. Pending and later Reads and Writes return net.ErrClosed.
// Close returns nil if everything written reached the peer, and the error
// that prevented it otherwise. Calling Close again returns nil.
func (c *Conn) Close() error {
	return c.closeDir(true)
}

// Flush waits until every byte written so far has been acknowledged by the
// peer, the tunnel fails (its error is returned) or ctx ends. It is for a
// last message that must arrive before an Abort: a TLS alert, say.
func (c *Conn) Flush(ctx context.Context) error {
	r := &closeReq{flush: true, done: make(chan struct{})}
	c.ep.post(func(time.Time) {
		c.closers = append(c.closers, r)
		c.ep.markDirty(c)
	})
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		c.ep.call(func(time.Time) {
			if i := slices.Index(c.closers, r); i >= 0 {
				c.closers = slices.Delete(c.closers, i, i+1)
				r.complete(ctx.Err())
			}
		})
		<-r.done
		return r.err
	}
}

// Abort aborts both directions at once: the peer gets a close with the error
// condition cond, and pending and later Reads and Writes on both ends fail
// with an *AbortError. reason is for our own error and logs.
func (c *Conn) Abort(cond stanza.Condition, reason string) {
	c.ep.call(func(time.Time) {
		c.t.abort(cond, reason)
		c.ep.markDirty(c)
	})
}

// AbortBecause is Abort with why, a reason the peer learns: one of
// xtls/stanza's Reason constants (ReasonShutdown when the program is
// quitting, say) or another token of [a-z0-9-]. The peer's Read and Write
// fail with an *AbortError whose Why it is, and say it in words.
func (c *Conn) AbortBecause(cond stanza.Condition, why, detail string) {
	if !xstanza.ValidReason(why) {
		why = ""
	}
	c.ep.call(func(time.Time) {
		c.t.abortBecause(cond, why, detail, nil)
		c.ep.markDirty(c)
	})
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
func (c *Conn) Done() <-chan struct{} { return c.goneCh }

// PeerClosed reports whether the peer has closed its direction.
func (c *Conn) PeerClosed() (closed bool) {
	c.ep.call(func(time.Time) { closed = c.t.peerClosed })
	return closed
}

// Err returns why the tunnel failed, or nil.
func (c *Conn) Err() (err error) {
	c.ep.call(func(time.Time) { err = c.t.err })
	return err
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
